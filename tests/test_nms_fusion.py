"""IoU, greedy NMS, Soft-NMS and RGB/Flow fusion against brute-force references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from acn.localize import reference as ref
from acn.localize.fusion import FLOW, RGB, fuse_streams
from acn.localize.geometry import segment_iou, segment_iou_aligned
from acn.localize.nms import nms, soft_nms, topk_per_class

SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def detections(draw, max_n=25, n_labels=3, grid=True):
    """Random segments on a coarse grid (so exact ties and identical segments happen)."""
    n = draw(st.integers(0, max_n))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    start = rng.integers(0, 20, n).astype(np.float64)
    length = rng.integers(0, 8, n).astype(np.float64)  # zero-length segments included
    if not grid:
        start += rng.random(n)
        length += rng.random(n)
    seg = np.stack([start, start + length], 1)
    scores = rng.integers(-5, 6, n) / 5.0  # negative scores and ties
    labels = rng.integers(0, n_labels, n)
    return seg, scores, labels


# ---------------------------------------------------------------------------------- IoU
def test_iou_known_values_and_zero_length():
    a = torch.tensor([[0.0, 10.0], [2.0, 2.0], [5.0, 15.0]])
    b = torch.tensor([[0.0, 10.0], [5.0, 15.0], [2.0, 2.0]])
    iou = segment_iou(a, b)
    assert iou[0, 0] == 1.0
    assert iou[0, 1] == pytest.approx(5 / 15)
    assert torch.all(iou[1] == 0) and torch.all(iou[:, 2] == 0)  # zero length -> 0, not NaN
    assert torch.equal(segment_iou_aligned(a, b), torch.diagonal(iou))


def test_iou_zero_length_gradient_is_finite():
    a = torch.tensor([[3.0, 3.0], [1.0, 4.0]], requires_grad=True)
    segment_iou(a, torch.tensor([[0.0, 5.0]])).sum().backward()
    assert torch.isfinite(a.grad).all()


@SETTINGS
@given(detections(grid=False), detections(grid=False))
def test_iou_matches_reference_symmetric_bounded(d1, d2):
    a, b = d1[0], d2[0]
    m = segment_iou(torch.tensor(a), torch.tensor(b)).numpy()
    assert m.shape == (len(a), len(b))
    assert np.all((m >= 0) & (m <= 1 + 1e-12))
    np.testing.assert_allclose(m, segment_iou(torch.tensor(b), torch.tensor(a)).numpy().T)
    for i in range(len(a)):
        for j in range(len(b)):
            assert m[i, j] == pytest.approx(ref.iou_one(a[i], b[j]), abs=1e-12)
    if len(a):
        diag = torch.diagonal(segment_iou(torch.tensor(a), torch.tensor(a))).numpy()
        np.testing.assert_allclose(diag, (a[:, 1] > a[:, 0]).astype(float))


# ---------------------------------------------------------------------------------- NMS
@pytest.mark.parametrize("matrix_max", [1024, 0])  # IoU-matrix walk; row-per-kept loop
@SETTINGS
@given(det=detections(), thr=st.sampled_from([0.0, 0.3, 0.4, 0.7]))
def test_greedy_nms_matches_bruteforce(matrix_max, det, thr):
    import acn.localize.nms as nms_module

    seg, scores, labels = det
    old = nms_module._MATRIX_NMS_MAX
    nms_module._MATRIX_NMS_MAX = matrix_max
    try:
        keep = nms(seg, scores, labels, iou_threshold=thr)
        limited = nms(seg, scores, labels, iou_threshold=thr, max_dets=2)
    finally:
        nms_module._MATRIX_NMS_MAX = old
    assert limited.tolist() == keep[:2].tolist()
    assert isinstance(keep, np.ndarray) and keep.dtype == np.int64
    assert keep.tolist() == ref.greedy_nms_bruteforce(seg, scores, labels, thr)
    # no kept pair of the same class overlaps above the threshold
    for x in keep:
        for y in keep:
            if x != y and labels[x] == labels[y]:
                assert ref.iou_one(seg[x], seg[y]) <= thr
    # every suppressed detection overlaps a kept, not-lower-scored one of its class
    for j in set(range(len(scores))) - set(keep.tolist()):
        assert any(labels[q] == labels[j] and scores[q] >= scores[j]
                   and ref.iou_one(seg[q], seg[j]) > thr for q in keep)


@SETTINGS
@given(detections())
def test_nms_torch_in_torch_out_and_class_agnostic(det):
    seg, scores, labels = det
    keep_t = nms(torch.tensor(seg), torch.tensor(scores), torch.tensor(labels))
    assert isinstance(keep_t, torch.Tensor)
    assert keep_t.tolist() == nms(seg, scores, labels).tolist()
    agnostic = nms(seg, scores, None)
    assert agnostic.tolist() == ref.greedy_nms_bruteforce(seg, scores, [0] * len(scores), 0.4)


@SETTINGS
@given(detections(), st.integers(0, 4), st.integers(0, 6))
def test_nms_topk_and_max_dets(det, k, max_dets):
    seg, scores, labels = det
    full = nms(seg, scores, labels)
    assert nms(seg, scores, labels, max_dets=max_dets).tolist() == full[:max_dets].tolist()
    chosen = topk_per_class(torch.tensor(scores), torch.tensor(labels), k).numpy()
    for c in np.unique(labels):
        in_c = [j for j in chosen if labels[j] == c]
        assert len(in_c) == min(k, int((labels == c).sum()))
        # they are the top-k of the class (ties by lower index first)
        order = sorted(np.flatnonzero(labels == c), key=lambda j: (-scores[j], j))[:k]
        assert sorted(in_c) == sorted(order)
    sub = chosen
    expect = [int(sub[j]) for j in ref.greedy_nms_bruteforce(seg[sub], scores[sub],
                                                             labels[sub], 0.4)]
    got = nms(seg, scores, labels, topk=k).tolist()
    assert sorted(got) == sorted(expect)


def _soft_bruteforce(seg, scores, labels, method, sigma, thr):
    floor = min(0.0, float(np.min(scores))) if len(scores) else 0.0
    w = [s - floor for s in scores]
    alive = sorted(range(len(scores)), key=lambda j: (-scores[j], j))
    out = []
    while alive:
        p = max(alive, key=lambda j: (w[j], -alive.index(j)))
        out.append((p, w[p] + floor))
        alive.remove(p)
        for j in alive:
            if labels[j] != labels[p]:
                continue
            iou = ref.iou_one(seg[p], seg[j])
            if method == "soft_gaussian":
                w[j] *= math.exp(-iou * iou / sigma)
            elif iou > thr:
                w[j] *= 1 - iou
    return out


@SETTINGS
@given(detections(grid=False), st.sampled_from(["soft_gaussian", "soft_linear"]))
def test_soft_nms_matches_bruteforce(det, method):
    seg, scores, labels = det
    scores = scores + np.linspace(0, 1e-3, len(scores))  # avoid exact ties after decay
    idx, new = nms(seg, scores, labels, method=method, sigma=0.5, iou_threshold=0.4)
    expect = _soft_bruteforce(seg, scores, labels, method, 0.5, 0.4)
    assert idx.tolist() == [p for p, _ in expect]
    np.testing.assert_allclose(new, [s for _, s in expect], rtol=1e-9, atol=1e-12)
    assert np.all(np.diff(new) <= 1e-12)  # selection order is by decayed score
    if len(scores):
        assert np.all(new <= scores[idx] + 1e-12)  # decay never raises a score


def test_soft_nms_disjoint_keeps_scores_and_decays_overlap():
    seg = torch.tensor([[0.0, 10.0], [20.0, 30.0], [1.0, 11.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    idx, new = soft_nms(seg, scores, method="gaussian", sigma=0.5)
    assert idx.tolist() == [0, 1, 2]
    iou = 9 / 11
    assert new[:2].tolist() == pytest.approx([0.9, 0.8])
    assert new[2].item() == pytest.approx(0.7 * math.exp(-iou**2 / 0.5), rel=1e-6)
    idx, new = soft_nms(seg, scores, labels=torch.tensor([0, 0, 1]), method="linear")
    assert new[2].item() == pytest.approx(0.7)  # other class: untouched


def test_nms_empty_and_bad_input():
    assert nms(np.zeros((0, 2)), np.zeros(0)).shape == (0,)
    idx, new = nms(torch.zeros(0, 2), torch.zeros(0), method="soft_gaussian")
    assert idx.numel() == 0 and new.numel() == 0
    with pytest.raises(ValueError):
        nms(np.zeros((3, 2)), np.zeros(2))
    with pytest.raises(ValueError):
        nms(np.zeros((1, 2)), np.zeros(1), method="bogus")


# ---------------------------------------------------------------------------------- fusion
@SETTINGS
@given(detections(grid=False), detections(grid=False), st.booleans())
def test_fusion_matches_bruteforce(flow, rgb, as_numpy):
    conv = (lambda x: x) if as_numpy else torch.tensor
    fused = fuse_streams(*(conv(x) for x in flow), *(conv(x) for x in rgb))
    expect = ref.fusion_bruteforce(list(zip(*flow)), list(zip(*rgb)))
    assert len(fused) == len(expect)
    seg = np.asarray(fused.segments)
    sc, lab, stream = (np.asarray(x) for x in (fused.scores, fused.labels, fused.stream))
    nf = len(flow[1])
    # every Flow proposal kept, unchanged, first
    assert np.all(stream[:nf] == FLOW) and np.all(stream[nf:] == RGB)
    np.testing.assert_array_equal(seg[:nf], flow[0].reshape(-1, 2))
    np.testing.assert_array_equal(sc[:nf], flow[1])
    for row, (eseg, esc, elab, estream) in enumerate(expect):
        np.testing.assert_allclose(seg[row], eseg)
        assert sc[row] == pytest.approx(esc) and lab[row] == elab
    # RGB scores halved
    src = np.asarray(fused.source)[nf:]
    np.testing.assert_allclose(sc[nf:], rgb[1][src] / 2)
    assert isinstance(fused.scores, np.ndarray) == as_numpy


def test_fusion_class_aware_and_threshold():
    flow = (torch.tensor([[0.0, 10.0]]), torch.tensor([1.0]), torch.tensor([0]))
    rgb = (torch.tensor([[0.0, 10.0], [0.0, 10.0], [0.0, 5.0]]), torch.tensor([0.8, 0.6, 0.4]),
           torch.tensor([0, 1, 0]))
    fused = fuse_streams(*flow, *rgb)
    # same-class identical RGB dropped; other-class kept; IoU 0.5 >= 0.4 dropped
    assert fused.source.tolist() == [0, 1]
    assert fused.scores.tolist() == pytest.approx([1.0, 0.3])
    fused = fuse_streams(*flow, *rgb, class_aware=False, iou_threshold=0.6, rgb_factor=1.0)
    assert fused.source.tolist() == [0, 2] and fused.scores.tolist() == pytest.approx([1.0, 0.4])
