"""Proposals of ACN: anchors, regression decoding (Eqs. 5-6), inflation, filtering,
one-proposal-per-position selection, and ``score_video`` which ties them to the coherence loss.

All positions are in snippets (snippet i covers [i, i+1)). A proposal [a, b) *contains*
snippet i iff the snippet centre i + 0.5 lies in [a, b); a proposal containing no snippet
centre is dropped. Containment queries use prefix counts, O(1) per proposal and class.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch

from acn.model.coherence import (
    CoherenceTerms,
    LcFeatures,
    LcMethod,
    PrefixIntegral,
    ScoreTerms,
    combine_loss,
    feature_integral,
    objective_from_terms,
    proposal_terms,
)

__all__ = [
    "Proposals",
    "ScoredProposals",
    "select_classes",
    "decode_anchor",
    "build_proposals",
    "contained_range",
    "count_in_range",
    "one_per_position",
    "score_video",
]

AttentionMode = Literal["drop", "zero_scp", "none"]


@dataclass
class Proposals:
    """N proposals of one stream, all anchors concatenated. Every field is (N,).

    ``start``/``end``: regressed boundaries x^s, x^e, clamped to [0, T] (float, carry gradients
    from the regression outputs). ``outer_start``/``outer_end``: inflated boundaries Xs, Xe,
    clamped to [0, T]. ``position``: anchor start index i (long). ``anchor``: anchor size P (long).
    """

    start: torch.Tensor
    end: torch.Tensor
    outer_start: torch.Tensor
    outer_end: torch.Tensor
    position: torch.Tensor
    anchor: torch.Tensor

    def __len__(self) -> int:
        return int(self.start.shape[0])

    def subset(self, idx: torch.Tensor) -> "Proposals":
        return Proposals(*(getattr(self, f)[idx] for f in
                           ("start", "end", "outer_start", "outer_end", "position", "anchor")))


def select_classes(video_scores: torch.Tensor, threshold: float = 0.1) -> torch.Tensor:
    """Indices (K,) of the classes whose video-level score (C,) is strictly above ``threshold``."""
    return torch.nonzero(torch.as_tensor(video_scores) > threshold).flatten()


def decode_anchor(T: int, P: int, r: torch.Tensor | None = None, inflation: float = 0.25,
                  dtype: torch.dtype | None = None,
                  device: torch.device | str | None = None) -> Proposals:
    """Proposals of one anchor size P over a T-snippet video (Eqs. 5-6 and the inflation).

    Anchors are (xs, xe) = (i, i + P) for i = 0 .. T-P (none when T < P). With regression
    output ``r`` (2, T): ``x^s = xs + P (sigmoid(r[0, xs]) - 1/2)``,
    ``x^e = xe + P (sigmoid(r[1, min(xe, T-1)]) - 1/2)``; without (``r=None``, the
    "no regression" ablation) the proposals stay at the anchors. Both are clamped to [0, T].
    Inflated: ``Xs = x^s - inflation * P``, ``Xe = x^e + inflation * P``, clamped to [0, T].
    """
    if P < 1:
        raise ValueError(f"anchor size must be >= 1, got {P}")
    if r is not None:
        if r.dim() != 2 or r.shape[0] != 2 or r.shape[1] != T:
            raise ValueError(f"regression output for anchor {P} must be (2, {T}), "
                             f"got {tuple(r.shape)}")
        dtype = dtype or r.dtype
        device = device or r.device
    dtype = dtype or torch.get_default_dtype()
    n = max(T - P + 1, 0)
    pos = torch.arange(n, device=device)
    xs = pos.to(dtype)
    xe = xs + P
    if r is not None and n > 0:
        end_idx = (pos + P).clamp(max=T - 1)
        xs = xs + P * (torch.sigmoid(r[0, pos].to(dtype)) - 0.5)
        xe = xe + P * (torch.sigmoid(r[1, end_idx].to(dtype)) - 0.5)
    xs = xs.clamp(0, T)
    xe = xe.clamp(0, T)
    outer_s = (xs - inflation * P).clamp(0, T)
    outer_e = (xe + inflation * P).clamp(0, T)
    return Proposals(xs, xe, outer_s, outer_e, pos, torch.full_like(pos, P))


def build_proposals(T: int, regressions: Mapping[int, torch.Tensor | None],
                    inflation: float = 0.25, dtype: torch.dtype | None = None,
                    device: torch.device | str | None = None) -> Proposals:
    """Proposals of every anchor size in ``regressions`` ({P: r (2, T) or None}), concatenated
    in ascending P order."""
    parts = [decode_anchor(T, int(P), r, inflation, dtype, device)
             for P, r in sorted(regressions.items())]
    if not parts:
        raise ValueError("build_proposals: no anchor sizes given")
    dtypes = {p.start.dtype for p in parts}
    target = dtype or (torch.float64 if torch.float64 in dtypes else parts[0].start.dtype)
    return Proposals(*(torch.cat([getattr(p, f).to(target) if getattr(p, f).is_floating_point()
                                  else getattr(p, f) for p in parts])
                       for f in ("start", "end", "outer_start", "outer_end", "position",
                                 "anchor")))


def contained_range(start: torch.Tensor, end: torch.Tensor, T: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Snippets contained in [start, end): indices first .. last-1, i.e. i + 0.5 in [start, end).

    Returns (first, last) long tensors (N,), clamped to [0, T]; empty when first >= last.
    """
    with torch.no_grad():
        first = torch.ceil(start.detach() - 0.5).long().clamp(0, T)
        last = torch.ceil(end.detach() - 0.5).long().clamp(0, T)
    return first, torch.maximum(first, last)


def count_in_range(mask: torch.Tensor, first: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """Number of True entries of ``mask`` in rows [first, last) per proposal.

    Args:
        mask: (T,) or (T, K) boolean.
        first, last: (N,) long from ``contained_range``.
    Returns:
        (N,) or (N, K) long counts.
    """
    m = mask.long()
    prefix = torch.cat([torch.zeros_like(m[:1]), torch.cumsum(m, 0)], 0)
    return prefix[last] - prefix[first]


def _sparse_levels(T: int) -> int:
    return max(T, 1).bit_length()  # levels 0 .. floor(log2 T)


def one_per_position(first: torch.Tensor, last: torch.Tensor, scores: torch.Tensor,
                     valid: torch.Tensor, T: int) -> torch.Tensor:
    """Keep, for every snippet position and class, the best proposal containing it.

    A proposal j of class k (valid[j, k]) is kept iff at some contained position t it has the
    highest score among the valid proposals of class k containing t (ties: all tied are kept).

    Vectorised over proposals and classes: the per-position maximum M[t, k] is "painted" with
    a sparse table (each range [first, last) is covered by two blocks of length 2^floor(log2 len),
    written with scatter_reduce amax at its level, then pushed down level by level); a proposal
    is kept iff min_{t in range} M[t, k] <= its score, a range-min sparse-table query.

    Args:
        first, last: (N,) long contained-snippet ranges (``contained_range``).
        scores: (N, K) scores (higher is better). valid: (N, K) bool survivors.
        T: number of snippets.
    Returns:
        (N, K) bool keep mask (a subset of ``valid``). Computed without gradients.
    """
    with torch.no_grad():
        n, k = scores.shape
        valid = valid & (last > first)[:, None]
        if n == 0 or T == 0 or not bool(valid.any()):
            return torch.zeros_like(valid)
        s = torch.where(valid, scores.detach().double(), torch.tensor(-torch.inf,
                        dtype=torch.float64, device=scores.device))
        ok = last > first
        first = torch.where(ok, first, torch.zeros_like(first))  # dummy in-range rows (s = -inf)
        last = torch.where(ok, last, torch.ones_like(last))
        length = last - first
        # floor(log2(length)) exactly, via integer bit length
        level = torch.zeros_like(length)
        for b in range(1, _sparse_levels(T)):
            level += (length >= (1 << b)).long()
        n_lev = _sparse_levels(T)
        block = torch.pow(2, level)
        idx_a = level * T + first
        idx_b = level * T + (last - block)
        table = torch.full((n_lev * T, k), -torch.inf, dtype=torch.float64, device=s.device)
        table.scatter_reduce_(0, idx_a[:, None].expand(n, k), s, "amax", include_self=True)
        table.scatter_reduce_(0, idx_b[:, None].expand(n, k), s, "amax", include_self=True)
        table = table.view(n_lev, T, k)
        for lev in range(n_lev - 1, 0, -1):  # push each 2^lev block onto its two halves
            half = 1 << (lev - 1)
            cur = table[lev]
            table[lev - 1] = torch.maximum(table[lev - 1], cur)
            table[lev - 1, half:] = torch.maximum(table[lev - 1, half:], cur[:T - half])
        best = table[0]  # (T, K): max score over proposals containing t
        # range-min sparse table over `best`
        mins = [best]
        for lev in range(1, n_lev):
            prev = mins[-1]
            half = 1 << (lev - 1)
            cur = prev.clone()
            cur[:T - half] = torch.minimum(prev[:T - half], prev[half:])
            mins.append(cur)
        mt = torch.stack(mins).view(n_lev * T, k)
        rmin = torch.minimum(mt[idx_a], mt[idx_b])
        return valid & (rmin <= s)


@dataclass
class ScoredProposals:
    """Scored (proposal, class) pairs of one stream of one video; N rows.

    segments: (N, 2) regressed [start, end] in snippets. scores: (N,) confidence (-objective).
    labels: (N,) class index. anchor: (N,) anchor size P. position: (N,) anchor start index.
    L, L_oic, Lc: (N,) the Eq. 4 loss and its terms (Lc repeats across classes of a proposal).
    loss: training mode only -- mean objective over the one-per-position kept rows (a
    differentiable scalar), None when nothing survives. kept: (N,) bool one-per-position mask
    (training, or test with ``one_per_position_at_test``), else None. n_kept: rows kept.
    n_proposals: proposals before filtering (0 when T is shorter than every anchor).
    """

    segments: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    anchor: torch.Tensor
    position: torch.Tensor
    L: torch.Tensor
    L_oic: torch.Tensor
    Lc: torch.Tensor
    loss: torch.Tensor | None = None
    kept: torch.Tensor | None = None
    n_kept: int = 0
    n_proposals: int = 0

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def empty(self) -> bool:
        return len(self) == 0


def score_video(
    features: torch.Tensor,
    scp: torch.Tensor,
    regressions: Mapping[int, torch.Tensor | None],
    classes: torch.Tensor,
    attention: torch.Tensor | None = None,
    attention_threshold: float | None = None,
    alpha: float = 0.6,
    scp_threshold: float = 0.1,
    score_terms: ScoreTerms = "both",
    attention_mode: AttentionMode = "drop",
    lc_features: LcFeatures = "raw",
    training: bool = False,
    one_per_position_at_test: bool = False,
    inflation: float = 0.25,
    eps: float = 1e-6,
    chunk_size: int = 1024,
    lc_method: LcMethod = "auto",
    lc_integral: PrefixIntegral | None = None,
) -> ScoredProposals:
    """Decode, filter and score every proposal of one stream of one video, for several classes.

    Args:
        features: (T, D) snippet features of the stream.
        scp: (C, T) snippet class probabilities.
        regressions: {anchor size P: regression output r (2, T), or None for no regression}.
        classes: (K,) long class indices to evaluate (e.g. ``select_classes(video_scores)``
            or the ground-truth video labels in training).
        attention: (T,) attention, used at test time when ``attention_threshold`` is set.
        attention_mode: ``"drop"`` -- drop proposals containing a snippet with attention below
            the threshold; ``"zero_scp"`` -- zero the SCP of such snippets before filtering and
            scoring (with ``scp_threshold > 0`` such proposals are then dropped too; what differs
            from ``"drop"`` is that zeroed snippets lower the outer means of L_OIC);
            ``"none"`` -- ignore attention.
        scp_threshold: drop a proposal for class k if it contains a snippet with S[k] below it.
        score_terms: ``"both"`` (score = -L), ``"oic"`` (-L_OIC) or ``"coherence"`` (-Lc); the
            training objective is the same term.
        lc_features: ``"raw"`` or ``"standardize"`` features for Lc.
        training: compute ``loss`` = mean objective over the one-per-position kept rows.
        one_per_position_at_test: also apply the one-per-position selection when not training
            (then only kept rows are returned).
        lc_method, chunk_size: how Lc is computed (see ``acn.model.coherence.coherence_term``).
        lc_integral: a prebuilt ``feature_integral(features, lc_features)`` to reuse (it
            caches its Gram band), e.g. when the same video is scored more than once.
    Returns:
        ``ScoredProposals`` with one row per surviving (proposal, class) pair, ordered by
        proposal (anchors ascending, then position) and then by the order of ``classes``.
    """
    if features.dim() != 2 or scp.dim() != 2 or scp.shape[1] != features.shape[0]:
        raise ValueError(f"score_video: features (T, D) and scp (C, T) disagree: "
                         f"{tuple(features.shape)} vs {tuple(scp.shape)}")
    T = features.shape[0]
    classes = torch.as_tensor(classes, dtype=torch.long, device=scp.device).reshape(-1)
    r_dtypes = [r.dtype for r in regressions.values() if r is not None]
    dtype = r_dtypes[0] if r_dtypes else (features.dtype if features.is_floating_point()
                                          else torch.get_default_dtype())
    props = build_proposals(T, regressions, inflation=inflation, dtype=dtype,
                            device=features.device) if T > 0 else None
    n_props = 0 if props is None else len(props)
    if n_props == 0 or classes.numel() == 0:
        return _empty(dtype, features.device, n_props)

    s = scp[classes].detach()  # (K, T)
    use_att = attention is not None and attention_threshold is not None and \
        attention_mode != "none"
    low_att = None
    if use_att:
        if attention_mode not in ("drop", "zero_scp"):
            raise ValueError(f"attention_mode must be 'drop', 'zero_scp' or 'none', "
                             f"got {attention_mode!r}")
        low_att = attention.detach().reshape(-1) < attention_threshold
        if attention_mode == "zero_scp":
            s = torch.where(low_att[None, :], torch.zeros_like(s), s)

    # Filtering (no gradients): contains >= 1 snippet centre, no low-SCP snippet, no
    # low-attention snippet (drop mode).
    first, last = contained_range(props.start, props.end, T)
    valid = count_in_range(s.t() < scp_threshold, first, last) == 0  # (N, K)
    valid &= (last > first)[:, None]
    if use_att and attention_mode == "drop":
        valid &= (count_in_range(low_att, first, last) == 0)[:, None]

    # Score only proposals that survive for at least one class.
    rows = torch.nonzero(valid.any(1)).flatten()
    if rows.numel() == 0:
        return _empty(dtype, features.device, n_props)
    if rows.numel() < n_props:
        sub = props.subset(rows)
        valid = valid[rows]
    else:  # all survive: no copies
        sub, rows = props, slice(None)
    if lc_integral is None:
        lc_integral = feature_integral(features, lc_features)
    elif lc_integral.T != T:
        raise ValueError(f"score_video: lc_integral has T={lc_integral.T}, features T={T}")
    per_position = training or one_per_position_at_test
    # without the one-per-position selection, L is formed only for the pairs returned
    terms = proposal_terms(lc_integral, PrefixIntegral(s.t()),
                           sub.outer_start, sub.start, sub.end, sub.outer_end, alpha=alpha,
                           eps=eps, chunk_size=chunk_size, lc_method=lc_method,
                           out_dtype=dtype, combine=per_position)

    kept = loss = None
    if per_position:
        objective = objective_from_terms(terms, score_terms)  # (n, K)
        kept = one_per_position(first[rows], last[rows], -objective, valid, T)
        if training and bool(kept.any()):
            loss = objective[kept].mean()

    select = kept if (kept is not None and not training) else valid
    # flat (proposal, class) indices: 1-D gathers are much cheaper than [j, c] pairs
    K = classes.numel()
    j, c = torch.nonzero(select).unbind(1)  # row-major, as the flat order
    flat = j * K + c  # (an int64 // and % on ~N*K entries cost more than the nonzero)

    def pick(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(-1).index_select(0, flat)

    lc = terms.Lc.index_select(0, j)
    l_oic = pick(terms.L_oic).to(dtype)
    L = pick(terms.L) if terms.L is not None else combine_loss(l_oic[:, None], lc, alpha)[:, 0]
    picked = CoherenceTerms(L_oic=l_oic[:, None], Lc=lc, L=L[:, None])
    return ScoredProposals(
        segments=torch.stack([sub.start.index_select(0, j), sub.end.index_select(0, j)], 1),
        scores=-objective_from_terms(picked, score_terms)[:, 0],
        labels=classes.index_select(0, c),
        anchor=sub.anchor.index_select(0, j),
        position=sub.position.index_select(0, j),
        L=L,
        L_oic=l_oic,
        Lc=lc,
        loss=loss,
        kept=pick(kept) if kept is not None else None,
        n_kept=int(kept.sum()) if kept is not None else 0,
        n_proposals=n_props,
    )


def _empty(dtype: torch.dtype, device, n_props: int) -> ScoredProposals:
    z = torch.zeros(0, dtype=dtype, device=device)
    zl = torch.zeros(0, dtype=torch.long, device=device)
    return ScoredProposals(segments=z.reshape(0, 2), scores=z, labels=zl, anchor=zl,
                           position=zl, L=z, L_oic=z, Lc=z, loss=None, kept=None, n_kept=0,
                           n_proposals=n_props)
