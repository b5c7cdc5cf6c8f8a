"""The valley term (``localize.valley``): the depth against a direct computation, its
properties, and what it does to the scores of candidates."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acn.config import resolve
from acn.errors import AcnError
from acn.localize.segments import valley_depth, window_mean
from acn.localize.video import valley_weight

from conftest import one_class_video, score_one_video


def brute_depth(profile: np.ndarray, rows, starts, ends) -> np.ndarray:
    """For each segment, over the snippets it overlaps: the largest of min(max before and at
    t, max at and after t) - x[t], divided by the segment's maximum."""
    T = profile.shape[1]
    out = []
    for r, s, e in zip(rows, starts, ends):
        a = min(max(int(np.floor(s)), 0), T - 1)
        b = min(max(int(np.ceil(e)), a + 1), T)
        x = profile[r, a:b].astype(np.float64)
        d = max(min(x[:t + 1].max(), x[t:].max()) - x[t] for t in range(len(x)))
        out.append(d / x.max() if x.max() > 0 else 0.0)
    return np.array(out)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(1, 60), st.integers(1, 40), st.integers(1, 300),
       st.integers(0, 2**31 - 1))
def test_depth_matches_a_direct_computation(K, T, N, chunk, seed):
    rng = np.random.default_rng(seed)
    profile = rng.random((K, T)).astype(np.float32)
    rows = rng.integers(0, K, N)
    starts = rng.uniform(0, T, N)
    ends = np.minimum(starts + rng.uniform(0.01, T, N), T)
    got = valley_depth(profile, rows, starts, ends, chunk=chunk)
    np.testing.assert_allclose(got, brute_depth(profile, rows, starts, ends), atol=1e-9)
    assert got.shape == (N,) and np.all((got >= 0) & (got <= 1))


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 50), st.integers(0, 49), st.integers(0, 2**31 - 1))
def test_one_hump_has_no_valley(T, peak, seed):
    """Rising to one peak and falling after it (or only rising, or only falling): depth 0."""
    peak = min(peak, T - 1)
    rng = np.random.default_rng(seed)
    x = np.concatenate([np.sort(rng.random(peak + 1)), np.sort(rng.random(T - peak - 1))[::-1]])
    x[peak] = 1.0
    assert valley_depth(x[None], np.zeros(1, int), np.zeros(1), np.full(1, float(T)))[0] == 0.0


def test_two_humps_give_the_lower_one_minus_the_dip_over_the_peak():
    x = np.array([[0.1, 0.8, 0.2, 0.6, 0.1, 0.0]])
    depth = valley_depth(x, np.zeros(3, int), np.array([0.0, 0.0, 2.5]),
                         np.array([6.0, 2.0, 6.0]))
    np.testing.assert_allclose(depth, [(0.6 - 0.2) / 0.8, 0.0, 0.0])
    # a partly covered snippet counts: [1.5, 3.2) overlaps snippets 1, 2 and 3
    np.testing.assert_allclose(valley_depth(x, np.zeros(1, int), np.array([1.5]),
                                            np.array([3.2])), [(0.6 - 0.2) / 0.8])
    assert valley_depth(np.zeros((1, 4)), np.zeros(1, int), np.zeros(1), np.full(1, 4.0))[0] == 0
    assert valley_depth(np.zeros((1, 0)), np.zeros(0, int), np.zeros(0), np.zeros(0)).shape == (0,)


def config(*extra: str) -> dict:
    return resolve(overrides=["acn.proposals=cas", "localize.attention_weight=0",
                              "acn.alpha=0.8", "acn.lc_features=standardize",
                              "acn.long_candidates=off", "localize.video_score_weight=0",
                              *extra])


def scene(T: int = 60, seed: int = 0):
    """Two instances of one class, [10, 20) and [30, 40), with a clear gap between them."""
    scp = np.full((1, T), 0.05, np.float32)
    scp[0, 10:20] = 0.9
    scp[0, 20:30] = 0.3
    scp[0, 30:40] = 0.8
    return one_class_video(scp, seed)


def scored(cfg, feats, out) -> dict:
    seg, sc, _, _ = score_one_video(cfg, feats, out)
    return {(round(float(a), 6), round(float(b), 6)): float(s) for (a, b), s in zip(seg, sc)}


def test_it_lowers_each_score_by_the_weight_times_the_depth_of_the_smoothed_cas():
    feats, out = scene()
    off = scored(config("localize.valley=off"), feats, out)
    cfg = config("localize.valley=on", "localize.valley_weight=0.5")
    on = scored(cfg, feats, out)
    assert on.keys() == off.keys()
    segs = np.array(list(on))
    depth = valley_depth(window_mean(out.scp, cfg["localize"]["valley_window"]),
                         np.zeros(len(segs), int), segs[:, 0], segs[:, 1])
    np.testing.assert_allclose([off[k] - on[k] for k in on], 0.5 * depth, atol=1e-9)
    # the candidate spanning both instances loses, each instance alone does not
    both = max(on, key=lambda k: k[1] - k[0])
    assert both[0] < 12 and both[1] > 38 and off[both] - on[both] > 0.1
    alone = [k for k in on if k[1] <= 21 or k[0] >= 29]
    assert alone and all(abs(off[k] - on[k]) < 1e-9 for k in alone)


def test_the_whole_video_is_exempt():
    feats, out = scene()
    cfg = config("localize.valley=on", "localize.whole_video=scored")
    on, off = scored(cfg, feats, out), scored(config("localize.valley=off",
                                                     "localize.whole_video=scored"), feats, out)
    assert on[(0.0, 60.0)] == off[(0.0, 60.0)]


@pytest.mark.parametrize("mode,whole,want", [
    ("auto", "off", 0.3), ("auto", "first", 0.0), ("auto", "scored", 0.0),
    ("on", "first", 0.3), ("off", "off", 0.0), (True, "off", 0.3), (False, "off", 0.0)])
def test_auto_follows_the_whole_video_choice(mode, whole, want):
    cfg = resolve(overrides=[f"localize.whole_video={whole}", "localize.valley_weight=0.3"])
    cfg["localize"]["valley"] = mode if isinstance(mode, str) else (
        resolve(overrides=[f"localize.valley={str(mode).lower()}"])["localize"]["valley"])
    assert valley_weight(cfg["localize"]) == want


def test_bad_settings_are_errors_that_name_the_key():
    for bad in ("localize.valley=sometimes", "localize.valley_weight='a'",
                "localize.valley_window=2.5"):
        with pytest.raises(AcnError, match=bad.split("=")[0]):
            resolve(overrides=[bad])
    for key, bad in (("valley_weight", "-0.1"), ("valley_window", "0")):
        cfg = resolve(overrides=["localize.valley=on", f"localize.{key}={bad}"])
        with pytest.raises(AcnError, match=f"localize.{key}"):
            valley_weight(cfg["localize"])
