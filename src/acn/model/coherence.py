"""Differentiable coherence loss of ACN (Eqs. 1-4), evaluated for many proposals at once.

Continuous time in snippet units: snippet ``i`` occupies ``[i, i+1)`` and every per-snippet
signal (features F (T, D), SCP S (C, T)) is piecewise constant. Its cumulative integral
``Cum(x) = int_0^x f`` is the prefix sum at integers, linearly interpolated in between, so
``int_a^b f = Cum(b) - Cum(a)`` is exact and differentiable in ``a`` and ``b`` (d/dx = f at x).

The paper's ``+1`` denominators are the discrete inclusive snippet count; in continuous time the
denominator of a mean is the interval length. When a length is below ``eps`` (e.g. an outer area
clamped away at a video edge) the mean is replaced by its limit, the signal's value at that
point: snippet ``clamp(floor(a), 0, T-1)`` for an interval [a, b] (at a = b = T the last
snippet), with a safe denominator so no NaN reaches the gradients (the limit has no gradient).
One exception, as decided for L_OIC: when the *whole* outer area of a proposal is shorter than
``eps`` its outer mean is taken as 0.

Precision: prefix sums are float64 and taken over mean-centred signals (the mean is added back
to every interval mean), so long videos (T ~ 1e4) lose nothing on short (P/4 = 0.25) areas.

Speed: each region mean is a combination of 4 rows of the prefix-sum table, so every dot
product Lc needs is ``w_x^T G w_y`` with G the Gram matrix of table rows, of which only a
narrow band is ever read; see ``coherence_term``.

Layout: the equations come first (Eq. 1 :func:`oic_loss`, Eqs. 2-3 :func:`coherence_term`,
Eq. 4 :func:`combine_loss`, all of them at once :func:`proposal_terms`); the prefix-sum
integral is :mod:`acn.model.prefix_integral`, and the speed paths that evaluate the region
means and their dot products (Gram band, point table, chunked direct) are
:mod:`acn.model.coherence_fast`; the cost model that picks one of them closes this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from acn.model.coherence_fast import (
    _dots_direct,
    _dots_gram_any,
    _Points,
    _weighted_rows,
)
from acn.model.prefix_integral import PrefixIntegral

__all__ = [
    "PrefixIntegral",
    "feature_integral",
    "CoherenceTerms",
    "proposal_terms",
    "oic_loss",
    "coherence_term",
    "combine_loss",
    "objective_from_terms",
]

LcFeatures = Literal["raw", "standardize", "embedding"]
ScoreTerms = Literal["both", "oic", "coherence"]
LcMethod = Literal["auto", "gram", "direct"]


# -- the equations -------------------------------------------------------------------------
@dataclass
class CoherenceTerms:
    """Per-proposal loss terms. ``L_oic`` and ``L`` are (N, K) (K evaluated classes); ``Lc`` is
    (N,) because the coherence term does not depend on the class."""

    L_oic: torch.Tensor
    Lc: torch.Tensor
    L: torch.Tensor | None


def oic_loss(scp: PrefixIntegral | torch.Tensor, outer_start: torch.Tensor, start: torch.Tensor,
             end: torch.Tensor, outer_end: torch.Tensor, eps: float = 1e-6,
             points: _Points | None = None) -> torch.Tensor:
    """Outer-Inner-Contrastive loss (Eq. 1) of N proposals for K classes.

    Args:
        scp: (K, T) snippet class probabilities of the classes to evaluate, or a
            ``PrefixIntegral`` built from its transpose (T, K).
        outer_start, start, end, outer_end: (N,) boundaries in snippets with
            ``0 <= outer_start <= start <= end <= outer_end <= T``.
    Returns:
        (N, K) float64: mean of S over the outer area [Xs, xs] U [xe, Xe] minus mean over
        [xs, xe]. The outer mean is 0 when the outer area is shorter than ``eps``.
    """
    pi = scp if isinstance(scp, PrefixIntegral) else PrefixIntegral(scp.t())
    pts = points or _Points(pi.T, outer_start, start, end, outer_end)
    w, c = pts.oic_weights(eps)
    return _weighted_rows(pts.rows, w, pi.cum) + c[:, None] * pi.offset


def coherence_term(features: PrefixIntegral | torch.Tensor, outer_start: torch.Tensor,
                   start: torch.Tensor, end: torch.Tensor, outer_end: torch.Tensor,
                   eps: float = 1e-6, cos_eps: float = 1e-8, chunk_size: int = 1024,
                   lc_features: LcFeatures = "raw", method: LcMethod = "auto",
                   gram_block: int = 64, out_dtype: torch.dtype | None = None,
                   points: _Points | None = None) -> torch.Tensor:
    """Coherence term Lc (Eqs. 2-3) of N proposals: (N,).

    ``Lc = (cos(Rs, Ra) + cos(Re, Ra)) / 2`` with Rs, Ra, Re the mean features over the start
    area [Xs, xs], the action area [xs, xe] and the end area [xe, Xe].

    Each region mean is a combination of 4 rows of the prefix-sum table, so every dot product
    Lc needs is ``w_x^T G w_y`` with G the Gram matrix of the table rows, of which only a band
    (|p - q| <= the widest proposal span, ~2.5 P_max) is read. ``method="gram"`` computes that
    band with one float64 GEMM per block of rows (O(T * span * D) once per video and stream,
    then O(1) per proposal, and a nearly free backward pass); ``"direct"`` forms the
    (chunk, D) region means (O(N * D)), cheaper when few proposals are scored; ``"auto"``
    picks by a cost estimate. Both work in float64. The gram method reads each dot product
    off differences of prefix-sum Gram entries, so where a region's mean is near the zero
    vector its cosine loses digits (up to ~1e-6 over 180000 random proposals in the tests);
    the direct method forms the means first and loses fewer.

    Args:
        features: (T, D) snippet features or a ``PrefixIntegral`` over them (then
            ``lc_features`` is ignored: the caller built it; its Gram band is cached on it).
        outer_start <= start <= end <= outer_end: (N,) boundaries in snippets within [0, T].
        lc_features: ``"raw"`` (the paper), ``"standardize"`` (per-video z-score of each
            feature dimension first; cosines of non-negative features are all close to 1) or
            ``"embedding"`` (``features`` are the base model's embedding: as ``"raw"``).
        cos_eps: the cosine's denominator is at least this.
        chunk_size: proposals per chunk of the direct method (bounds its (chunk, D) temporaries).
        gram_block: rows per GEMM block of the gram method.
        out_dtype: dtype of the result (default: the features' dtype, or float64 for a
            ``PrefixIntegral``).
    """
    if isinstance(features, PrefixIntegral):
        pi = features
        out_dtype = out_dtype or torch.float64
    else:
        out_dtype = out_dtype or (features.dtype if features.is_floating_point()
                                  else torch.get_default_dtype())
        pi = feature_integral(features, lc_features)
    pts = points or _Points(pi.T, outer_start, start, end, outer_end)
    if pts.n == 0:
        return torch.zeros(0, dtype=out_dtype, device=start.device)
    dots = _region_dots(pi, pts, eps, method, gram_block, chunk_size)
    # columns (ss, aa, ee, sa, ea): cos_s = sa / |s||a|, cos_e = ea / |e||a|; the norms'
    # product is clamped before the sqrt: finite value and gradient for zero vectors
    norms = torch.sqrt((dots[:, 0:3:2] * dots[:, 1:2]).clamp_min(cos_eps * cos_eps))
    # A region mean that is ~0 (e.g. the whole video on standardised features, whose mean is
    # 0 by construction) leaves only rounding noise in the prefix-sum dots, and noise over
    # noise can leave [-1, 1] by any amount (a -L of -42 was seen): keep the cosines cosines.
    cos = (dots[:, 3:5] / norms).clamp(-1.0, 1.0)
    return cos.mean(1).to(out_dtype)


def combine_loss(L_oic: torch.Tensor, Lc: torch.Tensor, alpha: float = 0.6) -> torch.Tensor:
    """Eq. 4: ``L = alpha * L_oic + (1 - alpha) * (Lc - 1)``; L_oic (N, K), Lc (N,) -> (N, K)."""
    return alpha * L_oic + (1 - alpha) * (Lc[:, None] - 1)


def objective_from_terms(terms: CoherenceTerms, score_terms: ScoreTerms = "both") -> torch.Tensor:
    """The quantity minimised (and negated for the score): L, L_oic or Lc (broadcast), (N, K)."""
    if score_terms == "both":
        return terms.L
    if score_terms == "oic":
        return terms.L_oic
    if score_terms == "coherence":
        return terms.Lc[:, None].expand_as(terms.L_oic)
    raise ValueError(f"score_terms must be 'both', 'oic' or 'coherence', got {score_terms!r}")


def proposal_terms(features: torch.Tensor | PrefixIntegral, scp: torch.Tensor | PrefixIntegral,
                   outer_start: torch.Tensor, start: torch.Tensor, end: torch.Tensor,
                   outer_end: torch.Tensor, alpha: float = 0.6, lc_features: LcFeatures = "raw",
                   eps: float = 1e-6, chunk_size: int = 1024, lc_method: LcMethod = "auto",
                   out_dtype: torch.dtype | None = None, combine: bool = True) -> CoherenceTerms:
    """L_OIC (N, K), Lc (N,) and L (N, K) of N proposals, all in one vectorised pass.

    Args:
        features: (T, D) features of the stream (or a prebuilt ``feature_integral``).
        scp: (K, T) SCP rows of the K classes to evaluate (or a prebuilt ``PrefixIntegral`` of
            the (T, K) transpose).
        outer_start <= start <= end <= outer_end: (N,) boundaries in snippets within [0, T];
            gradients flow to all four.
        alpha: weight of L_OIC in Eq. 4.
        lc_method: how Lc is computed (``coherence_term``'s ``method``).
        combine: form L; without, ``L`` is None and ``L_oic`` stays float64 (for callers
            that combine only the (proposal, class) pairs they keep).
    Returns:
        ``CoherenceTerms`` in ``out_dtype`` (default: dtype of ``start``).
    """
    out_dtype = out_dtype or (start.dtype if start.is_floating_point() else torch.float64)
    T = scp.T if isinstance(scp, PrefixIntegral) else scp.shape[-1]
    pts = _Points(T, outer_start, start, end, outer_end)  # shared by both terms
    l_oic = oic_loss(scp, outer_start, start, end, outer_end, eps=eps, points=pts)
    lc = coherence_term(features, outer_start, start, end, outer_end, eps=eps,
                        chunk_size=chunk_size, lc_features=lc_features, method=lc_method,
                        out_dtype=out_dtype, points=pts)
    if not combine:
        return CoherenceTerms(L_oic=l_oic, Lc=lc, L=None)
    l_oic = l_oic.to(out_dtype)
    return CoherenceTerms(L_oic=l_oic, Lc=lc, L=combine_loss(l_oic, lc, alpha))


def feature_integral(features: torch.Tensor, lc_features: LcFeatures = "raw",
                     std_eps: float = 1e-6) -> PrefixIntegral:
    """Prefix integral of (T, D) features for Lc, optionally z-scored per dimension.

    ``"embedding"``: ``features`` are already the base model's snippet embedding (the caller
    computed them, :meth:`acn.model.base.BaseModel.embed`): taken as they are, like ``"raw"``.
    float32 features are z-scored in float32 (one pass to write; the results are float32
    anyway), anything else in float64."""
    if lc_features in ("raw", "embedding"):
        return PrefixIntegral(features)
    if lc_features == "standardize":
        f = features.detach()
        if f.dtype == torch.float32 and f.dim() == 2 and f.shape[0] > 0:
            # column sums as GEMVs (torch's dim-0 std_mean is a slow strided reduction):
            # shift by a sample row, centre by the (two-pass) mean, scale in place
            ones = f.new_ones(1, f.shape[0])
            z = f - f[0]
            z -= (ones @ z) / f.shape[0]
            var = (ones @ (z * z)) / f.shape[0]
            return PrefixIntegral(z.mul_(1 / (var.sqrt() + std_eps)), center=False)
        f = f.to(torch.float64)
        std, mean = torch.std_mean(f, 0, unbiased=False)
        f = (f - mean) * (1 / (std + std_eps))
        return PrefixIntegral(f, center=False)
    raise ValueError(f"lc_features must be 'raw', 'standardize' or 'embedding', got "
                     f"{lc_features!r}")


# -- choosing a speed path (acn.model.coherence_fast) --------------------------------------
# The Gram band's tables peak at ~6 float64 arrays of (T + 1) x (span + 1) while they are
# built: above this many bytes the direct method (memory bounded by its chunk size) is used
# instead, so one very long proposal in a very long video cannot exhaust the memory.
GRAM_BAND_MAX_BYTES = 256 * 2 ** 20


def _choose_method(pi: PrefixIntegral, pts: _Points, block: int) -> str:
    """Cost model in units of one row-pair of the Gram band's GEMM: the Gram band costs
    T (block + span) units; the direct method ~300 units per proposal, ~40 per row for the
    float64 prefix sums it needs (unless built) and ~5000 per call. Fitted on the 235 Lc calls
    of a THUMOS14-scale localize (D = 1024, CAS proposals: median T 257, 47 proposals, span
    100) at 1 and 2 threads, where it comes within 2-4 % of always picking the faster method
    (the previous 600 / 200 / 0 took 30-55 % longer). A band that would need more than
    ``GRAM_BAND_MAX_BYTES`` is never built."""
    span = pts.pair_span()
    if pi.has_band(span):
        return "gram"  # already paid for
    rows = pi.T + 1
    if 6 * 8 * rows * (span + 2) > GRAM_BAND_MAX_BYTES:
        return "direct"
    gram_cost = rows * (min(block, rows) + span)
    direct_cost = 300 * pts.n + (0 if pi._cum is not None else 40 * rows) + 5000
    return "gram" if gram_cost < direct_cost else "direct"


def _region_dots(pi: PrefixIntegral, pts: _Points, eps: float, method: LcMethod,
                 gram_block: int, chunk_size: int) -> torch.Tensor:
    """(N, 5) dot products (ss, aa, ee, sa, ea) of the three region means, by ``method``
    (``"auto"``: the cost model's pick, :func:`_choose_method`)."""
    if method == "auto":
        method = _choose_method(pi, pts, gram_block)
    if method == "gram":
        return _dots_gram_any(pi, pts, eps, gram_block)
    if method == "direct":
        return _dots_direct(pi, pts, pts.region_weights4(eps), chunk_size)
    raise ValueError(f"method must be 'auto', 'gram' or 'direct', got {method!r}")
