"""The prompt JSON of the app's API: valid prompts parse, every malformed one gets a clear error."""
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from mobilesam_app.prompts import RequestError, parse_prompts

SIZE = (534, 800)  # height, width


def test_points_box_and_multimask_parse():
    kwargs = parse_prompts(json.dumps({"points": [[10, 20, 1], [30.5, 40, 0]], "box": [1, 2, 300, 400],
                                       "multimask": False}), SIZE)
    np.testing.assert_array_equal(kwargs["point_coords"], [[10, 20], [30.5, 40]])
    np.testing.assert_array_equal(kwargs["point_labels"], [1, 0])
    np.testing.assert_array_equal(kwargs["box"], [1, 2, 300, 400])
    assert kwargs["multimask_output"] is False


def test_box_only_defaults_to_multimask():
    kwargs = parse_prompts('{"box": [0, 0, 800, 534]}', SIZE)
    assert "point_coords" not in kwargs and kwargs["multimask_output"] is True


@pytest.mark.parametrize("text, message", [
    ("", "JSON string"),
    ("{", "not valid JSON"),
    ("[1, 2]", "must be an object"),
    ('{"points": []}', "empty prompt"),
    ('{"points": [], "box": null}', "empty prompt"),
    ('{"points": [[1, 2]]}', r"\[x, y, label\]"),
    ('{"points": [[1, 2, 5]]}', "label must be 1"),
    ('{"points": [[1, "2", 1]]}', "numbers"),
    ('{"points": [[1, 2, true]]}', "numbers"),
    ('{"points": [[NaN, 2, 1]]}', "NaN is not allowed"),
    ('{"points": [[Infinity, 2, 1]]}', "Infinity is not allowed"),
    ('{"points": [[1e400, 2, 1]]}', "numbers"),
    ('{"points": [[900, 2, 1]]}', "outside"),
    ('{"points": [[-1, 2, 1]]}', "outside"),
    ('{"box": [300, 10, 100, 200]}', "x0 <= x1"),
    ('{"box": [0, 0, 10]}', r"\[x0, y0, x1, y1\]"),
    ('{"box": [0, 0, 10, 9999]}', "outside"),
    ('{"points": [[1, 2, 1]], "multimask": "yes"}', "true or false"),
    ('{"points": [[1, 2, 1]], "extra": 1}', "unknown key"),
    ('{"points": {"x": 1}}', "list"),
    ('{"points": 0, "box": [0, 0, 10, 10]}', "list"),  # not taken for "no points"
    ('{"points": "", "box": [0, 0, 10, 10]}', "list"),
    ('{"points": false, "box": [0, 0, 10, 10]}', "list"),
    (json.dumps({"points": [[1, 2, 1]] * 65}), "at most 64"),
    ("[" * 100000, "longer than"),
])
def test_malformed_prompts_are_refused_with_a_reason(text, message):
    with pytest.raises(RequestError, match=message):
        parse_prompts(text, SIZE)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), json_values.map(json.dumps),
                 st.fixed_dictionaries({"points": json_values, "box": json_values, "multimask": json_values}
                                       ).map(json.dumps)))
def test_any_input_parses_or_raises_request_error(text):
    try:
        kwargs = parse_prompts(text, SIZE)
    except RequestError as exc:
        assert str(exc)
        return
    # whatever parsed is a valid prompt inside the image
    assert "point_coords" in kwargs or "box" in kwargs
    if "point_coords" in kwargs:
        pts = kwargs["point_coords"]
        assert np.isfinite(pts).all() and (pts >= 0).all()
        assert (pts[:, 0] <= SIZE[1]).all() and (pts[:, 1] <= SIZE[0]).all()
