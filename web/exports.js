// MobileSAM browser demo: what leaves the page. The committed mask at the image's full
// size (exactly as SamPredictor gives it), its PNG / cut-out / SA-1B RLE downloads, the
// base64 form the window.msam API hands out, and the share link. Functions take what they
// need as arguments (the image info, a prompt entry, a full-size mask) and write no state
// but a FullMaskMemo's; the app (app.js) calls them and reports their errors.

import { postprocessMask, maskToGrayPng, applyCutout, sa1bRecord, maskBBox } from "./masks.js";
import { selectIndex, refineSteps } from "./prompts.js";
import { formatObjectsLink } from "./objects.js";
import { downloadBlob, canvasToBlob, safeName } from "./util.js";

/** The last full-size mask computed (one decode result's candidate): postprocessing is not cheap. */
export class FullMaskMemo {
  #last = null;

  /** {mask, width, height, area, stabilityScore, index, score} of candidate `idx` of `result`. */
  get(info, result, idx) {
    const l = this.#last;
    if (l && l.result === result && l.idx === idx) return l.value;
    const m = postprocessMask(result.lowRes, idx, info.input_height, info.input_width, info.height, info.width);
    const value = { ...m, index: idx, score: result.scores[idx] };
    this.#last = { result, idx, value };
    return value;
  }

  clear() {
    this.#last = null;
  }
}

/** Full-size mask of an entry's committed prompts: {mask, width, height, area, stabilityScore, index, score}
 * (an empty one without prompts or result), or null without image. */
export function fullMask(info, entry, memo) {
  if (!info) return null;
  if (!entry.result || !(entry.points.length || entry.box)) {
    return { mask: new Uint8Array(info.width * info.height), width: info.width, height: info.height,
      area: 0, stabilityScore: 0, index: -1, score: 0 };
  }
  const idx = selectIndex(entry.maskMode, entry.points, entry.box, entry.result.scores);
  return memo.get(info, entry.result, idx);
}

/** A full-size mask as an 8-bit grayscale PNG Blob (255 inside), or null without one. */
export async function maskPng(m) {
  if (!m) return null;
  return maskToGrayPng(m.mask, m.width, m.height);
}

export async function exportMask(m, baseName) {
  const png = await maskPng(m);
  if (!png) return;
  downloadBlob(png, `${safeName(baseName)}_mask.png`);
}

/** The image's pixels inside the mask `m`, transparent outside, as a PNG download. */
export async function exportCutout(m, image, baseName) {
  const png = await cutoutPng(m, image);
  if (png) downloadBlob(png, `${safeName(baseName)}_cutout.png`);
}

/** The image's pixels inside the mask `m`, transparent outside, as a PNG Blob (null without mask
 * or image); with `crop`, cropped to the mask's box (a 1x1 transparent PNG for an empty mask). */
export async function cutoutPng(m, image, crop = false) {
  if (!m || !image) return null;
  let [x0, y0, w, h] = crop ? maskBBox(m.mask, m.width, m.height) : [0, 0, m.width - 1, m.height - 1];
  w += 1;
  h += 1;
  const c = document.createElement("canvas");
  c.width = w;
  c.height = h;
  const ctx = c.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(image, -x0, -y0, m.width, m.height);
  const d = ctx.getImageData(0, 0, w, h);
  const sub = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) sub.set(m.mask.subarray((y0 + y) * m.width + x0, (y0 + y) * m.width + x0 + w), y * w);
  applyCutout(d.data, sub);
  ctx.putImageData(d, 0, 0);
  return canvasToBlob(c);
}

/** The base of a download's file name for image `info`: the chosen photo's own name without its
 * extension ("IMG_1234" for IMG_1234.JPG), else "image-" and the start of its id (a share link's image). */
export function downloadBaseName(info) {
  const name = info && typeof info.file_name === "string" ? info.file_name.split(/[\\/]/).pop() : "";
  const stem = name.replace(/\.[A-Za-z0-9]{1,5}$/, "");
  if (stem) return safeName(stem);
  return info && info.image_id ? `image-${safeName(info.image_id).slice(0, 8)}` : "image";
}

/** Save `blob` as "<image name><suffix>". */
export function downloadAs(blob, imageName, suffix) {
  downloadBlob(blob, `${safeName(imageName)}${suffix}`);
}

/** The SA-1B / COCO RLE record of the full-size mask `m` of `entry`'s prompts, or null. */
export function rleRecord(m, entry) {
  if (!m) return null;
  return sa1bRecord({
    mask: m.mask, width: m.width, height: m.height, area: m.area, score: m.score,
    stabilityScore: m.index >= 0 ? m.stabilityScore : undefined,
    points: entry.points, box: entry.box,
  });
}

export function exportRLE(rec, baseName) {
  if (!rec) return;
  const blob = new Blob([JSON.stringify(rec)], { type: "application/json" });
  downloadBlob(blob, `${safeName(baseName)}_mask.json`);
}

/** The link that reopens image `info` with the prompts of every object of `objects` (an ObjectList,
 * or one prompt entry; one object gives the single-object link) and compare model `compare`, or null. */
export function shareLink(info, objects, compare = null, loc = location) {
  if (!info) return null;
  const list = Array.isArray(objects.objects) ? objects : { objects: [{ entry: objects }], selectedIndex: 0 };
  return loc.origin + loc.pathname + formatObjectsLink({
    imageId: info.image_id, objects: list.objects, selected: list.selectedIndex,
    compare, // reopening it re-enters compare mode
  }); // each object's refinement history goes with it (prompts.js refineSteps)
}

/** Put `link` in the text field `input` and on the clipboard; resolves to the status line {text, kind}.
 * `entries`: the linked objects' prompt entries (a caveat when one's refinement cannot be replayed). */
export async function copyLink(link, entries, input) {
  input.value = link;
  input.focus();
  input.select();
  const caveat = entries.some((e) => refineSteps(e) === null)
    ? " It replays the prompts without their refinement history (a redrawn box), so its mask may differ." : "";
  const kind = caveat ? "warn" : "info";
  try {
    await navigator.clipboard.writeText(link);
    return { text: "Link copied." + caveat, kind };
  } catch {
    return { text: "Link ready to copy (the clipboard is not available here)." + caveat, kind };
  }
}

/** {width, height, area, data: base64 of the 0/1 bytes} of a full-size mask, or null (cheap to pass out of the page). */
export function maskBitsBase64(m) {
  if (!m) return null;
  let s = "";
  for (let i = 0; i < m.mask.length; i += 0x8000) s += String.fromCharCode.apply(null, m.mask.subarray(i, i + 0x8000));
  return { width: m.width, height: m.height, area: m.area, data: btoa(s) };
}
