// MobileSAM browser demo: a chosen photo decoded and resized to the encoder's input off the page's
// thread (web/upload.js sends it). The photo is decoded as the server reads it: upright per its
// EXIF orientation (imageOrientation "from-image", as mobilesam_app/images.py), colour values as
// stored (no colour-profile conversion: the server does none). A photo with transparency is left to
// the server (it composites it on white).
// Message in: {id, file: File, type, quality}. Out: {id, ok, width, height, blob (the resized copy),
// bitmap (the full photo, upright, for display), ms: {decode, resize, encode}} or {id, ok: false,
// declined?: true, error}.

import { preprocessShape, resizeBilinearRGBA } from "./resize.js";

/** Whether every pixel of RGBA `data` has alpha 255 (read as 32-bit words: alpha is the high byte). */
function opaque(data) {
  const px = new Uint32Array(data.buffer, data.byteOffset, data.length >> 2);
  for (let i = 0; i < px.length; i++) if (px[i] < 0xff000000) return false;
  return true;
}

async function prepare({ file, type = "image/jpeg", quality = 0.92 }) {
  const t0 = performance.now();
  const bitmap = await createImageBitmap(file, { imageOrientation: "from-image", colorSpaceConversion: "none",
    premultiplyAlpha: "none" });
  const W = bitmap.width, H = bitmap.height;
  const canvas = new OffscreenCanvas(W, H);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  const data = ctx.getImageData(0, 0, W, H).data;
  canvas.width = canvas.height = 1; // free the full-size canvas
  if (!opaque(data)) return { declined: true, error: "the photo has transparency", bitmap };
  const t1 = performance.now();
  const [h, w] = preprocessShape(H, W);
  const rgba = resizeBilinearRGBA(data, W, H, w, h);
  const t2 = performance.now();
  const out = new OffscreenCanvas(w, h);
  out.getContext("2d").putImageData(new ImageData(rgba, w, h), 0, 0);
  const blob = await out.convertToBlob({ type, quality });
  const t3 = performance.now();
  return { width: W, height: H, blob, bitmap, ms: { decode: t1 - t0, resize: t2 - t1, encode: t3 - t2 } };
}

self.onmessage = async (e) => {
  const { id } = e.data || {};
  try {
    const res = await prepare(e.data);
    self.postMessage({ id, ok: !res.declined, ...res }, res.bitmap ? [res.bitmap] : []);
  } catch (err) {
    self.postMessage({ id, ok: false, error: String(err && err.message ? err.message : err) });
  }
};
