// MobileSAM browser demo: small helpers shared by the modules (config, server info,
// DOM, downloads, number formatting, prompt wording, mask IoU). No app state here.

export const MODEL_LABELS = { vit_t: "MobileSAM", vit_b: "SAM ViT-B", vit_l: "SAM ViT-L", vit_h: "SAM ViT-H" };
export const modelLabel = (m) => MODEL_LABELS[m] || String(m || "model");

export function getConfig() {
  const c = (typeof window !== "undefined" && window.MSAM_CONFIG) || {};
  return {
    ortBase: c.ortBase || "/web/ort/",
    decoderUrl: c.decoderUrl || null,
    crossOriginIsolated: c.crossOriginIsolated !== false,
    ortBundle: c.ortBundle,
    executionProviders: c.executionProviders,
    proxy: c.proxy,
    encodeUrl: c.encodeUrl || null, // POST a photo's resized copy here (upload.js); none: the upload box's path
    resizedUpload: c.resizedUpload !== false,
    decodeUrl: c.decodeUrl || null, // POST a prompt here while the page's decoder loads (bridge.js); none: it waits
  };
}

/** A promise that resolves after `ms` milliseconds. */
export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

export function errText(e) {
  if (!e) return "unknown error";
  return typeof e === "string" ? e : e.message || String(e);
}

/** `info` from the server as an object, or null for "no image". */
export function normalizeInfo(info) {
  if (info == null) return null;
  if (typeof info === "string") {
    const t = info.trim();
    if (!t || t === "null") return null;
    info = JSON.parse(t);
  }
  if (typeof info !== "object" || Array.isArray(info)) throw new Error("image info must be an object");
  if (!Object.keys(info).length || info.image_id == null || !info.embedding_url) return null;
  const n = (k) => {
    const v = Number(info[k]);
    if (!(v > 0)) throw new Error(`image info: bad ${k} (${info[k]})`);
    return v;
  };
  const width = n("width"), height = n("height");
  const long = Math.max(width, height);
  let compare = null;
  const c = info.compare;
  if (c && typeof c === "object" && c.embedding_url && c.decoder_url && c.model) {
    compare = { ...c, model: String(c.model), label: c.label || modelLabel(c.model) };
  }
  return {
    ...info,
    compare,
    image_id: String(info.image_id),
    width, height,
    // default: SAM's ResizeLongestSide.get_preprocess_shape
    input_width: info.input_width ? n("input_width") : Math.floor(width * (1024 / long) + 0.5),
    input_height: info.input_height ? n("input_height") : Math.floor(height * (1024 / long) + 0.5),
  };
}

export function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.crossOrigin = "anonymous";
    img.decoding = "async";
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`image failed to load (${url})`));
    img.src = url;
  });
}

/**
 * The photo for image info `info`: the uploaded file itself when the server says a browser shows it
 * as the server read it (`display_url`: the page has just sent it, so it is at hand), checked by its
 * size; otherwise, or if that fails, the server's lossless PNG copy (`image_url`).
 */
export async function loadPhoto(info) {
  if (info.display_url) {
    try {
      const img = await loadImage(info.display_url);
      if (img.naturalWidth === info.width && img.naturalHeight === info.height) return img;
    } catch {
      // fall back to the PNG
    }
  }
  if (!info.image_url) throw new Error("image info has no image_url");
  return loadImage(info.image_url);
}

export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c) e.appendChild(c);
  return e;
}

export function downloadBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = el("a", { href: url, download: name });
  a.style.display = "none";
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

export function canvasToBlob(canvas) {
  return new Promise((resolve, reject) => {
    canvas.toBlob((b) => (b ? resolve(b) : reject(new Error("PNG encoding failed"))), "image/png");
  });
}

export function blobToDataURL(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error || new Error("cannot read the blob"));
    reader.readAsDataURL(blob);
  });
}

export function safeName(s) {
  return String(s || "image").replace(/[^A-Za-z0-9._-]+/g, "_").slice(0, 80);
}

export const fmtInt = (v) => Math.round(v).toLocaleString("en-US");
export const fmtMs = (ms) => (ms == null || !Number.isFinite(Number(ms)) ? "–" : `${fmtInt(Number(ms))} ms`);
export const fmtParams = (n) => (n > 0 ? `${(n / 1e6).toFixed(n < 1e7 ? 2 : 1)} M` : "–");

/** "2 points (1 foreground, 1 background) + box": the prompts in words (as the server's summary). */
export function describePrompts(points, box) {
  const parts = [];
  if (points.length) {
    const fg = points.filter((p) => p.label === 1).length;
    parts.push(`${points.length} point${points.length !== 1 ? "s" : ""} (${fg} foreground, ${points.length - fg} background)`);
  }
  if (box) parts.push("box");
  return parts.join(" + ") || "no prompts";
}

/** IoU of two 0/1 masks of the same size; two empty masks agree fully (1). */
export function maskIoU(a, b) {
  let inter = 0, union = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i], y = b[i];
    inter += x & y;
    union += x | y;
  }
  return union === 0 ? 1 : inter / union;
}
