"""The speed paths beneath :mod:`acn.model.coherence`: how the region means and dot products
of Eqs. 1-3 are evaluated for many proposals at once.

* :class:`_Points`: the 4 boundaries of N proposals as rows of the prefix-sum table and
  interpolation weights (L_OIC is one linear functional of 8 rows, each region mean one of 4);
* :func:`_weighted_rows`: ``sum_s w[n, s] table[rows[n, s]]`` (a sparse CSR product on the
  CPU without gradients, ``embedding_bag`` otherwise);
* Lc's five dot products (ss, aa, ee, sa, ea) of the three region means by three routes, all
  exact in float64: the **Gram band** (:func:`_dots_gram`, 8 table rows per proposal), the
  **point table** (:func:`_dots_points`, the Gram band per pair of points; with the 8-row
  route for regions shorter than ``eps``: :func:`_dots_gram_any`) and the **chunked direct**
  method (:func:`_dots_direct`: the (chunk, D) region means themselves).

Which route runs is decided in :mod:`acn.model.coherence` (``coherence_term``'s ``method``
and its cost model); nothing here changes a value, only how fast it is computed.
"""

from __future__ import annotations

import warnings

import torch

from acn.model.prefix_integral import PrefixIntegral


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
