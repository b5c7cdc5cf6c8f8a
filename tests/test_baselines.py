"""CAS-thresholding baseline: connected components, scoring, seconds, planted segments."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acn.train.outputs import BaseOutputs
from acn.baselines import (
    DEFAULT_BASELINE_CONFIG,
    cas_detections,
    cas_segments,
    mask_runs,
    resolve_baseline_config,
)
from acn.data.annotations import Annotations, Video
from acn.errors import AcnError


def runs_by_loop(mask: np.ndarray) -> list[tuple[int, int, int]]:
    out = []
    for r, row in enumerate(mask):
        start = None
        for t, on in enumerate(row):
            if on and start is None:
                start = t
            if not on and start is not None:
                out.append((r, start, t))
                start = None
        if start is not None:
            out.append((r, start, len(row)))
    return out


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 5), st.integers(1, 40), st.integers(0, 2**31 - 1), st.floats(0.05, 0.95))
def test_mask_runs_matches_brute_force(rows, T, seed, p):
    mask = np.random.default_rng(seed).random((rows, T)) < p
    r, s, e = mask_runs(mask)
    assert list(zip(r.tolist(), s.tolist(), e.tolist())) == runs_by_loop(mask)


def test_mask_runs_edges():
    r, s, e = mask_runs(np.array([[True, True, False, True], [False] * 4, [True] * 4]))
    assert r.tolist() == [0, 0, 2] and s.tolist() == [0, 3, 0] and e.tolist() == [2, 4, 4]


def planted(T=100, C=3, cls=1, seg=(30, 45), seed=0):
    rng = np.random.default_rng(seed)
    target = 0.1 + 0.15 * rng.random(T)  # background: low, noisy
    target[seg[0]: seg[1]] = 0.9
    scp = np.repeat(((1 - target) / (C - 1))[None], C, axis=0)  # probabilities over classes
    scp[cls] = target
    vs = np.full(C, 0.02)
    vs[cls] = 0.96
    att = np.zeros(T)
    att[seg[0]: seg[1]] = 3.0
    return scp.astype(np.float32), vs.astype(np.float32), att.astype(np.float32)


def test_finds_a_planted_segment():
    scp, vs, att = planted()
    segs, labels, scores = cas_segments(scp, vs, att)
    assert segs[0].tolist() == [30, 45] and labels[0] == 1
    assert np.all(np.diff(scores) <= 0)  # sorted by score
    assert set(labels.tolist()) == {1}  # only the class above the video-score threshold


def test_detections_in_seconds_clipped_to_the_video():
    scp, vs, att = planted(T=100, seg=(90, 100))
    v = Video("v1", "test", duration=63.0, labels=("b",), fps=25.0, frames_per_snippet=16)
    ann = Annotations(["a", "b", "c"], {"v1": v}, "validation", "test")
    det = cas_detections({"v1": BaseOutputs(scp, att, vs)}, ann)
    start, end, label, score = det["v1"][0]
    assert label == "b"
    assert start == pytest.approx(90 * 16 / 25) and end == pytest.approx(63.0)  # 100*0.64 > 63
    assert isinstance(score, float)


def test_scores_by_hand_and_nms():
    # One class, CAS [0, 0, .5, 1, .5, 0, 0, 0]: relative level 0.3 -> run [2, 5), level 0.6
    # -> run [3, 4). Mean inside: 2/3 and 1. Contrast: outer area 1 snippet each side (0.25 of
    # the length rounded, at least 1): [1,2) and [5,6) are 0 -> same as the mean; [3,4): outer
    # [2,3) and [4,5) mean 0.5 -> 0.5.
    cas = np.array([[0, 0, 0.5, 1, 0.5, 0, 0, 0]], dtype=np.float32)
    vs = np.array([1.0], dtype=np.float32)
    cfg = {"thresholds": [0.3, 0.6], "nms_iou": 0.99, "min_length": 1}
    segs, _, scores = cas_segments(cas, vs, None, {**cfg, "score": "mean"})
    assert segs.tolist() == [[3, 4], [2, 5]]
    assert scores.tolist() == pytest.approx([1.0, 2 / 3])
    segs, _, scores = cas_segments(cas, vs, None, {**cfg, "score": "contrast"})
    assert segs.tolist() == [[2, 5], [3, 4]]
    assert scores.tolist() == pytest.approx([2 / 3, 0.5])
    # IoU([2,5), [3,4)) = 1/3: suppressed at nms_iou 0.3, kept at 0.4.
    assert len(cas_segments(cas, vs, None, {**cfg, "nms_iou": 0.3})[0]) == 1
    assert len(cas_segments(cas, vs, None, {**cfg, "nms_iou": 0.4})[0]) == 2
    assert cas_segments(cas, vs, None, {**cfg, "min_length": 2})[0].tolist() == [[2, 5]]


def test_attention_gate_and_absolute_thresholds():
    scp, vs, att = planted()
    att[30:35] = -5.0  # the first third of the action is not attended
    segs, _, _ = cas_segments(scp, vs, att, {"attention": "gate", "attention_threshold": 0.0,
                                             "threshold_mode": "absolute",
                                             "thresholds": [0.5]})
    assert segs.tolist() == [[35, 45]]


def test_no_class_above_threshold_uses_top_class_or_none():
    scp, _, att = planted()
    low = np.full(3, 0.05, dtype=np.float32)
    low[2] = 0.06
    _, labels, _ = cas_segments(scp, low, att, {"class_threshold": 0.5})
    assert set(labels.tolist()) == {2}
    segs, _, _ = cas_segments(scp, low, att, {"class_threshold": 0.5, "top_classes": 0})
    assert len(segs) == 0


def test_bad_config_and_inputs():
    assert resolve_baseline_config(None) == DEFAULT_BASELINE_CONFIG
    with pytest.raises(AcnError, match="unknown keys"):
        resolve_baseline_config({"thresh": 1})
    with pytest.raises(AcnError, match="attention_threshold"):
        resolve_baseline_config({"attention": "gate"})
    scp, vs, _ = planted()
    with pytest.raises(AcnError, match="attention"):
        cas_segments(scp, vs, None, {"attention": "weight"})
    with pytest.raises(AcnError, match="do not match"):
        cas_segments(scp, vs[:2], None)
