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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

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

LcFeatures = Literal["raw", "standardize"]
ScoreTerms = Literal["both", "oic", "coherence"]
LcMethod = Literal["auto", "gram", "direct"]


def _cumsum_rows_(x: torch.Tensor) -> None:
    """In-place prefix sum over dim 0 of a contiguous (T, D) tensor."""
    if x.device.type == "cpu" and x.shape[0] > 1:
        # torch's dim-0 cumsum is ~3x slower on CPU than adding row to row
        a = x.numpy()
        for i in range(1, a.shape[0]):
            np.add(a[i], a[i - 1], out=a[i])
    else:
        x.cumsum_(0)


class PrefixIntegral:
    """Exact integrals of a piecewise-constant signal over real intervals.

    Args:
        values: (T, D) per-snippet values (snippet i covers [i, i+1)).
        center: subtract the per-dimension mean before the (float64) prefix sums and add it
            back to every mean: the sums stay a random walk instead of a ramp.

    Attributes: ``T``; ``offset`` (D,) the subtracted mean; ``cum`` (T + 1, D) float64 prefix
    sums of the centred signal (``cum[0] = 0``).
    """

    def __init__(self, values: torch.Tensor, center: bool = True) -> None:
        if values.dim() != 2:
            raise ValueError(f"PrefixIntegral: values must be (T, D), got {tuple(values.shape)}")
        self.T = values.shape[0]
        if self.T == 0:
            raise ValueError("PrefixIntegral: empty sequence (T = 0)")
        dt = torch.float64
        cum = torch.zeros(self.T + 1, values.shape[1], dtype=dt, device=values.device)
        cum[1:] = values.detach()
        self.offset = cum[1:].mean(0) if center else torch.zeros_like(cum[0])
        if center:
            cum[1:] -= self.offset
        _cumsum_rows_(cum[1:])
        self.cum = cum
        self._table: torch.Tensor | None = None
        self._band: torch.Tensor | None = None
        self._band_bw = -1
        self._offset_dots: torch.Tensor | None = None

    # -- point queries --------------------------------------------------------------------
    def _index(self, x: torch.Tensor) -> torch.Tensor:
        return torch.floor(x.detach()).long().clamp_(0, self.T - 1)

    def centered_at(self, x: torch.Tensor) -> torch.Tensor:
        """Integral of the centred signal over [0, x] at real positions ``x`` (N,) -> (N, D).

        ``x`` must lie in [0, T]; the gradient w.r.t. ``x`` is the (centred) signal at ``x``.
        """
        i = self._index(x)
        frac = (x.to(self.cum.dtype) - i.to(self.cum.dtype))[:, None]
        lo, hi = self.cum[i], self.cum[i + 1]
        return lo + frac * (hi - lo)

    def point(self, x: torch.Tensor) -> torch.Tensor:
        """Signal value (N, D) at real positions ``x`` (N,), i.e. of snippet ``floor(x)``."""
        i = self._index(x)
        return self.cum[i + 1] - self.cum[i] + self.offset

    def mean(self, a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
        """Mean over [a, b] for each of N intervals: (N,), (N,) -> (N, D).

        If b - a < eps: the limit, the value of the snippet containing a (clamped to [0, T-1]).
        """
        length = (b - a).to(self.cum.dtype)
        ok = length > eps
        safe = torch.where(ok, length, torch.ones_like(length))
        mean = (self.centered_at(b) - self.centered_at(a)) / safe[:, None] + self.offset
        if bool(ok.all()):
            return mean
        return torch.where(ok[:, None], mean, self.point(a))

    # -- for Lc ----------------------------------------------------------------------------
    def table(self) -> torch.Tensor:
        """(T + 2, D): the prefix sums (rows 0..T) and the offset (row T + 1), cached."""
        if self._table is None:
            self._table = torch.cat([self.cum, self.offset[None]], 0)
        return self._table

    def offset_dots(self) -> torch.Tensor:
        """(T + 1,): <cum[p], offset>, cached."""
        if self._offset_dots is None:
            self._offset_dots = self.cum @ self.offset
        return self._offset_dots

    def has_band(self, bw: int) -> bool:
        return self._band_bw >= bw

    def band_gram(self, bw: int, block: int = 128) -> torch.Tensor:
        """Symmetric band of the Gram matrix of ``cum`` rows, cached and widened on demand.

        Returns (T + 1, 2 bw' + 1) with ``band[p, q - p + bw'] = <cum[p], cum[q]>`` for
        |q - p| <= bw' (bw' >= bw; entries outside [0, T] are 0).
        """
        if not self.has_band(bw):
            self._band = _band_gram(self.cum, bw, block)
            self._band_bw = bw
        return self._band


def _band_gram(cum: torch.Tensor, bw: int, block: int) -> torch.Tensor:
    """Symmetric Gram band of the rows of ``cum`` (n, D): (n, 2 bw + 1), see ``band_gram``.

    One GEMM per block of rows against the rows up to ``bw`` further on: O(n (block + bw) D).
    """
    n = cum.shape[0]
    upper = cum.new_zeros(n, bw + 1)  # upper[p, d] = <cum[p], cum[p + d]>
    offsets = torch.arange(bw + 1, device=cum.device)
    for r0 in range(0, n, block):
        r1, c1 = min(n, r0 + block), min(n, r0 + block + bw)
        m = cum[r0:r1] @ cum[r0:c1].T
        rows = r1 - r0
        m = torch.nn.functional.pad(m, (0, rows + bw - (c1 - r0)))
        upper[r0:r1] = m.gather(1, torch.arange(rows, device=cum.device)[:, None] + offsets)
    full = cum.new_zeros(n, 2 * bw + 1)
    full[:, bw:] = upper
    # lower half by symmetry: full[p, bw - d] = upper[p - d, d]
    p = torch.arange(n, device=cum.device)[:, None]
    src = p - offsets[None, 1:]
    ok = src >= 0
    lower = upper[src.clamp(min=0), offsets[None, 1:].expand(n, bw)]
    full[:, :bw] = torch.where(ok, lower, torch.zeros_like(lower)).flip(1)
    return full


@dataclass
class CoherenceTerms:
    """Per-proposal loss terms. ``L_oic`` and ``L`` are (N, K) (K evaluated classes); ``Lc`` is
    (N,) because the coherence term does not depend on the class."""

    L_oic: torch.Tensor
    Lc: torch.Tensor
    L: torch.Tensor


def _check_bounds(outer_start, start, end, outer_end) -> None:
    n = start.shape[0]
    for name, t in (("outer_start", outer_start), ("end", end), ("outer_end", outer_end)):
        if t.shape != (n,):
            raise ValueError(f"proposal_terms: {name} has shape {tuple(t.shape)}, expected ({n},)")


class _Points:
    """The 4 boundaries of N proposals, Xs <= xs <= xe <= Xe, as table rows and weights.

    Cum(x) = (1 - phi) cum[i] + phi cum[i + 1] with i = clamp(floor(x), 0, T-1), phi = x - i,
    so everything is read from the 8 rows ``rows`` (N, 8) = [i_0, i_0 + 1, ..., i_3, i_3 + 1].
    """

    def __init__(self, T: int, outer_start, start, end, outer_end) -> None:
        _check_bounds(outer_start, start, end, outer_end)
        self.x = torch.stack([outer_start, start, end, outer_end], 1).to(torch.float64)
        i = torch.floor(self.x.detach()).clamp(0, T - 1)
        self.phi = self.x - i  # carries the gradient w.r.t. the boundaries
        i = i.long()
        self.rows = torch.stack([i, i + 1], -1).reshape(-1, 8)
        self.n = self.x.shape[0]

    def span(self) -> int:
        """Largest distance between two table rows used by one proposal."""
        if self.n == 0:
            return 0
        return int((self.rows[:, 7] - self.rows[:, 0]).max().item())

    def _point_weights(self) -> torch.Tensor:
        """(N, 4, 8): Cum(x_p) = sum_s P[:, p, s] cum[rows[:, s]] (slots 2p, 2p+1)."""
        eye = torch.eye(4, dtype=self.phi.dtype, device=self.phi.device)
        pw = torch.stack([1 - self.phi, self.phi], -1)  # (N, 4, 2)
        return (eye[None, :, :, None] * pw[:, :, None, :]).reshape(self.n, 4, 8)

    def oic_weights(self, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        """L_OIC = sum_s w[:, s] cum[rows[:, s]] + c * offset, as (w (N, 8), c (N,)).

        outer mean - inner mean is one linear functional of the 8 rows; the centring offset
        cancels unless the outer area is empty (outer mean 0, so c = -1).
        """
        pt = self._point_weights()
        x = self.x
        inner_len = x[:, 2] - x[:, 1]
        ok_in = (inner_len > eps)[:, None]
        limit = torch.zeros_like(pt[:, 0])
        limit[:, 2], limit[:, 3] = -1.0, 1.0  # snippet i_1 = cum[i_1 + 1] - cum[i_1]
        inner = torch.where(ok_in, (pt[:, 2] - pt[:, 1])
                            / torch.where(ok_in, inner_len[:, None], 1.0), limit)
        outer_len = (x[:, 1] - x[:, 0]) + (x[:, 3] - x[:, 2])
        ok_out = (outer_len > eps)[:, None]
        # sum of the two side integrals (each a short difference), not whole minus inner
        outer = (pt[:, 1] - pt[:, 0] + pt[:, 3] - pt[:, 2]) / torch.where(ok_out,
                                                                          outer_len[:, None], 1.0)
        outer = torch.where(ok_out, outer, torch.zeros_like(outer))
        return outer - inner, ok_out[:, 0].to(x.dtype) - 1

    def region_weights(self, eps: float) -> torch.Tensor:
        """W (N, 3, 8): centred mean of region r (start, action, end area: points r, r+1)
        = sum_s W[:, r, s] cum[rows[:, s]]. A region shorter than ``eps`` gets its limit, the
        snippet i_r: cum[i_r + 1] - cum[i_r]."""
        point = torch.stack([1 - self.phi, self.phi], -1)  # (N, 4, 2)
        limit = torch.tensor([-1.0, 1.0], dtype=point.dtype, device=point.device)
        regions = []
        for r in range(3):
            length = self.x[:, r + 1] - self.x[:, r]
            ok = (length > eps)[:, None]
            inv = (1 / torch.where(ok[:, 0], length, torch.ones_like(length)))[:, None]
            lo = torch.where(ok, -point[:, r] * inv, limit)
            hi = torch.where(ok, point[:, r + 1] * inv, torch.zeros_like(lo))
            pad_l, pad_r = point.new_zeros(self.n, 2 * r), point.new_zeros(self.n, 4 - 2 * r)
            regions.append(torch.cat([pad_l, lo, hi, pad_r], 1))
        return torch.stack(regions, 1)


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
    # fused gather + weighted sum of the 8 rows (no (N, 8, K) intermediate)
    oic = torch.nn.functional.embedding_bag(pts.rows, pi.cum, per_sample_weights=w, mode="sum")
    return oic + c[:, None] * pi.offset


# (x, y) region pairs whose dot products Lc needs; regions 0 = start, 1 = action, 2 = end.
_PAIRS_X = [0, 1, 2, 0, 2]
_PAIRS_Y = [0, 1, 2, 1, 1]
_PAIRS_FLAT = torch.tensor([3 * x + y for x, y in zip(_PAIRS_X, _PAIRS_Y)])


def _dots_gram(pi: PrefixIntegral, pts: _Points, w: torch.Tensor, block: int) -> torch.Tensor:
    """Dot products (N, 5) of the raw region means for the pairs above, via the Gram band.

    Raw mean R_x = sum_s W[x, s] cum[rows[s]] + mu (the centring offset), so
    <R_x, R_y> = (W G W^T)[x, y] + (W h)[x] + (W h)[y] + |mu|^2 with G the (8, 8) Gram block
    of the proposal's rows and h = cum mu.
    """
    band = pi.band_gram(pts.span(), block)
    width = band.shape[1]
    bw = (width - 1) // 2
    rows = pts.rows
    # band[p, q - p + bw] lives at flat p * width + q - p + bw = p * (width - 1) + bw + q
    flat = (rows * (width - 1) + bw)[:, :, None] + rows[:, None, :]
    g = band.view(-1)[flat]  # (N, 8, 8)
    hw = (w * pi.offset_dots()[rows][:, None, :]).sum(-1)  # (N, 3)
    q = torch.bmm(torch.bmm(w, g), w.transpose(1, 2))  # (N, 3, 3)
    q = q + hw[:, :, None] + hw[:, None, :] + pi.offset @ pi.offset
    return q.reshape(-1, 9).index_select(1, _PAIRS_FLAT.to(q.device))


def _dots_direct(pi: PrefixIntegral, pts: _Points, w: torch.Tensor, chunk_size: int
                 ) -> torch.Tensor:
    """Same as ``_dots_gram`` by forming the (chunk, D) region means with one fused
    gather-and-weighted-sum (``embedding_bag``) per chunk."""
    table = pi.table()
    n = pts.n
    # region r only uses the rows of its two points: slots 2r .. 2r+3
    idx = pts.rows.unfold(1, 4, 2)  # (N, 3, 4)
    ww = torch.stack([w[:, r, 2 * r:2 * r + 4] for r in range(3)], 1)
    idx5 = torch.cat([idx, idx.new_full((n, 3, 1), table.shape[0] - 1)], -1)  # + offset row
    w5 = torch.cat([ww, torch.ones_like(ww[..., :1])], -1)
    out = []
    for lo in range(0, n, max(1, chunk_size)):
        r = torch.nn.functional.embedding_bag(idx5[lo:lo + chunk_size].reshape(-1, 5), table,
                                              per_sample_weights=w5[lo:lo + chunk_size]
                                              .reshape(-1, 5), mode="sum")
        r = r.view(-1, 3, table.shape[1])
        out.append(torch.stack([torch.linalg.vecdot(r[:, x], r[:, y])
                                for x, y in zip(_PAIRS_X, _PAIRS_Y)], -1))
    return torch.cat(out)


def _choose_method(pi: PrefixIntegral, pts: _Points, block: int) -> str:
    """Rough cost model: a GEMM multiply-add is ~10x cheaper than a value moved by the
    memory-bound direct method, which moves ~30 D values per proposal."""
    span = pts.span()
    if pi.has_band(span):
        return "gram"  # already paid for
    rows = pi.cum.shape[0]
    gram_cost = rows * (min(block, rows) + span) / 10
    return "gram" if gram_cost < 30 * pts.n else "direct"


def coherence_term(features: PrefixIntegral | torch.Tensor, outer_start: torch.Tensor,
                   start: torch.Tensor, end: torch.Tensor, outer_end: torch.Tensor,
                   eps: float = 1e-6, cos_eps: float = 1e-8, chunk_size: int = 1024,
                   lc_features: LcFeatures = "raw", method: LcMethod = "auto",
                   gram_block: int = 128, out_dtype: torch.dtype | None = None,
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
    picks by a cost estimate. Both are exact in float64.

    Args:
        features: (T, D) snippet features or a ``PrefixIntegral`` over them (then
            ``lc_features`` is ignored: the caller built it; its Gram band is cached on it).
        outer_start <= start <= end <= outer_end: (N,) boundaries in snippets within [0, T].
        lc_features: ``"raw"`` (the paper) or ``"standardize"`` (per-video z-score of each
            feature dimension first; cosines of non-negative features are all close to 1).
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
    w = pts.region_weights(eps)
    if method == "auto":
        method = _choose_method(pi, pts, gram_block)
    if method == "gram":
        dots = _dots_gram(pi, pts, w, gram_block)
    elif method == "direct":
        dots = _dots_direct(pi, pts, w, chunk_size)
    else:
        raise ValueError(f"method must be 'auto', 'gram' or 'direct', got {method!r}")
    ss, aa, ee, sa, ea = dots.unbind(-1)
    # clamp before sqrt: finite value and gradient for zero vectors
    cos_s = sa / torch.sqrt((ss * aa).clamp_min(cos_eps * cos_eps))
    cos_e = ea / torch.sqrt((ee * aa).clamp_min(cos_eps * cos_eps))
    return ((cos_s + cos_e) / 2).to(out_dtype)


def feature_integral(features: torch.Tensor, lc_features: LcFeatures = "raw",
                     std_eps: float = 1e-6) -> PrefixIntegral:
    """Prefix integral of (T, D) features for Lc, optionally z-scored per dimension."""
    if lc_features == "raw":
        return PrefixIntegral(features)
    if lc_features == "standardize":
        f = features.detach().to(torch.float64)
        f = (f - f.mean(0)) / (f.std(0, unbiased=False) + std_eps)
        return PrefixIntegral(f, center=False)
    raise ValueError(f"lc_features must be 'raw' or 'standardize', got {lc_features!r}")


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
                   out_dtype: torch.dtype | None = None) -> CoherenceTerms:
    """L_OIC (N, K), Lc (N,) and L (N, K) of N proposals, all in one vectorised pass.

    Args:
        features: (T, D) features of the stream (or a prebuilt ``feature_integral``).
        scp: (K, T) SCP rows of the K classes to evaluate (or a prebuilt ``PrefixIntegral`` of
            the (T, K) transpose).
        outer_start <= start <= end <= outer_end: (N,) boundaries in snippets within [0, T];
            gradients flow to all four.
        alpha: weight of L_OIC in Eq. 4.
        lc_method: how Lc is computed (``coherence_term``'s ``method``).
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
    l_oic = l_oic.to(out_dtype)
    return CoherenceTerms(L_oic=l_oic, Lc=lc, L=combine_loss(l_oic, lc, alpha))
