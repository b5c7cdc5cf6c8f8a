"""Anchors, Eqs. 5-6 decoding, containment filtering, one-per-position and score_video."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from acn.localize import reference as ref
from acn.localize.proposals import (
    build_proposals,
    contained_range,
    count_in_range,
    decode_anchor,
    one_per_position,
    score_video,
    select_classes,
)
from acn.model.coherence import proposal_terms

SETTINGS = settings(max_examples=30, deadline=None)
F64 = torch.float64


# ---------------------------------------------------------------------------------- decoding
def test_decode_by_hand():
    T, P = 6, 2
    r = torch.zeros(2, T, dtype=F64)
    r[0, 1] = math.inf  # start of anchor i=1 moves by +P/2
    # r_e[5] moves the ends of anchor i=3 (xe=5) and of i=4 (xe=6, index clamped to T-1=5)
    r[1, 5] = -math.inf
    r[1, 2] = math.log(3)  # anchor i=0 end: sigmoid = 0.75 -> +0.5
    p = decode_anchor(T, P, r)
    assert p.position.tolist() == [0, 1, 2, 3, 4] and p.anchor.tolist() == [2] * 5
    assert p.start.tolist() == pytest.approx([0, 2, 2, 3, 4])
    assert p.end.tolist() == pytest.approx([2.5, 3, 4, 4, 5])
    assert p.outer_start.tolist() == pytest.approx([0, 1.5, 1.5, 2.5, 3.5])  # clamped at 0
    assert p.outer_end.tolist() == pytest.approx([3, 3.5, 4.5, 4.5, 5.5])


def test_decode_clamps_and_no_regression():
    T, P = 4, 4
    r = torch.full((2, T), -10.0, dtype=F64)
    p = decode_anchor(T, P, r)
    assert p.start.item() == 0.0  # 0 - ~2 clamped
    assert p.end.item() == pytest.approx(4 - 4 * (0.5 - 1 / (1 + math.exp(10))))
    q = decode_anchor(10, 3, None)
    assert q.start.tolist() == list(range(8)) and q.end.tolist() == list(range(3, 11))
    assert q.outer_end[-1].item() == 10.0  # 10 + 0.75 clamped
    assert len(decode_anchor(3, 4, None)) == 0  # T < P: no proposals
    with pytest.raises(ValueError):
        decode_anchor(10, 2, torch.zeros(2, 9))


def test_build_proposals_matches_reference_decode():
    rng = np.random.default_rng(0)
    T = 25
    regs = {P: torch.tensor(rng.normal(size=(2, T)) * 2) for P in (8, 1, 4)}
    regs[2] = None
    p = build_proposals(T, regs)
    assert p.anchor.unique_consecutive().tolist() == [1, 2, 4, 8]
    for j in range(len(p)):
        P, i = int(p.anchor[j]), int(p.position[j])
        r = regs[P].numpy() if regs[P] is not None else None
        expect = ref.decode_one(T, P, i, r)
        got = [float(x[j]) for x in (p.outer_start, p.start, p.end, p.outer_end)]
        assert got == pytest.approx(expect, abs=1e-12)


def test_regression_gradients_match_finite_differences():
    rng = np.random.default_rng(1)
    T, D, K = 14, 3, 2
    f = torch.tensor(rng.normal(size=(T, D)) + 0.5)
    s = torch.tensor(rng.random((K, T)))

    def loss(r4, r2):
        p = build_proposals(T, {4: r4, 2: r2})
        t = proposal_terms(f, s, p.outer_start, p.start, p.end, p.outer_end)
        return t.L

    r4 = torch.tensor(rng.normal(size=(2, T)) * 0.3, requires_grad=True)
    r2 = torch.tensor(rng.normal(size=(2, T)) * 0.3, requires_grad=True)
    assert torch.autograd.gradcheck(loss, (r4, r2), eps=1e-6, atol=1e-5)


# ---------------------------------------------------------------------------------- filtering
@st.composite
def segments_and_masks(draw):
    T = draw(st.integers(1, 30))
    n = draw(st.integers(0, 30))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    a = rng.uniform(-1, T + 1, n)
    b = a + rng.uniform(0, 6, n)
    snap = rng.random((n, 2)) < 0.4  # boundaries exactly on snippet centres / edges
    a = np.where(snap[:, 0], np.round(a * 2) / 2, a)
    b = np.where(snap[:, 1], np.round(b * 2) / 2, b)
    return T, np.clip(np.stack([a, b], 1), 0, T), rng


@SETTINGS
@given(segments_and_masks())
def test_containment_counts_match_bruteforce(data):
    T, seg, rng = data
    mask = rng.random((T, 3)) < 0.3
    first, last = contained_range(torch.tensor(seg[:, 0]), torch.tensor(seg[:, 1]), T)
    counts = count_in_range(torch.tensor(mask), first, last).numpy()
    for j, (a, b) in enumerate(seg):
        inside = [i for i in range(T) if ref.contains(a, b, i)]
        assert list(range(first[j], last[j])) == inside
        np.testing.assert_array_equal(counts[j], mask[inside].sum(0))


@SETTINGS
@given(segments_and_masks(), st.booleans())
def test_one_per_position_matches_bruteforce(data, coarse_scores):
    T, seg, rng = data
    n, k = len(seg), 2
    scores = rng.integers(0, 4, (n, k)) / 4 if coarse_scores else rng.normal(size=(n, k))
    valid = rng.random((n, k)) < 0.8
    first, last = contained_range(torch.tensor(seg[:, 0]), torch.tensor(seg[:, 1]), T)
    keep = one_per_position(first, last, torch.tensor(scores), torch.tensor(valid), T).numpy()
    np.testing.assert_array_equal(keep, ref.one_per_position_bruteforce(seg, scores, valid, T))


def test_select_classes():
    assert select_classes(torch.tensor([0.05, 0.1, 0.11, 0.9])).tolist() == [2, 3]
    assert select_classes(torch.tensor([0.5, 0.2]), threshold=0.3).tolist() == [0]


# ---------------------------------------------------------------------------------- score_video
def _video(seed, T=30, D=4, C=3):
    rng = np.random.default_rng(seed)
    f = torch.tensor(rng.normal(size=(T, D)))
    scp = torch.tensor(rng.random((C, T)) * 0.6 + 0.05)
    regs = {P: torch.tensor(rng.normal(size=(2, T))) for P in (1, 2, 4, 8)}
    return f, scp, regs, rng


@pytest.mark.parametrize("mode", ["none", "drop", "zero_scp"])
def test_score_video_rows_match_bruteforce(mode):
    f, scp, regs, rng = _video(2)
    T = f.shape[0]
    att = torch.tensor(rng.random(T))
    classes = torch.tensor([2, 0])
    out = score_video(f, scp, regs, classes, attention=att, attention_threshold=0.15,
                      attention_mode=mode, scp_threshold=0.1)
    s = scp.clone()
    low = att.numpy() < 0.15
    if mode == "zero_scp":
        s[:, torch.tensor(low)] = 0
    expect = []
    p = build_proposals(T, regs)
    for j in range(len(p)):
        a, b = float(p.start[j]), float(p.end[j])
        for c in classes.tolist():
            if ref.filter_one(a, b, s[c].numpy(), 0.1, low if mode == "drop" else None):
                l_oic, lc, L = ref.proposal_terms_one(f.numpy(), s[[c]].numpy(),
                                                      *ref.decode_one(T, int(p.anchor[j]),
                                                                      int(p.position[j]),
                                                                      regs[int(p.anchor[j])]
                                                                      .numpy()))
                expect.append((a, b, c, -L[0], lc))
    assert len(out) == len(expect) > 0
    got = list(zip(out.segments[:, 0].tolist(), out.segments[:, 1].tolist(),
                   out.labels.tolist(), out.scores.tolist(), out.Lc.tolist()))
    for g, e in zip(got, expect):
        assert g[2] == e[2]
        assert g[:2] + g[3:] == pytest.approx(e[:2] + e[3:], abs=1e-9)
    assert out.n_proposals == len(p)
    torch.testing.assert_close(out.scores, -out.L)


def test_score_video_training_objective_and_selection():
    f, scp, regs, _ = _video(3)
    regs = {P: r.clone().requires_grad_(True) for P, r in regs.items()}
    out = score_video(f, scp, regs, torch.tensor([0, 1, 2]), training=True)
    assert out.kept is not None and out.n_kept == int(out.kept.sum()) > 0
    torch.testing.assert_close(out.loss, out.L[out.kept].mean())
    out.loss.backward()
    assert all(torch.isfinite(r.grad).all() and r.grad.abs().sum() > 0 for r in regs.values())
    # kept rows agree with the brute-force one-per-position over the same survivors
    for c in range(3):
        rows = out.labels == c
        seg, sc = out.segments[rows].detach().numpy(), out.scores[rows].detach().numpy()
        keep = ref.one_per_position_bruteforce(seg, sc[:, None], np.ones((len(sc), 1), bool),
                                               f.shape[0])
        np.testing.assert_array_equal(out.kept[rows].numpy(), keep[:, 0])
    # the ablations score by their own term
    oic = score_video(f, scp, regs, torch.tensor([0]), score_terms="oic")
    torch.testing.assert_close(oic.scores, -oic.L_oic)
    coh = score_video(f, scp, regs, torch.tensor([0]), score_terms="coherence")
    torch.testing.assert_close(coh.scores, -coh.Lc)
    test_opp = score_video(f, scp, regs, torch.tensor([0, 1, 2]), one_per_position_at_test=True)
    assert len(test_opp) == out.n_kept


def test_score_video_empty_cases():
    f, scp, regs, _ = _video(4, T=6)
    short = score_video(f, scp, {8: None}, torch.tensor([0]))
    assert short.empty and short.n_proposals == 0 and short.loss is None
    low = score_video(f, scp * 0, regs, torch.tensor([0, 1]), training=True)
    assert low.empty and low.loss is None and low.n_proposals > 0
    none = score_video(f, scp, regs, torch.tensor([], dtype=torch.long))
    assert none.empty
    assert short.segments.shape == (0, 2)


def test_score_video_with_nothing_filtered_returns_every_pair_in_order():
    # every proposal survives (plain anchors each contain a snippet centre, no SCP
    # threshold): the no-subset path, rows ordered by proposal then class, with the terms of
    # proposal_terms on all proposals
    from acn.model.coherence import proposal_terms

    f, scp, regs, _ = _video(4)
    T = f.shape[0]
    anchors = {P: None for P in regs}
    classes = torch.tensor([1, 0])
    out = score_video(f, scp, anchors, classes, scp_threshold=0.0)
    p = build_proposals(T, anchors, dtype=f.dtype)
    terms = proposal_terms(f, scp[classes], p.outer_start, p.start, p.end, p.outer_end)
    assert len(out) == 2 * len(p) == 2 * out.n_proposals
    torch.testing.assert_close(out.labels, classes.repeat(len(p)))
    torch.testing.assert_close(out.segments[:, 0], p.start.repeat_interleave(2))
    torch.testing.assert_close(out.L, terms.L.reshape(-1))
    torch.testing.assert_close(out.L_oic, terms.L_oic.reshape(-1))
    torch.testing.assert_close(out.Lc, terms.Lc.repeat_interleave(2))
    torch.testing.assert_close(out.scores, -out.L)
