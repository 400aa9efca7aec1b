// MobileSAM browser demo: the decode queue. Committed prompt states are decoded in order;
// hover/drag previews share one slot where the newest request wins (a stale one is never
// decoded). In compare mode each decode runs MobileSAM's and the comparison model's decoder
// at once. Functions take the app (app.js's MsamApp), whose fields hold the queue: commits,
// previewReq, running, idleWaiters (see MsamApp.isIdle / decodesIdle / whenIdle).

import { LOW_RES } from "./masks.js";
import { selectIndex } from "./prompts.js";
import { cmpActive, selectedCmpLowRes, noteCmpDecode } from "./compare.js";
import { renderInfo } from "./ui.js";
import { errText } from "./util.js";

/** Whether an entry lacks a decode: MobileSAM's, or (in compare mode) the comparison model's. */
export function needsDecode(app, entry) {
  if (!(entry.points.length || entry.box)) return false;
  return (!entry.result && !entry.error) || (cmpActive(app) && !(entry.cmp && entry.cmp.key === app.cmp.key));
}

/** Low-res logits of an entry's selected mask (for refinement), or null. */
function selectedLowRes(app, entry) {
  if (!entry || !entry.result) return null;
  const idx = selectIndex(entry.maskMode, entry.points, entry.box, entry.result.scores);
  return entry.result.lowRes.subarray(idx * LOW_RES * LOW_RES, (idx + 1) * LOW_RES * LOW_RES);
}

/**
 * Decode `prompts` with MobileSAM (when `needA`) and, in compare mode, with the comparison model
 * (when `needB`), both at once. Returns {a: result|Error|null, b: {key, result}|{key, error}|null}.
 */
async function decodeBoth(app, prompts, needA, needB, maskA, maskB) {
  const cmpKey = app.cmp ? app.cmp.key : null;
  const [ra, rb] = await Promise.allSettled([
    needA ? app.model.decode(prompts, maskA) : null,
    needB ? app.cmpModel.decode(prompts, maskB) : null,
  ]);
  const a = !needA ? null : ra.status === "fulfilled" ? ra.value : new Error(errText(ra.reason));
  let b = null;
  if (needB) {
    b = rb.status === "fulfilled" ? { key: cmpKey, result: rb.value } : { key: cmpKey, error: errText(rb.reason) };
  }
  return { a, b };
}

/** Run queued decodes: commits first, in order; then the newest preview request. */
export async function pump(app) {
  if (app.running) return;
  app.running = true;
  try {
    for (;;) {
      if (!app.ready) {
        app.commits = [];
        app.previewReq = null;
        break;
      }
      const entry = app.commits.shift();
      if (entry) {
        if (entry.cancelled) continue;
        await decodeEntry(app, entry);
        continue;
      }
      const req = app.previewReq;
      app.previewReq = null;
      if (!req) break;
      if (req.entry !== app.entry || !(app.hoverPt || app.dragBox)) continue;
      await decodePreview(app, req);
    }
  } finally {
    app.running = false;
  }
  if (app.isIdle()) {
    const w = app.idleWaiters;
    app.idleWaiters = [];
    for (const r of w) r();
  }
}

async function decodeEntry(app, entry) {
  const needA = !entry.result;
  const needB = cmpActive(app) && !(entry.cmp && entry.cmp.key === app.cmp.key);
  const token = app.imageToken;
  try {
    const { a, b } = await decodeBoth(app, { points: entry.points, box: entry.box }, needA, needB,
      needA && entry.refine ? selectedLowRes(app, entry.prev) : null,
      needB && entry.refine ? selectedCmpLowRes(app, entry.prev) : null);
    if (token !== app.imageToken) return;
    if (a instanceof Error) {
      entry.error = a.message;
      app.setStatus("Decoder failed: " + entry.error, "error");
    } else if (a) {
      entry.result = a;
      noteDecode(app, a);
    }
    if (b && app.cmp && b.key === app.cmp.key) {
      entry.cmp = b;
      if (b.error) app.setStatus(`${app.cmp.label} decoder failed: ${b.error}`, "error");
      else noteCmpDecode(app, b.result);
    }
  } finally {
    entry.pending = false;
  }
  if (entry === app.entry) {
    app.ensureDecoded(entry); // compare mode began while this decode ran
    app.render();
  }
}

async function decodePreview(app, req) {
  // what a click here would give: the committed prompts plus this one
  const token = app.imageToken;
  const needB = cmpActive(app);
  const { a, b } = await decodeBoth(app, { points: req.points, box: req.box }, true, needB,
    app.refine ? selectedLowRes(app, req.entry) : null,
    needB && app.refine ? selectedCmpLowRes(app, req.entry) : null);
  if (token !== app.imageToken) return;
  if (a instanceof Error) {
    app.setStatus("Decoder failed: " + a.message, "error");
    return;
  }
  noteDecode(app, a);
  if (b && b.result) noteCmpDecode(app, b.result);
  if (req.entry === app.entry && (app.hoverPt || app.dragBox)) {
    app.preview = { entry: req.entry, result: a, cmp: b, points: req.points, box: req.box };
    app.render();
  } else {
    renderInfo(app);
  }
}

function noteDecode(app, res) {
  app.decodeCount++;
  app.lastDecodeMs = res.ms;
}
