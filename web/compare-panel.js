// MobileSAM browser demo: compare mode's panel (the DOM). The IoU, a table per model, the
// summary row to copy and the view switch; drawn from a CompareSession (compare.js) and what
// is on screen, which it only reads.

import { maskArea } from "./masks.js";
import { el, modelLabel, fmtInt, fmtMs, fmtParams, maskIoU } from "./util.js";

/** Build the panel; `actions`: {setView(view), copySummary()}; `btn(label, title, onclick)` makes a button. */
export function buildComparePanel(actions, btn) {
  const c = {};
  c.iou = el("strong", { class: "msam-cmp-iou", text: "–" });
  c.iouNote = el("span", { class: "msam-cmp-note" });
  c.side = btn("Side by side", "MobileSAM's mask and SAM's on two copies of the image", () => actions.setView("side"));
  c.overlay = btn("Overlay", "Both masks on one image: MobileSAM blue, SAM orange", () => actions.setView("overlay"));
  c.state = el("span", { class: "msam-cmp-state" });
  const cell = (cls = "") => el("td", { class: cls });
  const rows = [
    ["area", "Mask area", "Pixels inside the mask at the image's full size"],
    ["score", "Score (predicted IoU)", "The decoder's own quality estimate of the mask it chose"],
    ["encode", "Encoder time (this server)", "Time to compute the image embedding on this server (once per image)"],
    ["params", "Image encoder parameters", "Size of the image encoder: the part that differs between MobileSAM and SAM"],
    ["decode", "Decoder time (your browser)", "Time of the last mask decode in this browser"],
  ];
  c.headA = el("th", { scope: "col" });
  c.headB = el("th", { scope: "col" });
  c.cells = {};
  const body = el("tbody");
  for (const [key, label, title] of rows) {
    const a = cell("msam-cmp-a"), b = cell("msam-cmp-b");
    c.cells[key] = [a, b];
    body.appendChild(el("tr", {}, el("th", { scope: "row", title, text: label }), a, b));
  }
  c.table = el("table", { class: "msam-cmp-table" },
    el("thead", {}, el("tr", {}, el("th", { text: "" }), c.headA, c.headB)), body);
  c.summary = el("textarea", { class: "msam-cmp-summary", readonly: "", rows: "2", spellcheck: "false",
    "aria-label": "Comparison summary", placeholder: "Add a point or a box to compare the masks" });
  c.summary.addEventListener("focus", () => c.summary.select());
  c.copy = btn("Copy summary", "Copy this comparison as one line of text", () => actions.copySummary());
  c.panel = el("div", { class: "msam-compare", hidden: "" },
    el("div", { class: "msam-cmp-head" },
      el("span", { class: "msam-cmp-iou-label", title: "Intersection over union of the two masks at full size: "
        + "1 = identical, 0 = disjoint", text: "Mask IoU, MobileSAM vs SAM:" }),
      c.iou, c.iouNote, c.state,
      el("span", { class: "msam-cmp-views" }, c.side, c.overlay)),
    c.table,
    c.objects = el("ul", { class: "msam-cmp-objects", hidden: "", "aria-label": "Mask IoU of each object" }),
    el("div", { class: "msam-cmp-summary-row" }, c.summary, c.copy));
  return c;
}

/**
 * Draw the panel `c`. `session`: the CompareSession; `info`: the image; `s`: what is on screen
 * (MsamApp.shown()); `idx` / `cmpIdx`: the candidates shown; `ovA` / `ovB`: the overlays (their
 * input-frame masks give a preview's numbers); `stats`: session.stats() of the committed prompts;
 * `lastDecodeMs`: MobileSAM's last decode time.
 */
export function renderComparePanel(c, { session, info, s, idx, cmpIdx, ovA, ovB, stats, lastDecodeMs,
  objectIoUs = [], selectedId = null }) {
  const cmp = session.state;
  c.panel.hidden = !cmp;
  if (!cmp) return;
  c.side.classList.toggle("msam-active", session.view === "side");
  c.overlay.classList.toggle("msam-active", session.view === "overlay");
  c.headA.replaceChildren(el("span", { class: "msam-swatch msam-swatch-a" }),
    document.createTextNode(modelLabel(info?.model || "vit_t")));
  c.headB.replaceChildren(el("span", { class: "msam-swatch msam-swatch-b" }), document.createTextNode(cmp.label));
  c.state.textContent = cmp.error ? `${cmp.label} unavailable: ${cmp.error}`
    : !cmp.ready ? `Loading ${cmp.label}'s embedding and decoder…` : "";
  c.state.className = "msam-cmp-state" + (cmp.error ? " msam-error" : "");
  const hasPrompts = s.points.length || s.box;
  // on screen: the committed masks at full size (exact), or a hover preview at the encoder's resolution
  let iou = null, areaA = null, areaB = null;
  if (hasPrompts && ovA && ovB && s.preview) {
    const scale = (info.width * info.height) / Math.max(1, info.input_width * info.input_height);
    iou = maskIoU(ovA.mask, ovB.mask);
    areaA = maskArea(ovA.mask) * scale;
    areaB = maskArea(ovB.mask) * scale;
  }
  const st = stats;
  if (!s.preview && st) {
    iou = st.iou;
    areaA = st.a.area;
    areaB = st.b.area;
  }
  c.iou.textContent = iou == null ? "–" : iou.toFixed(3);
  c.iouNote.textContent = iou == null ? (hasPrompts ? "" : "(add a point or a box)") : s.preview ? "(preview)" : "";
  const total = info ? Math.max(1, info.width * info.height) : 1;
  const area = (v, approx) => (v == null ? "–" : `${approx ? "≈" : ""}${fmtInt(v)} px (${((100 * v) / total).toFixed(1)}%)`);
  const score = (r, k) => (r && k >= 0 ? `${r.scores[k].toFixed(3)}${k > 0 ? ` (#${k})` : ""}` : "–");
  const set = (key, a, b) => { c.cells[key][0].textContent = a; c.cells[key][1].textContent = b; };
  set("area", area(areaA, s.preview), area(areaB, s.preview));
  set("score", score(s.result, idx), score(s.cmpResult, cmpIdx));
  set("encode", fmtMs(info?.encode_ms), fmtMs(cmp.encodeMs));
  set("params", fmtParams(Number(info?.mobilesam_params)), fmtParams(Number(cmp.params)));
  const dms = (v) => (v == null ? "–" : `${v.toFixed(1)} ms`);
  set("decode", dms(lastDecodeMs), dms(session.lastDecodeMs));
  renderObjectIoUs(c.objects, objectIoUs, selectedId);
  const summary = st ? st.summary : "";
  if (c.summary.value !== summary) c.summary.value = summary;
  c.copy.disabled = !summary;
}

/** The per-object IoU list (shown from two objects with prompts on): "Object 2: IoU 0.931", the
 * selected object marked. `items`: CompareSession.objectIoUs. */
function renderObjectIoUs(list, items, selectedId) {
  list.hidden = items.length < 2;
  if (list.hidden) return;
  const key = items.map((o) => `${o.id}:${o.name}:${o.iou}:${o.id === selectedId}`).join("|");
  if (list.dataset.key === key) return;
  list.dataset.key = key;
  list.replaceChildren(...items.map((o) => el("li", {
    class: "msam-cmp-object" + (o.id === selectedId ? " msam-selected" : ""), "data-object-id": String(o.id),
    text: `${o.name}: IoU ${o.iou == null ? "–" : o.iou.toFixed(3)}`,
  })));
}

/** Put `summary` in the panel's field and on the clipboard; resolves to the status line's text. */
export async function copySummary(c, summary) {
  c.summary.value = summary;
  c.summary.focus();
  c.summary.select();
  try {
    await navigator.clipboard.writeText(summary);
    return "Summary copied.";
  } catch {
    return "Summary ready to copy (the clipboard is not available here).";
  }
}
