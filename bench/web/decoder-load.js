// The app's decoder load and nothing else (bench/decoder_bytes.py): web/decoder.js MaskModel fetches the
// decoder at ?decoder= while its worker starts onnxruntime-web from ?ort=, as the app page does at open.
// window.loadResult resolves to MaskModel.loadTimings plus readyMs, the "msam-decoder-ready" mark (ms
// since the navigation started).
import { MaskModel } from "/web/decoder.js";

const query = new URLSearchParams(location.search);
const model = new MaskModel({ ortBase: query.get("ort") || "/web/ort/", crossOriginIsolated: true, warmUp: false });
window.loadResult = model.load(query.get("decoder")).then(
  (m) => ({ ...m.loadTimings, readyMs: performance.getEntriesByName("msam-decoder-ready")[0]?.startTime ?? null }),
  (e) => ({ error: String(e && e.message ? e.message : e) }),
);
