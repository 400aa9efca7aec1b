// MobileSAM browser demo: a list of boxes to segment at once, one object per box. Pure parsing
// (runs under Node for its tests): COCO / SA-1B JSON (a document with `annotations`, or a list of
// records, each with `bbox` [x, y, w, h]) or text with one box a line as "x0,y0,x1,y1" (commas or
// spaces; blank lines and lines starting with # are skipped). Coordinates are image pixels.

export const MAX_BOX_ERRORS_SHOWN = 5;

/**
 * The boxes of `text`: [{x0, y0, x1, y1, name}] (name: the record's `name` or category, else null).
 * `width` × `height`: the image (a box must overlap it). Throws an Error whose message lists the
 * bad lines / records (the first MAX_BOX_ERRORS_SHOWN, then how many more), or says there is none.
 */
export function parseBoxes(text, { width = Infinity, height = Infinity } = {}) {
  const src = String(text ?? "").trim();
  if (!src) throw new Error("No boxes: paste COCO JSON with bbox records, or one x0,y0,x1,y1 box a line.");
  const { boxes, errors } = /^[[{]/.test(src) ? fromJson(src) : fromLines(src);
  for (const b of boxes) {
    const why = boxProblem(b, width, height);
    if (why) errors.push(`${b.where}: ${why}`);
  }
  if (errors.length) {
    const more = errors.length > MAX_BOX_ERRORS_SHOWN ? ` (and ${errors.length - MAX_BOX_ERRORS_SHOWN} more)` : "";
    throw new Error(`Cannot read these boxes: ${errors.slice(0, MAX_BOX_ERRORS_SHOWN).join("; ")}${more}.`);
  }
  if (!boxes.length) throw new Error("No boxes found: expected COCO `bbox` records or x0,y0,x1,y1 lines.");
  return boxes.map(({ x0, y0, x1, y1, name }) => ({ x0, y0, x1, y1, name }));
}

function fromLines(src) {
  const boxes = [], errors = [];
  src.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith("#")) return;
    const parts = line.split(/[\s,;]+/).filter(Boolean);
    const nums = parts.map(Number);
    const where = `line ${i + 1} ("${line.length > 40 ? line.slice(0, 40) + "…" : line}")`;
    if (parts.length !== 4 || !nums.every(Number.isFinite)) {
      errors.push(`${where}: expected four numbers x0,y0,x1,y1`);
      return;
    }
    const [x0, y0, x1, y1] = nums;
    boxes.push({ x0, y0, x1, y1, name: null, where });
  });
  return { boxes, errors };
}

function fromJson(src) {
  let doc;
  try {
    doc = JSON.parse(src);
  } catch (e) {
    return { boxes: [], errors: [`not valid JSON (${e.message})`] };
  }
  const records = Array.isArray(doc) ? doc : doc && Array.isArray(doc.annotations) ? doc.annotations : null;
  if (!records) return { boxes: [], errors: ["JSON without an `annotations` list (or a list of records with `bbox`)"] };
  const names = new Map((doc && Array.isArray(doc.categories) ? doc.categories : []).map((c) => [c.id, c.name]));
  const boxes = [], errors = [];
  records.forEach((r, i) => {
    const where = `record ${i + 1}`;
    const bbox = Array.isArray(r) ? r : r && r.bbox;
    if (!Array.isArray(bbox) || bbox.length !== 4 || !bbox.every((v) => typeof v === "number" && Number.isFinite(v))) {
      errors.push(`${where}: expected "bbox": [x, y, width, height] (four numbers)`);
      return;
    }
    const [x, y, w, h] = bbox;
    const name = r && typeof r.name === "string" ? r.name : names.get(r && r.category_id) ?? null;
    boxes.push({ x0: x, y0: y, x1: x + w, y1: y + h, name, where });
  });
  return { boxes, errors };
}

function boxProblem(b, width, height) {
  if (!(b.x1 > b.x0 && b.y1 > b.y0)) return "the box is empty (x1 must exceed x0 and y1 exceed y0)";
  if (b.x1 <= 0 || b.y1 <= 0 || b.x0 >= width || b.y0 >= height) return `the box lies outside the ${width}×${height} image`;
  return null;
}
