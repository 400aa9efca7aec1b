// MobileSAM browser demo: what leaves the page. The committed mask at the image's full
// size (exactly as SamPredictor gives it), its PNG / cut-out / SA-1B RLE downloads, the
// base64 form the window.msam API hands out, and the share link.

import { postprocessMask, maskToGrayPng, applyCutout, sa1bRecord } from "./masks.js";
import { selectIndex, formatPrompts, refineSteps } from "./prompts.js";
import { errText, downloadBlob, canvasToBlob, safeName } from "./util.js";

/** Full-size mask of the committed prompts: {mask, width, height, area, stabilityScore, index, score}. */
export function fullMask(app) {
  const info = app.info;
  const e = app.entry;
  if (!info) return null;
  if (!e.result || !(e.points.length || e.box)) {
    return { mask: new Uint8Array(info.width * info.height), width: info.width, height: info.height,
      area: 0, stabilityScore: 0, index: -1, score: 0 };
  }
  const idx = selectIndex(e.maskMode, e.points, e.box, e.result.scores);
  if (app._fullCache.key === e.result && app._fullCache.idx === idx) return app._fullCache.value;
  const m = postprocessMask(e.result.lowRes, idx, info.input_height, info.input_width, info.height, info.width);
  const value = { ...m, index: idx, score: e.result.scores[idx] };
  app._fullCache = { key: e.result, idx, value };
  return value;
}

/** The committed full-size mask as an 8-bit grayscale PNG Blob (255 inside), or null without image. */
export async function maskPng(app) {
  const m = fullMask(app);
  if (!m) return null;
  return maskToGrayPng(m.mask, m.width, m.height);
}

export async function exportMask(app) {
  try {
    const png = await maskPng(app);
    if (!png) return;
    downloadBlob(png, `${safeName(app.info.image_id)}_mask.png`);
  } catch (e) {
    app.setStatus("Export failed: " + errText(e), "error");
  }
}

export async function exportCutout(app) {
  try {
    const m = fullMask(app);
    if (!m || !app.image) return;
    const c = document.createElement("canvas");
    c.width = m.width;
    c.height = m.height;
    const ctx = c.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(app.image, 0, 0, m.width, m.height);
    const d = ctx.getImageData(0, 0, m.width, m.height);
    applyCutout(d.data, m.mask);
    ctx.putImageData(d, 0, 0);
    downloadBlob(await canvasToBlob(c), `${safeName(app.info.image_id)}_cutout.png`);
  } catch (e) {
    app.setStatus("Export failed: " + errText(e), "error");
  }
}

export function rleRecord(app) {
  const m = fullMask(app);
  if (!m) return null;
  return sa1bRecord({
    mask: m.mask, width: m.width, height: m.height, area: m.area, score: m.score,
    stabilityScore: m.index >= 0 ? m.stabilityScore : undefined,
    points: app.entry.points, box: app.entry.box,
  });
}

export function exportRLE(app) {
  try {
    const rec = rleRecord(app);
    if (!rec) return;
    const blob = new Blob([JSON.stringify(rec)], { type: "application/json" });
    downloadBlob(blob, `${safeName(app.info.image_id)}_mask.json`);
  } catch (e) {
    app.setStatus("Export failed: " + errText(e), "error");
  }
}

export function shareLink(app) {
  if (!app.info) return null;
  return location.origin + location.pathname + formatPrompts({
    imageId: app.info.image_id, points: app.entry.points, box: app.entry.box, mask: app.entry.maskMode,
    refine: refineSteps(app.entry), // the states a refined mask was decoded from
    compare: app.cmp ? app.cmp.model : null, // reopening it re-enters compare mode
  });
}

export async function copyLink(app) {
  const link = shareLink(app);
  if (!link) return;
  app.u.link.value = link;
  app.u.link.focus();
  app.u.link.select();
  const caveat = refineSteps(app.entry) === null
    ? " It replays the prompts without their refinement history (a redrawn box), so its mask may differ." : "";
  try {
    await navigator.clipboard.writeText(link);
    app.setStatus("Link copied." + caveat, caveat ? "warn" : "info");
  } catch {
    app.setStatus("Link ready to copy (the clipboard is not available here)." + caveat, caveat ? "warn" : "info");
  }
}

/** {width, height, area, data: base64 of the 0/1 bytes} of a full-size mask, or null (cheap to pass out of the page). */
export function maskBitsBase64(m) {
  if (!m) return null;
  let s = "";
  for (let i = 0; i < m.mask.length; i += 0x8000) s += String.fromCharCode.apply(null, m.mask.subarray(i, i + 0x8000));
  return { width: m.width, height: m.height, area: m.area, data: btoa(s) };
}
