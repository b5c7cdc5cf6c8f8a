"""Detections in memory and the ActivityNet results JSON: round trips and every bad input."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acn.errors import AcnError
from acn.evaluate import Detections, load_results, save_results

DETS = {
    "video_test_0000004": [(0.5, 3.25, "Billiards", 0.9), (10.0, 12.0, "Diving", 0.25)],
    "video_test_0000001": [(1.0, 1.0, "Billiards", -0.5)],
    "video_test_0000002": [],
}


def test_from_dict_round_trip_and_views():
    d = Detections.from_dict(DETS)
    assert len(d) == 3
    assert d.video_names == ("video_test_0000004", "video_test_0000001", "video_test_0000002")
    assert d.label_names == ("Billiards", "Diving")
    assert d.video_ids.tolist() == ["video_test_0000004"] * 2 + ["video_test_0000001"]
    assert d.labels.tolist() == ["Billiards", "Diving", "Billiards"]
    np.testing.assert_array_equal(d.start, [0.5, 10.0, 1.0])
    np.testing.assert_array_equal(d.score, [0.9, 0.25, -0.5])
    assert d.to_dict() == DETS  # empty videos survive
    with pytest.raises(ValueError):
        d.start[0] = 2.0  # read-only arrays


def test_from_arrays_and_select():
    d = Detections.from_arrays(["b", "a", "b"], ["x", "y", "x"], [0, 1, 2], [1, 2, 3],
                               [0.1, 0.2, 0.3])
    assert d.to_dict() == {"b": [(0.0, 1.0, "x", 0.1), (2.0, 3.0, "x", 0.3)],
                           "a": [(1.0, 2.0, "y", 0.2)]}
    s = d.select(d.video_ids == "b")
    assert s.to_dict() == {"b": [(0.0, 1.0, "x", 0.1), (2.0, 3.0, "x", 0.3)]}
    assert d.select(np.array([2]), keep_videos=["a"]).to_dict() == {
        "b": [(2.0, 3.0, "x", 0.3)], "a": []}


def test_save_load_round_trip(tmp_path):
    p = tmp_path / "out" / "pred.json"
    save_results(p, DETS, external_data={"used": False})
    obj = json.loads(p.read_text())
    assert obj["version"] == "VERSION 1.3" and obj["external_data"] == {"used": False}
    assert obj["results"]["video_test_0000004"][0] == {
        "label": "Billiards", "score": 0.9, "segment": [0.5, 3.25]}
    assert obj["results"]["video_test_0000002"] == []
    assert load_results(p).to_dict() == DETS
    assert [f.name for f in p.parent.iterdir()] == ["pred.json"]  # no temporary left behind
    save_results(p, Detections.from_dict(DETS))  # a Detections works as well
    assert json.loads(p.read_text())["external_data"] == {}


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(
    st.text(min_size=1, max_size=8),
    st.lists(st.tuples(st.floats(-1e6, 1e6), st.floats(0, 1e3), st.text(max_size=5),
                       st.floats(-1e9, 1e9)).map(lambda t: (t[0], t[0] + t[1], t[2], t[3])),
             max_size=4),
    max_size=4))
def test_round_trip_is_exact(tmp_path_factory, dets):
    p = tmp_path_factory.mktemp("rt") / "r.json"
    save_results(p, dets)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        back = load_results(p).to_dict()
    assert back == {v: [tuple(x) for x in lst] for v, lst in dets.items()}
    # exactly one warning, and only when there is no detection at all
    assert len(caught) == (0 if any(dets.values()) else 1)


def test_empty_results_warn(tmp_path):
    p = tmp_path / "e.json"
    p.write_text('{"version": "VERSION 1.3", "results": {"v1": []}, "external_data": {}}')
    with pytest.warns(UserWarning, match="holds no detection"):
        d = load_results(p)
    assert len(d) == 0 and d.video_names == ("v1",)


def test_minimal_file_without_version_loads(tmp_path):
    p = tmp_path / "m.json"
    p.write_text('{"results": {"v": [{"label": "a", "score": 1, "segment": [0, 2]}]}}')
    assert load_results(p).to_dict() == {"v": [(0.0, 2.0, "a", 1.0)]}


@pytest.mark.parametrize("text, msg", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object.*got a JSON list"),
    ('{"version": "VERSION 1.3"}', 'no "results" key.*keys present: \\[\'version\'\\]'),
    ('{"results": []}', '"results" must map video ids.*got a JSON list'),
    ('{"results": {"v1": {"label": "a"}}}', r"results\['v1'\] must be a list"),
    ('{"results": {"v1": [[0, 1, "a", 0.5]]}}', r"results\['v1'\]\[0\]: a detection must be an "
                                                 "object"),
    ('{"results": {"v1": [{"label": "a", "segment": [0, 1]}]}}',
     r"results\['v1'\]\[0\]: missing key\(s\) \['score'\]"),
    ('{"results": {"v1": [{"label": "a", "score": 1, "segment": [0, 1, 2]}]}}',
     r'"segment" must be \[start_s, end_s\]'),
    ('{"results": {"v1": [{"label": "a", "score": 1, "segment": "0-1"}]}}',
     r'"segment" must be \[start_s, end_s\]'),
    ('{"results": {"v1": [{"label": 3, "score": 1, "segment": [0, 1]}]}}',
     "label must be a class name"),
    ('{"results": {"v1": [{"label": "a", "score": "high", "segment": [0, 1]}]}}',
     "score must be a number"),
    ('{"results": {"v1": [{"label": "a", "score": true, "segment": [0, 1]}]}}',
     "score must be a number"),
    ('{"results": {"v1": [{"label": "a", "score": NaN, "segment": [0, 1]}]}}',
     "score is nan"),
    ('{"results": {"v1": [{"label": "a", "score": 1, "segment": [0, null]}]}}',
     "segment times must be numbers"),
    ('{"results": {"v1": [{"label": "a", "score": 1, "segment": [0, Infinity]}]}}',
     "non-finite time"),
    ('{"results": {"v1": [], "v2": [{"label": "a", "score": 1, "segment": [0, 1]}, '
     '{"label": "a", "score": 1, "segment": [5, 4]}]}}',
     r"results\['v2'\]\[1\]: segment end 4.0 is before its start 5.0"),
])
def test_bad_files(tmp_path, text, msg):
    p = tmp_path / "bad.json"
    p.write_text(text)
    with pytest.raises(AcnError, match=msg) as e:
        load_results(p)
    assert str(p) in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(AcnError, match="results file not found"):
        load_results(tmp_path / "nope.json")


@pytest.mark.parametrize("dets, msg", [
    ({"v": [(0.0, 1.0, "a")]}, r"video 'v' detection 0: expected a tuple"),
    ({"v": [(2.0, 1.0, "a", 0.5)]}, "segment end 1.0 is before its start 2.0"),
    ({"v": [(0.0, 1.0, "a", math.nan)]}, "score is nan"),
    ({"v": [(0.0, math.inf, "a", 0.5)]}, "non-finite time"),
    ({"v": [(0.0, 1.0, 7, 0.5)]}, "label must be a class name"),
    ({"v": "abc"}, "expected a list"),
    ({3: []}, "video id 3 is not a string"),
    ([("v", 0, 1, "a", 0.5)], "expected a mapping"),
])
def test_bad_dicts(dets, msg):
    with pytest.raises(AcnError, match=msg):
        Detections.from_dict(dets)


def test_bad_arrays():
    with pytest.raises(AcnError, match="differ in length"):
        Detections.from_arrays(["v"], ["a", "b"], [0], [1], [1])
    with pytest.raises(AcnError, match="end 0.0 is before its start 1.0"):
        Detections.from_arrays(["v"], ["a"], [1.0], [0.0], [1])
    with pytest.raises(AcnError, match="NaN or infinite score"):
        Detections.from_arrays(["v"], ["a"], [0.0], [1.0], [np.nan])
