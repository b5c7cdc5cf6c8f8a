"""CAS-segment proposals: candidates, regression and scoring against direct computations."""

from __future__ import annotations

import numpy as np
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
