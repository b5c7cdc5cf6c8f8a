"""The vectorised coherence loss (L_OIC, Lc, L) against the per-proposal reference, and its
gradients against finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from acn.localize import reference as ref
from acn.model.coherence import (
    CoherenceTerms,
    PrefixIntegral,
    coherence_term,
    feature_integral,
    objective_from_terms,
    oic_loss,
    proposal_terms,
)

SETTINGS = settings(max_examples=30, deadline=None)


def _random_bounds(rng, T, n, snap_prob=0.3):
    """n sorted quadruples Xs <= xs <= xe <= Xe in [0, T]; some snapped to integers, to the
    video edges, or collapsed (zero-length areas)."""
    q = np.sort(rng.uniform(0, T, (n, 4)), axis=1)
    snap = rng.random((n, 4)) < snap_prob
    q[snap] = np.round(q[snap])
    edge = rng.random(n) < 0.2
    q[edge, 0] = 0.0
    q[edge, 1] = np.where(rng.random(edge.sum()) < 0.5, 0.0, q[edge, 1])
    collapse = rng.random(n) < 0.15
    q[collapse, 2] = q[collapse, 1]
    q = np.sort(q, axis=1)
    return [torch.tensor(q[:, i]) for i in range(4)]


def gram_lc_tolerance(feats: np.ndarray, Xs: float, xs: float, xe: float, Xe: float) -> float:
    """How far the gram method's Lc may sit from the reference for one proposal: it reads each
    dot product of region means off differences of prefix-sum Gram entries, so its absolute
    error is about eps * (largest prefix row)^2 / (the regions' lengths), and a cosine divides
    that by the means' norms. A region whose mean is near the zero vector is ill-conditioned
    (hypothesis found a cosine 4e-9 off, where 1e-9 was asked); 4x this bound left a 8-fold
    margin over 180000 random proposals."""
    f = np.asarray(feats, dtype=np.float64)
    big = float((np.cumsum(f, 0) ** 2).sum(1).max())
    q = [1.0 / (max(b - a, 1e-6) * max(float(np.linalg.norm(ref.interval_mean(f, a, b, 1e-6))),
                                         1e-300))
         for a, b in ((Xs, xs), (xs, xe), (xe, Xe))]
    return 1e-9 + 4 * np.finfo(np.float64).eps * big * (q[0] * q[1] + q[2] * q[1]
                                                        + q[0] ** 2 + q[1] ** 2 + q[2] ** 2)


@pytest.mark.parametrize("lc_method", ["gram", "direct"])
@SETTINGS
@given(st.integers(1, 40), st.integers(1, 6), st.integers(1, 4), st.integers(0, 2**31 - 1),
       st.floats(-3, 3))
def test_terms_match_reference(lc_method, T, D, K, seed, shift):
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(T, D)) + shift  # non-zero means exercise the centring offset
    scp = rng.random((K, T))
    bounds = _random_bounds(rng, T, 12)
    terms = proposal_terms(torch.tensor(feats), torch.tensor(scp), *bounds, alpha=0.6,
                           lc_method=lc_method)
    assert terms.L_oic.shape == (12, K) and terms.Lc.shape == (12,) and terms.L.shape == (12, K)
    for j in range(12):
        b = [float(x[j]) for x in bounds]
        l_oic, lc, L = ref.proposal_terms_one(feats, scp, *b)
        tol = gram_lc_tolerance(feats, *b) if lc_method == "gram" else 1e-9
        np.testing.assert_allclose(terms.L_oic[j].numpy(), l_oic, atol=1e-9)
        assert terms.Lc[j].item() == pytest.approx(lc, abs=tol)
        np.testing.assert_allclose(terms.L[j].numpy(), L, atol=1e-9 + (1 - 0.6) * tol)


def test_eq4_combination_and_score_terms():
    rng = np.random.default_rng(0)
    bounds = _random_bounds(rng, 20, 7)
    terms = proposal_terms(torch.tensor(rng.random((20, 3))), torch.tensor(rng.random((2, 20))),
                           *bounds, alpha=0.3)
    expect = 0.3 * terms.L_oic + 0.7 * (terms.Lc[:, None] - 1)
    torch.testing.assert_close(terms.L, expect)
    assert torch.equal(objective_from_terms(terms, "both"), terms.L)
    assert torch.equal(objective_from_terms(terms, "oic"), terms.L_oic)
    assert torch.equal(objective_from_terms(terms, "coherence"),
                       terms.Lc[:, None].expand(7, 2))
    with pytest.raises(ValueError):
        objective_from_terms(terms, "nope")


def test_oic_by_hand():
    # S = 1 on snippets 4..5, 0 elsewhere; proposal [4, 6] inflated to [3, 7]: inner mean 1,
    # outer mean 0 -> L_OIC = -1. Shifted by 0.5: [4.5, 6.5] in [3.5, 7.5]: inner mean 0.75,
    # outer: [3.5, 4.5] has 0.5, [6.5, 7.5] has 0 -> 0.5 / 2 = 0.25 -> L_OIC = -0.5.
    s = torch.zeros(1, 10, dtype=torch.float64)
    s[0, 4:6] = 1
    t = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    out = oic_loss(s, t(3.0, 3.5), t(4.0, 4.5), t(6.0, 6.5), t(7.0, 7.5))
    torch.testing.assert_close(out[:, 0], t(-1.0, -0.5))


@pytest.mark.parametrize("lc_method", ["gram", "direct"])
def test_degenerate_areas_use_limits_without_nan(lc_method):
    T = 6
    f = torch.arange(T * 2, dtype=torch.float64).reshape(T, 2) + 1
    s = torch.rand(2, T, dtype=torch.float64)
    # proposal at the left edge with the start area clamped away, and one at the right edge
    xs = torch.tensor([0.0, 3.0], requires_grad=True)
    xe = torch.tensor([2.5, 6.0], requires_grad=True)
    Xs = torch.tensor([0.0, 2.0])
    Xe = torch.tensor([3.0, 6.0])
    terms = proposal_terms(f, s, Xs, xs, xe, Xe, lc_method=lc_method)
    (terms.L.sum() + terms.Lc.sum()).backward()
    assert torch.isfinite(xs.grad).all() and torch.isfinite(xe.grad).all()
    # start area [0, 0] -> limit: features of snippet 0; end area [6, 6] -> snippet 5
    ra0 = (f[0] + f[1] + 0.5 * f[2]) / 2.5
    expect0 = (torch.cosine_similarity(f[0], ra0, 0) +
               torch.cosine_similarity((0.5 * f[2]) / 0.5, ra0, 0)) / 2
    assert terms.Lc[0].item() == pytest.approx(expect0.item())
    # whole outer area empty -> outer mean 0
    out = oic_loss(s, torch.tensor([1.0]), torch.tensor([1.0]), torch.tensor([4.0]),
                   torch.tensor([4.0]))
    torch.testing.assert_close(out[0], -s[:, 1:4].mean(1))


@pytest.mark.parametrize("lc_method", ["gram", "direct"])
def test_whole_video_on_standardised_features_keeps_lc_a_cosine(lc_method):
    # standardised features average to the zero vector over the whole video: its action-area
    # mean is rounding noise, and an unclamped cosine of noise was seen at -100 (a score of
    # -42 that wrecked Soft-NMS); every cosine must stay within [-1, 1]
    g = torch.Generator().manual_seed(1)
    T = 58
    f = torch.relu(torch.randn(T, 256, generator=g) - 1.0) * 5  # sparse, like pooled CNN features
    s = torch.rand(3, T, generator=g)
    ends = torch.tensor([float(T)] * 3 + [30.0])
    starts = torch.tensor([0.0, 0.0, 0.0, 10.0])
    for std in ("standardize", "raw"):
        terms = proposal_terms(f, s, starts, starts, ends, ends, lc_features=std,
                               lc_method=lc_method)
        assert torch.isfinite(terms.Lc).all()
        assert (terms.Lc.abs() <= 1).all(), terms.Lc


def test_prefix_integral_values_and_derivative():
    f = torch.tensor([[1.0], [3.0], [-2.0]], dtype=torch.float64)
    pi = PrefixIntegral(f)
    m = pi.mean(torch.tensor([0.0, 0.5, 1.25, 0.0]), torch.tensor([3.0, 1.5, 1.25, 1.0]))
    torch.testing.assert_close(m[:, 0], torch.tensor([2 / 3, 2.0, 3.0, 1.0],
                                                     dtype=torch.float64))
    x = torch.tensor([1.3, 2.7], dtype=torch.float64, requires_grad=True)
    pi.centered_at(x).sum().backward()
    # d/dx Cum(x) = f(x) (centred by the mean 2/3)
    torch.testing.assert_close(x.grad, torch.tensor([3.0, -2.0], dtype=torch.float64) - 2 / 3)


def _nonint_bounds(rng, T, n):
    """Boundaries away from integers and from each other, so finite differences are smooth."""
    base = np.sort(rng.uniform(0, T, (n, 4)), axis=1)
    # quarter grid + 1/8 keeps every boundary >= 0.12 from an integer; the small per-column
    # offsets keep the four boundaries distinct (and sorted) inside (0, T)
    base = np.floor(base * 4) / 4 + 0.125 + np.arange(4) * 1e-3
    return [torch.tensor(base[:, i], requires_grad=True) for i in range(4)]


@pytest.mark.parametrize("lc_method", ["gram", "direct"])
@pytest.mark.parametrize("lc_features", ["raw", "standardize"])
def test_gradcheck_boundaries(lc_features, lc_method):
    rng = np.random.default_rng(1)
    T, D, K = 12, 4, 2
    f = torch.tensor(rng.normal(size=(T, D)) + 1.0)
    s = torch.tensor(rng.random((K, T)))
    bounds = _nonint_bounds(rng, T, 5)

    def fn(a, b, c, d):
        terms = proposal_terms(f, s, a, b, c, d, lc_features=lc_features, lc_method=lc_method)
        return terms.L_oic, terms.Lc, terms.L

    assert torch.autograd.gradcheck(fn, tuple(bounds), eps=1e-6, atol=1e-5)


def test_standardize_equals_raw_on_zscored_features():
    rng = np.random.default_rng(2)
    f = torch.tensor(rng.random((15, 3)) * 5)
    z = (f - f.mean(0)) / (f.std(0, unbiased=False) + 1e-6)
    b = _random_bounds(rng, 15, 9)
    lc_std = coherence_term(f, *b, lc_features="standardize")
    torch.testing.assert_close(lc_std, coherence_term(z, *b, lc_features="raw"))
    # raw cosines of non-negative features are all close to 1; standardised ones are not
    assert coherence_term(f, *b).min() > 0.5
    assert lc_std.min() < 0.5


def test_methods_and_chunking_agree():
    rng = np.random.default_rng(3)
    f = torch.tensor(rng.normal(size=(300, 5)) + 2)
    b = _random_bounds(rng, 300, 50)
    direct = coherence_term(f, *b, chunk_size=7, method="direct")
    torch.testing.assert_close(direct, coherence_term(f, *b, chunk_size=4096, method="direct"))
    torch.testing.assert_close(direct, coherence_term(f, *b, method="gram", gram_block=16))
    torch.testing.assert_close(direct, coherence_term(f, *b, method="gram", gram_block=1000))
    pi = feature_integral(f)
    torch.testing.assert_close(coherence_term(pi, *b), coherence_term(f, *b))


def test_float32_long_video_precision():
    # T ~ 11k snippets of non-negative features: float64 prefix sums keep float32 results close
    g = torch.Generator().manual_seed(0)
    T = 11000
    f = torch.rand(T, 8, generator=g) * 10
    s = torch.rand(3, T, generator=g)
    a = torch.tensor([10900.3, 5000.0, 0.0])
    b = a + torch.tensor([0.25, 0.25, 0.0])
    c = b + torch.tensor([1.5, 3.0, 2.0])
    d = c + 0.25
    t64 = proposal_terms(f.double(), s.double(), a.double(), b.double(), c.double(), d.double(),
                         lc_method="direct")
    for method in ("gram", "direct"):
        t32 = proposal_terms(f, s, a, b, c, d, lc_method=method)
        assert t32.L.dtype == torch.float32
        torch.testing.assert_close(t32.L.double(), t64.L, atol=1e-5, rtol=1e-5)
    # the reference, on the one far-out proposal
    l_oic, lc, L = ref.proposal_terms_one(f.double().numpy(), s.double().numpy(),
                                          *(float(x[0]) for x in (a, b, c, d)))
    np.testing.assert_allclose(t64.L[0].numpy(), L, atol=1e-9)
    assert isinstance(t32, CoherenceTerms)


def test_auto_never_builds_a_band_above_the_memory_cap(monkeypatch):
    # many proposals favour the Gram band; a span that makes it too big must fall back to the
    # direct method (same values), and a band already built is reused whatever its size
    import acn.model.coherence as co

    g = torch.Generator().manual_seed(3)
    T, D, N = 300, 16, 2000
    f = torch.rand(T, D, generator=g, dtype=torch.float64)
    xs = torch.rand(N, generator=g, dtype=torch.float64) * (T - 40)
    xe = xs + 1 + torch.rand(N, generator=g, dtype=torch.float64) * 30
    Xs, Xe = (xs - 5).clamp(0, T), (xe + 5).clamp(0, T)
    xe[0], Xs[0], Xe[0] = T - 1.0, 0.0, float(T)  # one proposal spans the video
    xs[0] = 1.0
    pts = co._Points(T, Xs, xs, xe, Xe)
    span = pts.pair_span()
    assert co._choose_method(co.PrefixIntegral(f), pts, 64) == "gram"  # the cost model's pick
    monkeypatch.setattr(co, "GRAM_BAND_MAX_BYTES", 6 * 8 * (T + 1) * (span + 2) - 1)
    pi = co.PrefixIntegral(f)
    assert co._choose_method(pi, pts, 64) == "direct"
    auto = co.coherence_term(pi, Xs, xs, xe, Xe)
    assert not pi.has_band(1)  # nothing was built
    gram = co.coherence_term(co.PrefixIntegral(f), Xs, xs, xe, Xe, method="gram")
    torch.testing.assert_close(auto, gram, rtol=1e-9, atol=1e-10)
    pi.band_gram(span)
    assert co._choose_method(pi, pts, 64) == "gram"


@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 40), s=st.integers(1, 8), r=st.integers(1, 12), k=st.integers(1, 5),
       seed=st.integers(0, 10_000))
def test_weighted_rows_sparse_path_equals_a_direct_sum(n, s, r, k, seed):
    # the no-gradient path multiplies by a CSR matrix whose rows may repeat a column (a
    # proposal's points often share table rows): repeated entries must add up
    import acn.model.coherence as co

    g = torch.Generator().manual_seed(seed)
    rows = torch.randint(0, r, (n, s), generator=g).sort(1).values
    w = torch.randn(n, s, generator=g, dtype=torch.float64)
    table = torch.randn(r, k, generator=g, dtype=torch.float64)
    expect = torch.zeros(n, k, dtype=torch.float64)
    for i in range(n):
        for j in range(s):
            expect[i] += w[i, j] * table[rows[i, j]]
    torch.testing.assert_close(co._weighted_rows(rows, w, table), expect)
    wg = w.clone().requires_grad_(True)  # the differentiable path gives the same values
    out = co._weighted_rows(rows, wg, table)
    torch.testing.assert_close(out.detach(), expect)
    if n:
        out.sum().backward()
        torch.testing.assert_close(wg.grad, table[rows].sum(-1))


@pytest.mark.parametrize("lc_method", ["gram", "direct"])
def test_training_after_inference_mode_scoring(lc_method):
    # localize scores under torch.inference_mode; a later training step in the same process
    # (e.g. `acn ablate`, the benchmarks) must not meet an inference tensor cached by it
    g = torch.Generator().manual_seed(5)
    T, N = 60, 30
    f = torch.rand(T, 8, generator=g, dtype=torch.float64)
    scp = torch.rand(3, T, generator=g, dtype=torch.float64)
    xs = torch.rand(N, generator=g, dtype=torch.float64) * (T - 12) + 2
    xe = xs + 1 + torch.rand(N, generator=g, dtype=torch.float64) * 8
    Xs, Xe = (xs - 2).clamp(0, T), (xe + 2).clamp(0, T)
    with torch.inference_mode():
        first = proposal_terms(f, scp, Xs, xs, xe, Xe, lc_method=lc_method)
    b = [t.clone().requires_grad_(True) for t in (Xs, xs, xe, Xe)]
    terms = proposal_terms(f, scp, *b, lc_method=lc_method)
    terms.L.sum().backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in b)
    torch.testing.assert_close(terms.L.detach(), first.L)
