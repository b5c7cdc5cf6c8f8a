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

import warnings
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
    if x.device.type == "cpu" and x.shape[0] > 1 and x.shape[1] >= 256:
        # torch's dim-0 cumsum of wide rows is ~3x slower on CPU than adding row to row
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

    Attributes: ``T``; ``values`` (T, D), float32 if given float32 (no copy), else float64;
    ``offset`` (D,) float64, the subtracted mean; ``cum`` (T + 1, D) float64 prefix sums of
    the centred signal (``cum[0] = 0``). ``offset`` and ``cum`` are computed on first use:
    the Gram-band route of ``coherence_term`` needs neither for float32 values.
    """

    def __init__(self, values: torch.Tensor, center: bool = True) -> None:
        if values.dim() != 2:
            raise ValueError(f"PrefixIntegral: values must be (T, D), got {tuple(values.shape)}")
        self.T = values.shape[0]
        if self.T == 0:
            raise ValueError("PrefixIntegral: empty sequence (T = 0)")
        v = values.detach()
        self.values = v if v.dtype == torch.float32 else v.to(torch.float64)
        self.center = center
        self._offset: torch.Tensor | None = None
        self._cum: torch.Tensor | None = None
        self._table: torch.Tensor | None = None
        self._gram: tuple[torch.Tensor, torch.Tensor | None] | None = None
        self._upper: torch.Tensor | None = None
        self._band: torch.Tensor | None = None
        self._band_bw = -1
        self._point_table: torch.Tensor | None = None
        self._offset_dots: torch.Tensor | None = None

    @property
    def offset(self) -> torch.Tensor:
        """(D,) float64: the mean that ``cum`` is centred by (zeros with ``center=False``)."""
        if self._offset is None:
            v = self.values
            self._offset = (v.mean(0, dtype=torch.float64) if self.center else
                            torch.zeros(v.shape[1], dtype=torch.float64, device=v.device))
        return self._offset

    @property
    def cum(self) -> torch.Tensor:
        """(T + 1, D) float64 prefix sums of the centred values, cached."""
        if self._cum is None:
            v = self.values
            # one extra row holds the offset: ``table()`` is then a view, not a copy
            buf = torch.empty(self.T + 2, v.shape[1], dtype=torch.float64, device=v.device)
            buf[0] = 0  # every other row is written below
            cum = buf[: self.T + 1]
            cum[1:] = v
            if self.center:
                cum[1:] -= self.offset
            _cumsum_rows_(cum[1:])
            buf[self.T + 1] = self.offset
            self._cum, self._table = cum, buf
        return self._cum

    # -- point queries --------------------------------------------------------------------
    def _index(self, x: torch.Tensor) -> torch.Tensor:
        return torch.floor(x.detach()).long().clamp_(0, self.T - 1)

    def centered_at(self, x: torch.Tensor) -> torch.Tensor:
        """Integral of the centred signal over [0, x] at real positions ``x`` (N,) -> (N, D).

        ``x`` must lie in [0, T]; the gradient w.r.t. ``x`` is the (centred) signal at ``x``.
        """
        i = self._index(x)
        cum = self.cum
        frac = (x.to(cum.dtype) - i.to(cum.dtype))[:, None]
        lo, hi = cum[i], cum[i + 1]
        return lo + frac * (hi - lo)

    def point(self, x: torch.Tensor) -> torch.Tensor:
        """Signal value (N, D) at real positions ``x`` (N,), i.e. of snippet ``floor(x)``."""
        i = self._index(x)
        return self.cum[i + 1] - self.cum[i] + self.offset

    def mean(self, a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
        """Mean over [a, b] for each of N intervals: (N,), (N,) -> (N, D).

        If b - a < eps: the limit, the value of the snippet containing a (clamped to [0, T-1]).
        """
        length = (b - a).to(torch.float64)
        ok = length > eps
        safe = torch.where(ok, length, torch.ones_like(length))
        mean = (self.centered_at(b) - self.centered_at(a)) / safe[:, None] + self.offset
        if bool(ok.all()):
            return mean
        return torch.where(ok[:, None], mean, self.point(a))

    # -- for Lc: the direct method -----------------------------------------------------------
    def table(self) -> torch.Tensor:
        """(T + 2, D): the prefix sums (rows 0..T) and the offset (row T + 1), cached."""
        if self._table is None:
            self.cum  # builds both
        return self._table

    # -- for Lc: the Gram-band method --------------------------------------------------------
    def gram_source(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(v, mu)``: the Gram band is formed from the rows ``v - mu`` (centred block by
        block, in ``v``'s dtype: float32 values give a float32 GEMM, whose band is summed in
        float64) and ``mu`` is added back to every region mean; ``mu`` is None without
        centring. Centring keeps the band sums small, which is what keeps short areas
        (divided by their length squared) precise on long videos."""
        if self._gram is None:
            v = self.values
            if not self.center:
                self._gram = (v, None)
            elif v.dtype == torch.float32:
                self._gram = (v, v.mean(0))  # any offset works; this one is used throughout
            else:
                self._gram = (v, self.offset)
        return self._gram

    def offset_dots(self) -> torch.Tensor | None:
        """(T + 1,) float64: prefix sums of <v_i - mu, mu> for ``gram_source`` (None without
        mu), cached."""
        v, mu = self.gram_source()
        if mu is None:
            return None
        if self._offset_dots is None:
            h = torch.zeros(self.T + 1, dtype=torch.float64, device=v.device)
            for r0 in range(0, self.T, 4096):
                h[r0 + 1: r0 + 4097] = ((v[r0:r0 + 4096] - mu) @ mu).to(torch.float64)
            self._offset_dots = h.cumsum(0)
        return self._offset_dots

    def has_band(self, bw: int) -> bool:
        return self._band_bw >= bw

    def _upper_band(self, bw: int, block: int) -> torch.Tensor:
        if not self.has_band(bw):
            self._upper, h = _prefix_upper(*self.gram_source(), bw, block)
            if h is not None:
                self._offset_dots = h
            self._band_bw = bw
            self._band = self._point_table = None
        return self._upper

    def band_gram(self, bw: int, block: int = 64) -> torch.Tensor:
        """Band of the *band-restricted* Gram prefix table, cached and widened on demand.

        Returns (T + 1, 2 bw' + 1) float64 (bw' >= bw) with ``band[p, q - p + bw'] =
        P[p, q] = sum_{i < p, j < q, |i - j| <= bw'} <c_i, c_j>`` (c from ``gram_source``)
        for 0 <= p, q <= T (other entries unspecified). For weights w, w' that each sum to 0
        on rows within bw' of each other, ``w^T P w'`` equals the true
        ``<sum_s w_s cum[p_s], sum_t w'_t cum[q_t]>`` (every (i, j) that survives the
        cancellation has |i - j| < bw'), so the Gram of the prefix-sum rows is never formed.
        Cost: one GEMM per block of ``block`` rows against the next ``block + bw`` rows,
        O(T (block + bw) D), then O(T bw) float64 sums.
        """
        upper = self._upper_band(bw, block)
        if self._band is None:
            self._band = _full_band(upper)
        return self._band

    def point_table(self, bw: int, block: int = 64) -> torch.Tensor:
        """(T, S, 4) float64, S >= bw, cached: for two points interpolated on rows (p, p + 1)
        and (q, q + 1), q = p + delta, 0 <= delta < S, with weights (1 - a, a) and
        (1 - b, b), ``sum P[.,.] weights = t0 + b t1 + a (t2 + b t3)`` where
        ``[p, delta] = (t0, t1, t2, t3)`` (P of ``band_gram``)."""
        upper = self._upper_band(max(bw, 1), block)
        if self._point_table is None:
            S = upper.shape[1] - 1
            g0 = upper[:-1, :S]  # P[p, q]
            g1 = upper[:-1, 1:]  # P[p, q + 1]
            g3 = upper[1:, :S]  # P[p + 1, q + 1]
            # written in place into one (T, S, 4) buffer: no stacked temporaries
            tab = upper.new_empty(g0.shape[0], S, 4)
            t0, t1, t2, t3 = tab.unbind(-1)
            t0.copy_(g0)
            torch.sub(g1, g0, out=t1)
            # P[p + 1, q] (symmetric): P[p, p + 1] at delta 0, else upper[p + 1, delta - 1]
            t2[:, :1].copy_(upper[:-1, 1:2])
            t2[:, 1:].copy_(upper[1:, : S - 1])
            torch.add(g3, g0, out=t3)
            t3.sub_(t2).sub_(g1)
            t2.sub_(g0)
            self._point_table = tab
        return self._point_table


def _feature_band(v: torch.Tensor, mu: torch.Tensor | None, bw: int, block: int
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """B (T, bw + 1) float64 with ``B[i, e] = <c_i, c_{i+e}>``, c = v - mu (0 where
    i + e >= T), and (T,) float64 ``<c_i, mu>`` (None without mu); one GEMM per block of
    rows, in ``v``'s dtype, centred block by block (no centred copy of the whole video)."""
    T = v.shape[0]
    block = max(1, int(block))
    out = torch.empty(T, bw + 1, dtype=torch.float64, device=v.device)
    hrow = None if mu is None else torch.empty(T, dtype=torch.float64, device=v.device)
    for r0 in range(0, T, block):
        r1, c1 = min(T, r0 + block), min(T, r0 + block + bw)
        rows = r1 - r0
        c = v[r0:c1] if mu is None else v[r0:c1] - mu
        if hrow is not None:
            hrow[r0:r1] = c[:rows] @ mu
        m = c[:rows] @ c.T  # (rows, c1 - r0)
        if c1 - r0 < rows + bw:
            m = torch.nn.functional.pad(m, (0, rows + bw - (c1 - r0)))
        # diagonals 0..bw of the block: m[a, a + e]
        out[r0:r1] = m.as_strided((rows, bw + 1), (m.stride(0) + 1, 1))
    return out, hrow


def _prefix_upper(v: torch.Tensor, mu: torch.Tensor | None, bw: int, block: int
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``upper[p, d] = P[p, p + d]`` for p = 0..T, d = 0..bw (entries with p + d > T are
    unspecified) of ``P[p, q] = sum_{i < p, j < q, |i - j| <= bw} <c_i, c_j>``, c = v - mu;
    (T + 1, bw + 1) float64, see ``PrefixIntegral.band_gram``; and the (T + 1,) prefix sums
    of <c_i, mu> (None without mu), which the GEMM loop gets for free.

    Along a diagonal q = p + d: P[p + 1, q + 1] = P[p, q] + (row p, columns j <= q) +
    (column q, rows i < p), both restricted to the band; with B[i, e] = <c_i, c_{i+e}> the row
    part is sum_{e=1..bw} B[p - e, e] + sum_{e<=d} B[p, e] and the column part
    sum_{e=d+1..bw} B[p + d - e, e], so each diagonal is one cumulative sum. The skewed reads
    are strided views (no index tensors).
    """
    T = v.shape[0]
    w = bw + 1
    B, hrow = _feature_band(v, mu, bw, block)  # (T, w)
    # A[k, e'] = B[k - bw + e', bw - e'] (0 for negative rows): the band along anti-diagonals,
    # e' = bw - e; a strided view of the column-reversed B below bw zero rows
    Bp = B.new_zeros(T + 2 * bw, w)
    Bp[bw: bw + T] = B.flip(1)
    A = Bp.as_strided((T, w), (w, w + 1))
    CA = B.new_zeros(T + bw, w)
    torch.cumsum(A, 1, out=CA[:T])  # CA[k, bw - m] = sum_{e >= m} B[k - e, e]
    inc = torch.cumsum(B, 1)
    if bw > 0:
        inc += CA[:T, bw - 1: bw]  # sum_{e >= 1} B[p - e, e]
        # column part: sum_{e >= d+1} B[p + d - e, e] = CA[p + d, bw - 1 - d], d < bw
        inc[:, :bw] += CA.as_strided((T, bw), (w, bw), bw - 1)
    upper = B.new_zeros(T + 1, w)
    torch.cumsum(inc, 0, out=upper[1:])
    h = None
    if hrow is not None:
        h = B.new_zeros(T + 1)
        torch.cumsum(hrow, 0, out=h[1:])
    return upper, h


def _full_band(upper: torch.Tensor) -> torch.Tensor:
    """(T + 1, 2 bw + 1) symmetric band ``full[p, q - p + bw] = P[p, q]`` from ``upper``."""
    n, w = upper.shape
    bw = w - 1
    full = upper.new_empty(n, 2 * bw + 1)
    full[:, bw:] = upper
    if bw > 0:
        # lower half by symmetry: full[p, j] = P[p, p + j - bw] = upper[p + j - bw, bw - j]
        low = upper.new_zeros(n + bw, w)
        low[bw:] = upper
        full[:, :bw] = low.as_strided((n, bw), (w, bw), bw)
    return full


@dataclass
class CoherenceTerms:
    """Per-proposal loss terms. ``L_oic`` and ``L`` are (N, K) (K evaluated classes); ``Lc`` is
    (N,) because the coherence term does not depend on the class."""

    L_oic: torch.Tensor
    Lc: torch.Tensor
    L: torch.Tensor | None


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

    def subset(self, idx: torch.Tensor) -> "_Points":
        """The proposals ``idx`` (gradients still flow to the original boundaries)."""
        out = _Points.__new__(_Points)
        out.x, out.phi, out.rows = self.x[idx], self.phi[idx], self.rows[idx]
        out.n = out.x.shape[0]
        return out

    def span(self) -> int:
        """Largest distance between two table rows used by one proposal."""
        if self.n == 0:
            return 0
        return int((self.rows[:, 7] - self.rows[:, 0]).max().item())

    def pair_span(self) -> int:
        """Largest distance between two table rows that one of Lc's dot products reads:
        start and action areas use rows i_0 .. i_2 + 1, end and action areas i_1 .. i_3 + 1."""
        if self.n == 0:
            return 0
        r = self.rows
        return int(torch.maximum(r[:, 5] - r[:, 0], r[:, 7] - r[:, 2]).max().item())

    def oic_weights(self, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        """L_OIC = sum_s w[:, s] cum[rows[:, s]] + c * offset, as (w (N, 8), c (N,)).

        outer mean - inner mean is one linear functional of the 8 rows; the centring offset
        cancels unless the outer area is empty (outer mean 0, so c = -1). Point p enters with
        coefficient a_p: the outer mean is (Cum(x1) - Cum(x0) + Cum(x3) - Cum(x2)) / L_out
        (the two side integrals, not whole minus inner), the inner (Cum(x2) - Cum(x1)) / L_in.
        """
        x, phi = self.x, self.phi
        inner_len = x[:, 2] - x[:, 1]
        outer_len = (x[:, 1] - x[:, 0]) + (x[:, 3] - x[:, 2])
        ok_in = inner_len > eps
        ok_out = outer_len > eps
        one = torch.ones_like(inner_len)
        zero = torch.zeros_like(inner_len)
        io = torch.where(ok_out, 1 / torch.where(ok_out, outer_len, one), zero)
        ii = torch.where(ok_in, 1 / torch.where(ok_in, inner_len, one), zero)
        coef = torch.stack([-io, io + ii, -io - ii, io], 1)  # (N, 4)
        w = torch.stack([(1 - phi) * coef, phi * coef], -1).reshape(self.n, 8)
        if not bool(ok_in.all()):
            # inner limit: snippet i_1 = cum[i_1 + 1] - cum[i_1], subtracted
            lim = torch.zeros_like(w)
            lim[:, 2], lim[:, 3] = 1.0, -1.0
            w = w + torch.where(ok_in[:, None], torch.zeros_like(w), lim)
        return w, ok_out.to(x.dtype) - 1

    def region_weights4(self, eps: float) -> torch.Tensor:
        """W (N, 3, 4): centred mean of region r (start, action, end area: points r, r+1)
        = sum_a W[:, r, a] cum[rows[:, 2r + a]] (the 4 rows of its two points). A region
        shorter than ``eps`` gets its limit, the snippet i_r: cum[i_r + 1] - cum[i_r]."""
        x = self.x
        pw = torch.stack([1 - self.phi, self.phi], -1)  # (N, 4, 2)
        length = x[:, 1:] - x[:, :3]  # (N, 3)
        ok = length > eps
        inv = 1 / torch.where(ok, length, torch.ones_like(length))
        limit = torch.tensor([-1.0, 1.0], dtype=pw.dtype, device=pw.device)
        lo = torch.where(ok[..., None], -pw[:, :3] * inv[..., None], limit)
        hi = torch.where(ok[..., None], pw[:, 1:] * inv[..., None], torch.zeros_like(lo))
        return torch.cat([lo, hi], -1)


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


def _weighted_rows(rows: torch.Tensor, w: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """``out[n] = sum_s w[n, s] table[rows[n, s]]``: rows, w (N, S), table (R, K) -> (N, K).

    On the CPU without gradients: one sparse (N, R) CSR matrix with S entries per row
    (repeated rows are summed) times the table, ~4x faster than ``embedding_bag`` with
    per-sample weights (measured: 12k proposals x 8 rows x 20 classes, 0.25 vs 1.0 ms).
    Otherwise ``embedding_bag``: the CSR backward rejects repeated columns in a row, and
    GPU sparse libraries do not promise to sum them."""
    n, k = rows.shape
    if w.requires_grad or table.requires_grad or table.device.type != "cpu":
        return torch.nn.functional.embedding_bag(rows, table, per_sample_weights=w, mode="sum")
    if n == 0:
        return table.new_zeros(0, table.shape[1])
    crow = torch.arange(0, n * k + 1, k, device=rows.device)
    with warnings.catch_warnings():  # torch flags sparse CSR as beta (once per process)
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        a = torch.sparse_csr_tensor(crow, rows.reshape(-1), w.reshape(-1).to(table.dtype),
                                    size=(n, table.shape[0]), check_invariants=False)
    return a @ table


# (x, y) region pairs whose dot products Lc needs; regions 0 = start, 1 = action, 2 = end.
_PAIRS_X = [0, 1, 2, 0, 2]
_PAIRS_Y = [0, 1, 2, 1, 1]


def _dots_gram(pi: PrefixIntegral, pts: _Points, w: torch.Tensor, block: int) -> torch.Tensor:
    """Dot products (N, 5) of the raw region means (ss, aa, ee, sa, ea), via the Gram band.

    Raw mean R_x = sum_a W[x, a] c_cum[rows[2x + a]] + mu (c, mu from ``gram_source``), so
    <R_x, R_y> = W_x G_xy W_y^T + W_x h_x + W_y h_y + |mu|^2 with G the Gram block of the
    rows of regions x and y (read from ``band_gram``: each region's weights sum to 0) and
    h = c_cum mu (``offset_dots``). ``w``: (N, 3, 4) from ``region_weights4``. Rows 0..5
    serve the start/action pairs and rows 2..7 the end/action pairs.
    """
    band = pi.band_gram(pts.pair_span(), block)
    width = band.shape[1]
    bw = (width - 1) // 2
    rows = pts.rows

    def block_of(r: torch.Tensor) -> torch.Tensor:  # (N, 6, 6) band entries of rows r
        # band[p, q - p + bw] lives at flat p * width + q - p + bw = p * (width - 1) + bw + q
        return band.view(-1)[(r * (width - 1) + bw)[:, :, None] + r[:, None, :]]

    ga, gb = block_of(rows[:, 0:6]), block_of(rows[:, 2:8])
    w0, w1, w2 = w.unbind(1)
    va = (ga[:, :, 2:6] * w1[:, None, :]).sum(-1)  # (N, 6): G[rows 0..5, rows of region 1] W_1
    vb = (gb[:, 2:6, 0:4] * w1[:, None, :]).sum(-1)  # (N, 4): G[rows of region 2, region 1] W_1
    ss = ((ga[:, 0:4, 0:4] * w0[:, None, :]).sum(-1) * w0).sum(-1)
    ee = ((gb[:, 2:6, 2:6] * w2[:, None, :]).sum(-1) * w2).sum(-1)
    aa = (va[:, 2:6] * w1).sum(-1)
    sa = (va[:, 0:4] * w0).sum(-1)
    ea = (vb * w2).sum(-1)
    dots = torch.stack([ss, aa, ee, sa, ea], -1)
    h = pi.offset_dots()
    if h is None:
        return dots
    mu = pi.gram_source()[1].to(torch.float64)
    h0, h1, h2 = (w * h[rows].unfold(1, 4, 2)).sum(-1).unbind(1)
    extra = torch.stack([2 * h0, 2 * h1, 2 * h2, h0 + h1, h2 + h1], -1)
    return dots + extra + mu @ mu


def _pairs(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Columns k and l of the point pairs (k, l), k <= l, that the five dots need:
    (0,0) (1,1) (2,2) (3,3) (0,1) (1,2) (2,3) (0,2) (1,3); slices, no index tensors."""
    return (torch.cat([t, t[:, :3], t[:, :2]], 1), torch.cat([t, t[:, 1:], t[:, 2:]], 1))


def _dots_points(pi: PrefixIntegral, pts: _Points, eps: float, block: int) -> torch.Tensor:
    """``_dots_gram`` for proposals whose three regions are all longer than ``eps`` (rows
    with a shorter region get finite placeholder values).

    Region r is (C(x_{r+1}) - C(x_r)) / L_r with C(x) = (1 - phi) c_cum[i] + phi c_cum[i + 1]
    the interpolated prefix sum, so every dot is a combination of Q[k, l] = <C(x_k), C(x_l)>
    (9 of the 10 pairs; each combination's weights sum to 0 on both sides, so the
    band-restricted table gives the exact value). Each Q is one 4-wide row of
    ``point_table``: Q = t0 + phi_l t1 + phi_k (t2 + phi_l t3).
    """
    tab = pi.point_table(pts.pair_span(), block)
    S = tab.shape[1]
    i = pts.rows[:, 0::2]  # (N, 4) base rows, non-decreasing
    phi = pts.phi
    ik, il = _pairs(i)
    g = tab.view(-1, 4).index_select(0, (ik * (S - 1) + il).reshape(-1)).view(-1, 9, 4)
    pk, pl = _pairs(phi)
    q = g[..., 0] + pl * g[..., 1] + pk * (g[..., 2] + pl * g[..., 3])  # (N, 9)
    L = pts.x[:, 1:] - pts.x[:, :3]
    inv = 1 / torch.where(L > eps, L, torch.ones_like(L))  # (N, 3)
    # the five dots (ss, aa, ee, sa, ea) = (q @ _Q_TO_DOTS) * inv_x * inv_y: one small GEMM
    # and two products instead of ~25 column operations
    scale = inv[:, _PAIRS_X] * inv[:, _PAIRS_Y]
    dots = (q @ _const(_Q_TO_DOTS, q)) * scale
    h = pi.offset_dots()
    if h is None:
        return dots
    mu = pi.gram_source()[1].to(torch.float64)
    hi = h.unfold(0, 2, 1).index_select(0, i.reshape(-1)).view(-1, 4, 2)  # h[i], h[i + 1]
    hp = hi[..., 0] + phi * (hi[..., 1] - hi[..., 0])  # <C(x_k), mu>
    hh = (hp[:, 1:] - hp[:, :3]) * inv  # (N, 3) <centred region mean, mu>
    # + <R_x, mu> + <R_y, mu> + |mu|^2 for each pair (x, y)
    return torch.addmm(dots, hh, _const(_H_TO_DOTS, hh)) + mu @ mu


# Rows: the 9 point pairs of ``_pairs`` (0,0) (1,1) (2,2) (3,3) (0,1) (1,2) (2,3) (0,2) (1,3);
# columns: ss = q11 - 2 q01 + q00, aa = q22 - 2 q12 + q11, ee = q33 - 2 q23 + q22,
# sa = q12 - q11 - q02 + q01, ea = q23 - q13 - q22 + q12 (before the 1 / (L_x L_y) scale).
_Q_TO_DOTS = [[1, 0, 0, 0, 0], [1, 1, 0, -1, 0], [0, 1, 1, 0, -1], [0, 0, 1, 0, 0],
              [-2, 0, 0, 1, 0], [0, -2, 0, 1, 1], [0, 0, -2, 0, 1], [0, 0, 0, -1, 0],
              [0, 0, 0, 0, -1]]
# region r's <mean, mu> enters the dots (x, y) of _PAIRS_X/_PAIRS_Y once per occurrence
_H_TO_DOTS = [[2, 0, 0, 1, 0], [0, 2, 0, 1, 1], [0, 0, 2, 0, 1]]


def _const(rows: list, like: torch.Tensor) -> torch.Tensor:
    """``rows`` as a tensor of ``like``'s dtype and device. Made anew on every call: one
    cached from a call under ``torch.inference_mode`` would be an inference tensor, which a
    later training step cannot save for backward."""
    return torch.tensor(rows, dtype=like.dtype, device=like.device)


def _dots_gram_any(pi: PrefixIntegral, pts: _Points, eps: float, block: int) -> torch.Tensor:
    """Gram-band dots: the point path, with the rows that have a region shorter than ``eps``
    (video edges, collapsed areas) redone by the 8-row path, which uses the snippet limits."""
    dots = _dots_points(pi, pts, eps, block)
    x = pts.x.detach()
    bad = torch.nonzero(((x[:, 1:] - x[:, :3]) <= eps).any(1)).flatten()
    if bad.numel() == 0:
        return dots
    sub = pts.subset(bad)
    return dots.index_copy(0, bad, _dots_gram(pi, sub, sub.region_weights4(eps), block))


def _dots_direct(pi: PrefixIntegral, pts: _Points, w: torch.Tensor, chunk_size: int
                 ) -> torch.Tensor:
    """Same as ``_dots_gram`` by forming the (chunk, D) region means with one fused
    gather-and-weighted-sum (``embedding_bag``) per chunk."""
    table = pi.table()
    n = pts.n
    # region r only uses the rows of its two points: slots 2r .. 2r+3
    idx = pts.rows.unfold(1, 4, 2)  # (N, 3, 4)
    idx5 = torch.cat([idx, idx.new_full((n, 3, 1), table.shape[0] - 1)], -1)  # + offset row
    w5 = torch.cat([w, torch.ones_like(w[..., :1])], -1)
    out = []
    for lo in range(0, n, max(1, chunk_size)):
        r = _weighted_rows(idx5[lo:lo + chunk_size].reshape(-1, 5),
                           w5[lo:lo + chunk_size].reshape(-1, 5), table)
        r = r.view(-1, 3, table.shape[1])
        out.append(torch.stack([torch.linalg.vecdot(r[:, x], r[:, y])
                                for x, y in zip(_PAIRS_X, _PAIRS_Y)], -1))
    return torch.cat(out)


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
    if method == "auto":
        method = _choose_method(pi, pts, gram_block)
    if method == "gram":
        dots = _dots_gram_any(pi, pts, eps, gram_block)
    elif method == "direct":
        dots = _dots_direct(pi, pts, pts.region_weights4(eps), chunk_size)
    else:
        raise ValueError(f"method must be 'auto', 'gram' or 'direct', got {method!r}")
    # columns (ss, aa, ee, sa, ea): cos_s = sa / |s||a|, cos_e = ea / |e||a|; the norms'
    # product is clamped before the sqrt: finite value and gradient for zero vectors
    norms = torch.sqrt((dots[:, 0:3:2] * dots[:, 1:2]).clamp_min(cos_eps * cos_eps))
    # A region mean that is ~0 (e.g. the whole video on standardised features, whose mean is
    # 0 by construction) leaves only rounding noise in the prefix-sum dots, and noise over
    # noise can leave [-1, 1] by any amount (a -L of -42 was seen): keep the cosines cosines.
    cos = (dots[:, 3:5] / norms).clamp(-1.0, 1.0)
    return cos.mean(1).to(out_dtype)


def feature_integral(features: torch.Tensor, lc_features: LcFeatures = "raw",
                     std_eps: float = 1e-6) -> PrefixIntegral:
    """Prefix integral of (T, D) features for Lc, optionally z-scored per dimension.

    float32 features are z-scored in float32 (one pass to write; the results are float32
    anyway), anything else in float64."""
    if lc_features == "raw":
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
