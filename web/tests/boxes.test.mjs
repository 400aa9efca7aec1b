// Unit tests of web/boxes.js parseBoxes: COCO JSON and x0,y0,x1,y1 lines, and clear errors.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseBoxes } from "../boxes.js";

const size = { width: 640, height: 480 };

test("x0,y0,x1,y1 lines, with spaces or commas, comments and blank lines skipped", () => {
  const boxes = parseBoxes("# boxes\n10,20,110,220\n\n 5 6 50.5 60 \n", size);
  assert.deepEqual(boxes, [{ x0: 10, y0: 20, x1: 110, y1: 220, name: null }, { x0: 5, y0: 6, x1: 50.5, y1: 60, name: null }]);
});

test("COCO JSON: bbox [x, y, w, h] records, names from the record or its category", () => {
  const doc = { annotations: [{ bbox: [10, 20, 100, 50], category_id: 3 }, { bbox: [0, 0, 5, 5], name: "dot" }],
    categories: [{ id: 3, name: "truck" }] };
  assert.deepEqual(parseBoxes(JSON.stringify(doc), size), [
    { x0: 10, y0: 20, x1: 110, y1: 70, name: "truck" }, { x0: 0, y0: 0, x1: 5, y1: 5, name: "dot" }]);
  assert.deepEqual(parseBoxes("[{\"bbox\": [1, 2, 3, 4]}]", size), [{ x0: 1, y0: 2, x1: 4, y1: 6, name: null }]);
});

test("bad lines are listed by number with their text", () => {
  assert.throws(() => parseBoxes("10,20,110,220\n1,2,3\nhello\n50,50,40,60", size), (e) => {
    assert.match(e.message, /line 2 \("1,2,3"\): expected four numbers/);
    assert.match(e.message, /line 3 \("hello"\): expected four numbers/);
    assert.match(e.message, /line 4 \("50,50,40,60"\): the box is empty/);
    assert.doesNotMatch(e.message, /line 1/);
    return true;
  });
  assert.throws(() => parseBoxes("700,10,800,100", size), /line 1 .*outside the 640×480 image/);
  assert.throws(() => parseBoxes(Array.from({ length: 8 }, () => "x").join("\n"), size), /\(and 3 more\)/);
});

test("bad JSON, records without bbox and empty input say so", () => {
  assert.throws(() => parseBoxes("{\"annotations\": [", size), /not valid JSON/);
  assert.throws(() => parseBoxes("{\"images\": []}", size), /without an `annotations` list/);
  assert.throws(() => parseBoxes("{\"annotations\": [{\"bbox\": [1, 2]}]}", size), /record 1: expected "bbox"/);
  assert.throws(() => parseBoxes("  \n", size), /No boxes/);
  assert.throws(() => parseBoxes("# only a comment", size), /No boxes found/);
});
