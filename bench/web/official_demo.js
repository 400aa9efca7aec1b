// Benchmark baseline page (bench/official_demo.py): segment-anything's web demo's way of working.
// The quantized official-interface decoder (single mask, orig_im_size) in onnxruntime-web; the full
// photo uploaded, its float32 .npy embedding fetched; a click decoded and drawn at full size.
import { loadOrt } from "/web/decoder.js";

const config = { ortBase: "/web/ort/", crossOriginIsolated: true };
const status = (t) => { document.getElementById("status").textContent = t; };
const demo = (window.demo = { readyAt: null, fetchMs: null, photo: null, clicks: [], drawnAt: null, error: null });

/** The float32 array of a little-endian .npy file. */
function parseNpy(buf) {
  const view = new DataView(buf);
  const major = view.getUint8(6); // "\x93NUMPY", major, minor, header length (2 bytes in version 1, else 4)
  const offset = major === 1 ? 10 + view.getUint16(8, true) : 12 + view.getUint32(8, true);
  return new Float32Array(buf.slice(offset));
}

const session = (async () => {
  const t0 = performance.now();
  const ort = await loadOrt(config, true);
  const bytes = new Uint8Array(await (await fetch("/official/decoder.onnx")).arrayBuffer());
  demo.fetchMs = performance.now() - t0;
  let s = null, err = null;
  for (const level of ["all", "extended", "basic", "disabled"]) { // as bench/web/bench.js plainSession
    try { s = await ort.InferenceSession.create(bytes.slice(), { executionProviders: ["wasm"], graphOptimizationLevel: level }); break; }
    catch (e) { err = e; }
  }
  if (!s) throw err;
  demo.readyAt = performance.now();
  return { ort, session: s };
})();
session.catch((e) => { demo.error = String(e); });

async function choose(file) {
  const photo = { file, embedding: null, bitmap: null };
  demo.photo = photo;
  demo.clicks = [];
  demo.drawnAt = null;
  status("Uploading and encoding…");
  const shown = createImageBitmap(file, { imageOrientation: "from-image" }).then((b) => {
    photo.bitmap = b;
    const c = document.getElementById("view");
    c.width = b.width; c.height = b.height;
    c.getContext("2d").drawImage(b, 0, 0);
  });
  const res = await fetch("/official/encode", { method: "POST", body: file });
  if (!res.ok) throw new Error(`encode: HTTP ${res.status}`);
  photo.embedding = parseNpy(await res.arrayBuffer());
  await shown;
  status("Ready: click");
  answer(photo);
}

/** Decode the last click of `photo` once the decoder and its embedding are there; draw the mask. */
async function answer(photo) {
  const { ort, session: s } = await session;
  if (photo !== demo.photo || !photo.embedding || !photo.bitmap || !demo.clicks.length) return;
  const { x, y } = demo.clicks[demo.clicks.length - 1];
  const W = photo.bitmap.width, H = photo.bitmap.height;
  const scale = 1024 / Math.max(W, H);
  const coords = Float32Array.of(x * scale, y * scale, 0, 0); // a point and the padding point
  const feeds = {
    image_embeddings: new ort.Tensor("float32", photo.embedding.slice(), [1, 256, 64, 64]), // a copy: the worker takes it
    point_coords: new ort.Tensor("float32", coords, [1, 2, 2]),
    point_labels: new ort.Tensor("float32", Float32Array.of(1, -1), [1, 2]),
    mask_input: new ort.Tensor("float32", new Float32Array(256 * 256), [1, 1, 256, 256]),
    has_mask_input: new ort.Tensor("float32", Float32Array.of(0), [1]),
    orig_im_size: new ort.Tensor("float32", Float32Array.of(H, W), [2]),
  };
  const out = await s.run(feeds);
  const masks = out.masks.data; // [1, 1, H, W] logits
  const rgba = new Uint8ClampedArray(W * H * 4);
  for (let i = 0, j = 0; i < W * H; i++, j += 4) {
    if (masks[i] > 0) { rgba[j] = 30; rgba[j + 1] = 144; rgba[j + 2] = 255; rgba[j + 3] = 150; }
  }
  const ctx = document.getElementById("view").getContext("2d");
  ctx.drawImage(photo.bitmap, 0, 0);
  const layer = new OffscreenCanvas(W, H);
  layer.getContext("2d").putImageData(new ImageData(rgba, W, H), 0, 0);
  ctx.drawImage(layer, 0, 0);
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  if (photo === demo.photo) demo.drawnAt = performance.now();
  status("Mask drawn");
}

document.getElementById("upload").addEventListener("change", (e) => {
  const file = e.target.files && e.target.files[0];
  if (file) choose(file).catch((err) => { demo.error = String(err); status(String(err)); });
});

/** A click at (x, y) in photo pixels (taken at once; answered once the page can). */
demo.click = (x, y) => {
  if (!demo.photo) return false;
  demo.clicks.push({ x, y });
  answer(demo.photo).catch((err) => { demo.error = String(err); });
  return true;
};
demo.size = () => (demo.photo && demo.photo.bitmap ? [demo.photo.bitmap.width, demo.photo.bitmap.height] : null);
