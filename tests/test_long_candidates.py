"""Candidates of the smoothed CAS (``acn.long_candidates``): the smoothing against a direct
window mean, when they join the candidates, and what they add."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acn.config import resolve
from acn.errors import AcnError
from acn.localize.segments import cas_candidates, smoothed_scp
from acn.localize.video import long_candidates_on

from conftest import one_class_video, score_one_video


def brute_smooth(row: np.ndarray, k: int) -> np.ndarray:
    """Mean over the k snippets centred on each one (k // 2 before it), ends repeated."""
    T = len(row)
    out = np.empty(T)
    for t in range(T):
        idx = [min(max(j, 0), T - 1) for j in range(t - k // 2, t - k // 2 + k)]
        out[t] = row[idx].mean()
    return out


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(1, 80), st.floats(0.001, 1.0), st.integers(0, 2**31 - 1))
def test_smoothing_matches_a_direct_window_mean(K, T, fraction, seed):
    scp = np.random.default_rng(seed).random((K, T)).astype(np.float32)
    got = smoothed_scp(scp, fraction)
    k = max(1, int(round(fraction * T)))
    assert got.shape == (K, T)
    for r in range(K):
        np.testing.assert_allclose(got[r], brute_smooth(scp[r].astype(np.float64), k),
                                   rtol=1e-5, atol=1e-6)


def config(*extra: str) -> dict:
    return resolve(overrides=["acn.proposals=cas", "localize.attention_weight=0",
                              "acn.alpha=0.8", "acn.lc_features=standardize", *extra])


def scene(T: int = 100, seed: int = 0):
    """One activity over [10, 90) whose CAS dips in three places: no level of the raw CAS
    gives one segment over the whole of it."""
    scp = np.full((1, T), 0.05, np.float32)
    scp[0, 10:90] = 0.9
    for d in (30, 50, 70):
        scp[0, d:d + 3] = 0.05
    return one_class_video(scp, seed)


def segments(cfg, feats, out) -> set:
    seg, _, lab, _ = score_one_video(cfg, feats, out)
    return {(int(c), round(float(a), 6), round(float(b), 6)) for (a, b), c in zip(seg, lab)}


def test_they_add_the_segments_of_the_smoothed_scp_and_cover_the_activity():
    feats, out = scene()
    cfg_off = config("acn.long_candidates=off")
    before = segments(cfg_off, feats, out)
    have = segments(config("acn.long_candidates=on"), feats, out)
    new = set()
    for f in cfg_off["acn"]["long_windows"]:
        rows, s, e = cas_candidates(smoothed_scp(out.scp, f), cfg_off["acn"]["cas_thresholds"],
                                    cfg_off["acn"]["cas_min_length"], True)
        new |= {(int(r), round(float(a), 6), round(float(b), 6)) for r, a, b in zip(rows, s, e)}
    assert before < have and have == before | new
    def covers(cands):
        return any(abs(a - 10) < 2 and abs(b - 90) < 2 for _, a, b in cands)
    assert not covers(before) and covers(new)


@pytest.mark.parametrize("mode,whole,want", [
    ("auto", "off", False), ("auto", "first", True), ("auto", "scored", True),
    ("on", "off", True), ("off", "first", False)])
def test_auto_follows_the_whole_video_choice(mode, whole, want):
    cfg = config(f"acn.long_candidates={mode}", f"localize.whole_video={whole}")
    assert long_candidates_on(cfg["acn"], cfg["localize"]) is want
    feats, out = scene()
    extra = segments(cfg, feats, out) - segments(config("acn.long_candidates=off",
                                                        f"localize.whole_video={whole}"),
                                                 feats, out)
    assert bool(extra) is want


def test_bad_settings_are_errors_that_name_the_key():
    with pytest.raises(AcnError, match="long_candidates"):
        config("acn.long_candidates=sometimes")
    feats, out = scene()
    for bad in ("[0]", "[1.5]", "[0.1, -0.2]", "0.1"):
        with pytest.raises(AcnError, match="long_windows"):
            segments(config("acn.long_candidates=on", f"acn.long_windows={bad}"), feats, out)
