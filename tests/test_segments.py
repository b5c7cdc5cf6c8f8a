"""CAS-segment proposals: candidates, regression and scoring against direct computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from acn.localize.reference import proposal_terms_one
from acn.localize.segments import cas_candidates, regress_segments, score_segments, scp_thresholds


def brute_runs(scp: np.ndarray, thresholds) -> set[tuple[int, int, int]]:
    out = set()
    for k, row in enumerate(scp):
        lo, hi = row.min(), row.max()
        for t in thresholds:
            above = row > lo + t * (hi - lo)
            i = 0
            while i < len(row):
                if above[i]:
                    j = i
                    while j < len(row) and above[j]:
                        j += 1
                    out.add((k, i, j))
                    i = j
                else:
                    i += 1
    return out


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 3), st.integers(1, 40), st.integers(0, 2**31 - 1))
def test_cas_candidates_match_brute_force(K, T, seed):
    scp = np.random.default_rng(seed).random((K, T))
    th = [0.2, 0.5, 0.8]
    rows, s, e = cas_candidates(scp, th)
    got = set(zip(rows.tolist(), s.tolist(), e.tolist()))
    assert got == brute_runs(scp, th)
    assert len(got) == len(rows)  # no duplicates across levels


def test_regress_segments_uses_nearest_anchor():
    T = 20
    r4 = torch.zeros(2, T)
    r16 = torch.zeros(2, T)
    r4[0, 3], r4[1, 7] = 2.0, -1.0      # a length-4 segment [3, 7) reads anchor 4
    r16[0, 2], r16[1, 18] = 1.0, 0.5    # a length-16 segment [2, 18) reads anchor 16
    s, e = regress_segments(torch.tensor([3, 2]), torch.tensor([7, 18]), T, {4: r4, 16: r16})
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    assert np.allclose(s.numpy(), [3 + 4 * (sig(2.0) - 0.5), 2 + 16 * (sig(1.0) - 0.5)])
    assert np.allclose(e.numpy(), [7 + 4 * (sig(-1.0) - 0.5), min(T, 18 + 16 * (sig(0.5) - 0.5))])
    # no regression output: boundaries unchanged
    s0, e0 = regress_segments(torch.tensor([3]), torch.tensor([7]), T, {4: None})
    assert (s0.item(), e0.item()) == (3.0, 7.0)


@settings(max_examples=15, deadline=None)
@given(st.integers(6, 30), st.integers(0, 2**31 - 1))
def test_score_segments_match_reference(T, seed):
    rng = np.random.default_rng(seed)
    feats = rng.random((T, 5))
    scp = rng.random((3, T))
    n = 4
    s = rng.uniform(0, T - 2, n)
    e = np.minimum(T, s + rng.uniform(0.5, T / 2, n))
    lab = rng.integers(0, 3, n)
    got = score_segments(torch.from_numpy(feats), torch.from_numpy(scp), torch.from_numpy(lab),
                         torch.from_numpy(s), torch.from_numpy(e), inflation=0.25, alpha=0.6)
    for i in range(n):
        pad = 0.25 * (e[i] - s[i])
        _, _, L = proposal_terms_one(feats, scp[lab[i]][None], max(0, s[i] - pad), s[i], e[i],
                                     min(T, e[i] + pad), alpha=0.6)
        assert np.isclose(got[i].item(), -L[0], atol=1e-6)


def test_relative_scp_threshold_scales_with_class_maximum():
    scp = torch.tensor([[0.02, 0.05, 0.04], [0.9, 0.5, 0.1]])
    thr = scp_thresholds(scp, torch.tensor([0, 1]), 0.5, "relative")
    assert torch.allclose(thr, torch.tensor([0.025, 0.45]))
    assert scp_thresholds(scp, torch.tensor([0, 1]), 0.1, "absolute") == 0.1


def brute_subsnippet(scp: np.ndarray, thresholds) -> list[tuple[int, float, float]]:
    """Each run of each level, its boundaries where the row crosses the level on the line
    between the two snippet centres around each boundary (0 and T at the video's ends)."""
    out = set()
    for k, row in enumerate(scp):
        lo, hi = row.min(), row.max()
        T = len(row)
        for t in thresholds:
            lv = lo + t * (hi - lo)
            for (kk, i, j) in brute_runs(scp[k:k + 1], [t]):
                a, b = float(i), float(j)
                if i > 0:  # centres i - 0.5 (value row[i-1]) and i + 0.5 (value row[i])
                    a = (i - 0.5) + (lv - row[i - 1]) / (row[i] - row[i - 1])
                if j < T:
                    b = (j - 0.5) + (row[j - 1] - lv) / (row[j - 1] - row[j])
                out.add((k, round(a, 9), round(b, 9)))
    return sorted(out)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3), st.integers(1, 40), st.integers(0, 2**31 - 1))
def test_cas_candidates_subsnippet_match_brute_force(K, T, seed):
    scp = np.random.default_rng(seed).random((K, T))
    th = [0.2, 0.5, 0.8]
    rows, s, e = cas_candidates(scp, th, subsnippet=True)
    got = sorted(set(zip(rows.tolist(), np.round(s, 9).tolist(), np.round(e, 9).tolist())))
    assert got == brute_subsnippet(scp, th)
    # each boundary lies within half a snippet of the whole-snippet one, and the integer runs
    # are the same runs
    ri, si, ei = cas_candidates(scp, th)
    whole = set(zip(ri.tolist(), si.tolist(), ei.tolist()))
    for k, a, b in zip(rows, s, e):
        i, j = int(np.floor(a + 0.5)), int(np.ceil(b - 0.5))
        assert (int(k), i, j) in whole and 0 <= a < b <= T


def coverage_cas(T: int, a: float, b: float) -> np.ndarray:
    """(1, T): how much of each snippet [t, t + 1) the action [a, b) covers (snippets)."""
    t = np.arange(T, dtype=np.float64)
    return np.clip(np.minimum(t + 1, b) - np.maximum(t, a), 0.0, 1.0)[None, :]


def test_subsnippet_boundaries_find_an_action_inside_snippets():
    # a snippet responds in proportion to how much of it the action covers: the level
    # crossings then place the boundaries inside the snippets, where whole snippets are off
    # by up to half a snippet at each end
    rng = np.random.default_rng(0)
    err_sub, err_whole = [], []
    for _ in range(200):
        a = rng.uniform(5, 15)
        b = a + rng.uniform(2, 12)
        cas = coverage_cas(40, a, b)
        for sub, errs in ((True, err_sub), (False, err_whole)):
            _, s, e = cas_candidates(cas, [0.5], subsnippet=sub)
            assert len(s) == 1
            errs.append(max(abs(s[0] - a), abs(e[0] - b)))
    assert max(err_sub) <= 0.25 + 1e-9
    assert np.mean(err_sub) < 0.5 * np.mean(err_whole)


def test_subsnippet_candidates_reach_the_scoring_with_fractional_bounds():
    from types import SimpleNamespace

    from acn.config import resolve
    from acn.localize.video import score_candidates

    T, a, b = 60, 20.3, 26.6
    cas = coverage_cas(T, a, b)
    scp = np.concatenate([0.05 + 0.9 * cas, 0.05 + 0.0 * cas]).astype(np.float32)
    feats = torch.from_numpy(np.random.default_rng(1).normal(size=(T, 8)).astype(np.float32))
    out = SimpleNamespace(scp=scp, attention=np.ones(T, np.float32),
                          video_scores=np.array([0.9, 0.0], np.float32))
    best = {}
    for sub in (True, False):
        cfg = resolve(overrides=[f"acn.cas_subsnippet={str(sub).lower()}",
                                 "localize.whole_video=off", "localize.video_score_weight=0",
                                 "acn.alpha=0.8", "acn.lc_features=standardize"])
        seg, sc, lab, _ = score_candidates(cfg, feats, out, {8: None}, float("-inf"))
        assert (lab == 0).all()
        frac = (seg - seg.round()).abs() > 1e-6
        assert bool(frac.any()) == sub
        # the scores are -L of the segments as returned (no rounding on the way)
        want = score_segments(feats, torch.from_numpy(scp), lab, seg[:, 0], seg[:, 1],
                              cfg["acn"]["inflation"], cfg["acn"]["alpha"],
                              lc_features=cfg["acn"]["lc_features"])
        torch.testing.assert_close(sc, want)
        s, e = seg[:, 0].numpy(), seg[:, 1].numpy()
        best[sub] = np.max((np.minimum(e, b) - np.maximum(s, a))
                           / (np.maximum(e, b) - np.minimum(s, a)))  # tIoU with the action
    assert best[True] > 0.97 and best[True] > best[False]


@pytest.mark.parametrize("whole", ["off", "scored", "first"])
def test_alpha_blend_equals_scoring_at_each_alpha(whole):
    """choose_scoring's grid scores each candidate set at alpha 1 and 0 and blends: the
    blend must be -L at every alpha (same candidates, same order, same scores)."""
    from types import SimpleNamespace

    from acn.config import resolve
    from acn.localize.video import blend_alpha, score_candidates

    rng = np.random.default_rng(3)
    T = 50
    scp = np.concatenate([coverage_cas(T, 10.2, 17.7), coverage_cas(T, 30.5, 41.0)])
    scp = (0.05 + 0.9 * scp + 0.05 * rng.random((2, T))).astype(np.float32)
    feats = [torch.from_numpy(rng.normal(size=(T, d)).astype(np.float32)) for d in (6, 4)]
    out = SimpleNamespace(scp=scp, attention=np.ones(T, np.float32),
                          video_scores=np.array([0.8, 0.6], np.float32))
    base = ["acn.proposals=cas", f"localize.whole_video={whole}",
            "localize.video_score_weight=0.3", "acn.lc_features=standardize"]

    def scored(alpha):
        cfg = resolve(overrides=[*base, f"acn.alpha={alpha}"])
        return score_candidates(cfg, feats, out, {8: None}, float("-inf"),
                                group_weights=[0.25, 0.75])

    ends = scored(1.0), scored(0.0)
    for alpha in (0.5, 0.6, 0.75, 0.9):
        want = scored(alpha)
        got = blend_alpha(*ends, alpha)
        assert len(want[1]) > 2
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w)
