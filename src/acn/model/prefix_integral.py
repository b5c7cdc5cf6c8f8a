"""Exact, differentiable integrals of a piecewise-constant signal, and the Gram-band tables
that the fast Lc paths read (:mod:`acn.model.coherence_fast`).

Continuous time in snippet units: snippet ``i`` occupies ``[i, i+1)``. The cumulative integral
``Cum(x) = int_0^x f`` is the prefix sum at integers, linearly interpolated in between, so
``int_a^b f = Cum(b) - Cum(a)`` is exact and differentiable in ``a`` and ``b`` (d/dx = f at x).

Precision: prefix sums are float64 and taken over mean-centred signals (the mean is added back
to every interval mean), so long videos (T ~ 1e4) lose nothing on short (P/4 = 0.25) areas.

Speed: each region mean is a combination of 4 rows of the prefix-sum table, so every dot
product Lc needs is ``w_x^T G w_y`` with G the Gram matrix of table rows, of which only a
narrow band is ever read: :meth:`PrefixIntegral.band_gram` builds that band (and
:meth:`PrefixIntegral.point_table` a per-point form of it) without forming G.
"""

from __future__ import annotations

import numpy as np
import torch


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
