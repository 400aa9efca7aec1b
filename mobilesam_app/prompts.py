"""Parsing the prompts of the app's API requests (`segment`, `compare`, `segment_objects`).

Every malformed request raises `RequestError` with a message meant for the user.
"""
import json
import math
from typing import Any, Dict, List, Tuple

import numpy as np

from mobilesam.utils import prompts as checks

MAX_POINTS = 64
MAX_PROMPT_JSON_CHARS = 20_000
MAX_OBJECTS = 256
MAX_OBJECTS_JSON_CHARS = 1_000_000


class RequestError(ValueError):
    """A request that cannot be answered; the message says why."""


def parse_prompts(text: Any, image_size) -> Dict[str, Any]:
    """Parse `{"points": [[x, y, label], ...], "box": [x0, y0, x1, y1] | null, "multimask": bool}`.

    Coordinates are original-image pixels; `image_size` is (height, width). Returns keyword
    arguments for SamPredictor.predict.
    """
    data = _load_json(text, MAX_PROMPT_JSON_CHARS, "prompts",
                      '{"points": [[x, y, 1]], "box": null, "multimask": true}')
    if not isinstance(data, dict):
        raise RequestError("prompts JSON must be an object with keys points, box, multimask")
    unknown = set(data) - {"points", "box", "multimask"}
    if unknown:
        raise RequestError(f"unknown key(s) in prompts: {sorted(unknown)}")
    kwargs = parse_object_prompt(data, image_size)
    kwargs["multimask_output"] = _parse_multimask(data.get("multimask", True))
    return kwargs


def parse_objects(text: Any, image_size) -> Tuple[List[Dict[str, Any]], bool]:
    """Parse `{"objects": [{"points": [[x, y, label], ...], "box": [x0, y0, x1, y1] | null}, ...],
    "multimask": bool}` (the `segment_objects` request).

    Returns (one dict per object, in request order, with SamPredictor.predict's point_coords /
    point_labels / box keys; multimask). Each object is checked as `parse_prompts` checks a prompt;
    an error names the object by its index.
    """
    data = _load_json(text, MAX_OBJECTS_JSON_CHARS, "objects",
                      '{"objects": [{"points": [[x, y, 1]], "box": null}], "multimask": true}')
    if not isinstance(data, dict):
        raise RequestError("objects JSON must be an object with keys objects, multimask")
    unknown = set(data) - {"objects", "multimask"}
    if unknown:
        raise RequestError(f"unknown key(s) in the request: {sorted(unknown)}")
    objects = data.get("objects")
    if not isinstance(objects, list):
        raise RequestError("objects must be a list of {\"points\": [...], \"box\": [...] or null}")
    if not objects:
        raise RequestError("objects is empty: give at least one object")
    if len(objects) > MAX_OBJECTS:
        raise RequestError(f"at most {MAX_OBJECTS} objects are allowed, got {len(objects)}")
    parsed = []
    for i, obj in enumerate(objects):
        if not isinstance(obj, dict):
            raise RequestError(f"object {i}: must be an object with keys points, box, got {obj!r:.80}")
        unknown = set(obj) - {"points", "box"}
        if unknown:
            raise RequestError(f"object {i}: unknown key(s) {sorted(unknown)}")
        try:
            parsed.append(parse_object_prompt(obj, image_size))
        except RequestError as exc:
            raise RequestError(f"object {i}: {exc}") from exc
    return parsed, _parse_multimask(data.get("multimask", True))


def parse_object_prompt(data: Dict[str, Any], image_size) -> Dict[str, Any]:
    """One object's `points` and `box` (checked strictly: inside the image, x0 <= x1, y0 <= y1)
    -> SamPredictor.predict keyword arguments point_coords (N×2), point_labels (N) and box (4)."""
    kwargs: Dict[str, Any] = {}
    points = data.get("points")
    if points is None:
        points = []
    if not isinstance(points, list):
        raise RequestError("points must be a list of [x, y, label]")
    if len(points) > MAX_POINTS:
        raise RequestError(f"at most {MAX_POINTS} points are allowed, got {len(points)}")
    if points:
        for p in points:
            if not (isinstance(p, list) and len(p) == 3 and all(_is_number(v) for v in p)):
                raise RequestError(f"each point must be [x, y, label] with numbers, got {p!r}")
            if p[2] not in (0, 1):
                raise RequestError(f"point label must be 1 (foreground) or 0 (background), got {p[2]!r}")
        arr = np.array(points, dtype=np.float64)
        kwargs["point_coords"], kwargs["point_labels"] = arr[:, :2], arr[:, 2].astype(np.int64)
    box = data.get("box")
    if box is not None:
        if not (isinstance(box, list) and len(box) == 4 and all(_is_number(v) for v in box)):
            raise RequestError(f"box must be [x0, y0, x1, y1] with numbers or null, got {box!r}")
        kwargs["box"] = np.array(box, dtype=np.float64)
    if "point_coords" not in kwargs and "box" not in kwargs:
        raise RequestError("empty prompt: give at least one point or a box")
    try:
        if "point_coords" in kwargs:
            checks.check_points(kwargs["point_coords"], kwargs["point_labels"], image_size)
        if "box" in kwargs:
            checks.check_box(kwargs["box"], image_size)
    except ValueError as exc:
        raise RequestError(str(exc)) from exc
    return kwargs


def _load_json(text: Any, max_chars: int, what: str, example: str) -> Any:
    if not isinstance(text, str) or not text.strip():
        raise RequestError(f"{what} must be a JSON string such as {example}")
    if len(text) > max_chars:
        raise RequestError(f"{what} JSON is longer than {max_chars} characters")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise RequestError(f"{what} are not valid JSON: {exc}") from exc


def _reject_constant(name: str):
    raise ValueError(f"{name} is not allowed in prompts")


def _is_number(v: Any) -> bool:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # a JSON integer too large for a float, such as 1e400 written out
        return False


def _parse_multimask(value: Any) -> bool:
    if not isinstance(value, bool):
        raise RequestError(f"multimask must be true or false, got {value!r}")
    return value
