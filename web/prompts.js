// Pure prompt functions: decoder inputs, mask selection, the share-link query string.
// Prompts are kept in original-image pixels:
//   points: [{x, y, label}]  (label 1 foreground, 0 background)
//   box:    {x0, y0, x1, y1} | null  (x0 <= x1, y0 <= y1)

/** Round to 0.1 px: the precision of share links, applied when a prompt is made. */
export const q = (v) => Math.round(v * 10) / 10;

/**
 * Decoder point inputs, as the official SAM web demo feeds the ONNX decoder:
 * the points, then the box as two corners labelled 2 and 3; without a box a
 * padding point (0, 0) labelled -1. Coordinates go to the 1024 frame with
 * SamPredictor's ResizeLongestSide.apply_coords: x * (input_width / width).
 * @returns {{coords: Float32Array, labels: Float32Array, n: number}}
 */
export function decoderPointInputs(points, box, info) {
  const sx = info.input_width / info.width;
  const sy = info.input_height / info.height;
  const xy = [];
  const labels = [];
  for (const p of points) {
    xy.push(p.x * sx, p.y * sy);
    labels.push(p.label);
  }
  if (box) {
    xy.push(box.x0 * sx, box.y0 * sy, box.x1 * sx, box.y1 * sy);
    labels.push(2, 3);
  } else {
    xy.push(0, 0);
    labels.push(-1);
  }
  return { coords: Float32Array.from(xy), labels: Float32Array.from(labels), n: labels.length };
}

/** Whether SamPredictor would be asked for three masks: exactly one point and no box. */
export function isMultimask(points, box) {
  return points.length === 1 && !box;
}

/**
 * Mask index (0..3) into the decoder's 4 outputs. `mode` "auto" follows SamPredictor:
 * one point and no box -> best-scoring of the multimask outputs 1..3, otherwise the
 * single-mask output 0. A number 1..3 picks that multimask candidate.
 */
export function selectIndex(mode, points, box, scores) {
  if (mode === 1 || mode === 2 || mode === 3) return mode;
  if (isMultimask(points, box) && scores) {
    let best = 1;
    for (let k = 2; k <= 3; k++) if (scores[k] > scores[best]) best = k;
    return best;
  }
  return 0;
}

/** Box from two corners, ordered and clamped to the image. */
export function normBox(ax, ay, bx, by, width, height) {
  const cx = (v) => Math.min(Math.max(v, 0), width);
  const cy = (v) => Math.min(Math.max(v, 0), height);
  return {
    x0: q(cx(Math.min(ax, bx))), y0: q(cy(Math.min(ay, by))),
    x1: q(cx(Math.max(ax, bx))), y1: q(cy(Math.max(ay, by))),
  };
}

const fmt = (v) => String(q(v));

/** Models the compare mode can put beside MobileSAM (the `compare` share-link parameter). */
export const COMPARE_MODELS = ["vit_b", "vit_l", "vit_h"];

/** Longest refinement history a link carries. */
export const MAX_REFINE_STEPS = 100;

/**
 * The query string of a share link:
 * "?image=ID&points=x,y,l;x,y,l&box=x0,y0,x1,y1&mask=auto[&refine=STEPS][&compare=vit_b]".
 * Empty parts are left out; `compare` (compare mode's SAM model) only when given; `refine` (see
 * refineSteps) only for prompts decoded with "refine with previous mask".
 */
export function formatPrompts({ imageId, points = [], box = null, mask = "auto", refine = null, compare = null }) {
  const parts = [];
  if (imageId != null && imageId !== "") parts.push("image=" + encodeURIComponent(imageId));
  if (points.length) parts.push("points=" + points.map((p) => `${fmt(p.x)},${fmt(p.y)},${p.label}`).join(";"));
  if (box) parts.push("box=" + [box.x0, box.y0, box.x1, box.y1].map(fmt).join(","));
  parts.push("mask=" + maskParam(mask));
  if (refine && refine.length) {
    parts.push("refine=" + refine.map((s) => `${s.points}${s.box ? "b" : ""}${s.mask === "auto" ? "" : "m" + s.mask}`).join(","));
  }
  if (COMPARE_MODELS.includes(compare)) parts.push("compare=" + compare);
  return "?" + parts.join("&");
}

const maskParam = (mask) => (mask === 1 || mask === 2 || mask === 3 ? mask : "auto");

const samePoint = (a, b) => a.x === b.x && a.y === b.y && a.label === b.label;
const sameBox = (a, b) => a.x0 === b.x0 && a.y0 === b.y0 && a.x1 === b.x1 && a.y1 === b.y1;

/**
 * The refinement history behind a prompt state, for a share link. With "refine with previous mask"
 * a decode takes the previous state's mask as input, so the mask depends on the states before it
 * (back to the first one decoded without a mask input), not on the final prompts alone. Each such
 * earlier state is described relative to the final one: its first `points` points, the final box
 * or none, its mask choice.
 * @param entry {points, box, maskMode, refine, prev} (app.js's history entries)
 * @returns {{points: number, box: boolean, mask: "auto"|1|2|3}[] | null} the earlier states, oldest
 *   first ([] when the final state was decoded without a mask input); null when one of them is not
 *   a prefix of the final points with the final box or none (after a box was redrawn), or the
 *   history is longer than MAX_REFINE_STEPS: a link cannot reproduce that mask.
 */
export function refineSteps(entry) {
  const chain = [];
  for (let e = entry; e.refine && e.prev && (e.prev.points.length || e.prev.box); e = e.prev) chain.unshift(e.prev);
  if (chain.length > MAX_REFINE_STEPS) return null;
  const steps = [];
  for (const e of chain) {
    const prefix = e.points.length <= entry.points.length && e.points.every((p, i) => samePoint(p, entry.points[i]));
    const boxOk = !e.box || (entry.box && sameBox(e.box, entry.box));
    if (!prefix || !boxOk) return null;
    steps.push({ points: e.points.length, box: !!e.box, mask: maskParam(e.maskMode) });
  }
  return steps;
}

/** The `refine` parameter's steps, or null when absent or malformed (then the link replays without). */
function parseRefine(text, nPoints, hasBox) {
  if (!text) return null;
  const steps = [];
  for (const token of text.split(",")) {
    const m = /^(\d{1,4})(b?)(?:m([123]))?$/.exec(token.trim());
    if (!m || Number(m[1]) > nPoints || (m[2] && !hasBox) || steps.length >= MAX_REFINE_STEPS) return null;
    steps.push({ points: Number(m[1]), box: m[2] === "b", mask: m[3] ? Number(m[3]) : "auto" });
  }
  return steps;
}

/**
 * Prompts from a query string (location.search) or URLSearchParams. Malformed parts are
 * skipped, never thrown on.
 * @returns {{imageId: string|null, points: {x,y,label}[], box: object|null, mask: "auto"|1|2|3,
 *           refine?: object[], compare?: string}} `compare` only when the link names a known
 *           compare-mode model; `refine` (see refineSteps) only when the link has a valid one
 */
export function parsePrompts(search) {
  let params;
  try {
    params = search instanceof URLSearchParams ? search : new URLSearchParams(search || "");
  } catch {
    params = new URLSearchParams();
  }
  const num = (s) => {
    const t = String(s).trim();
    if (t === "") return NaN;
    return Number(t);
  };
  const points = [];
  for (const item of (params.get("points") || "").split(";")) {
    if (!item.trim()) continue;
    const [x, y, l = 1] = item.split(",").map(num);
    const label = Number.isNaN(l) ? 1 : l;
    if (Number.isFinite(x) && Number.isFinite(y) && (label === 0 || label === 1)) {
      points.push({ x: q(x), y: q(y), label });
    }
  }
  let box = null;
  const b = (params.get("box") || "").split(",").map(num);
  if (b.length === 4 && b.every(Number.isFinite)) {
    box = {
      x0: q(Math.min(b[0], b[2])), y0: q(Math.min(b[1], b[3])),
      x1: q(Math.max(b[0], b[2])), y1: q(Math.max(b[1], b[3])),
    };
  }
  const m = params.get("mask");
  const mask = m === "1" || m === "2" || m === "3" ? Number(m) : "auto";
  const imageId = params.get("image");
  const out = { imageId: imageId || null, points, box, mask };
  const refine = parseRefine(params.get("refine"), points.length, !!box);
  if (refine) out.refine = refine;
  const compare = params.get("compare");
  if (COMPARE_MODELS.includes(compare)) out.compare = compare;
  return out;
}

/** Prompts clamped into a width x height image (points outside are dropped). */
export function clampPrompts(p, width, height) {
  const points = (p.points || []).filter((pt) => pt.x >= 0 && pt.y >= 0 && pt.x <= width && pt.y <= height);
  let box = p.box ? normBox(p.box.x0, p.box.y0, p.box.x1, p.box.y1, width, height) : null;
  if (box && (box.x1 <= box.x0 || box.y1 <= box.y0)) box = null;
  return { ...p, points, box };
}
