"""Proposals beyond fixed anchors: multi-threshold CAS segments, regressed and scored by -L.

Segment boundaries are whole snippets, or (``acn.cas_subsnippet``) where the CAS crosses each
level between two snippets.

A CAS segment of length L (snippets) is regressed by the anchor network whose size P is
closest to L in log scale (its start offset read at the segment's start, its end offset at
its end, Eqs. 5-6 with that P), inflated by ``inflation * length`` and scored with the same
coherence loss as the anchor proposals, so both sources rank on one scale.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from acn.model.coherence import (PrefixIntegral, feature_integral, objective_from_terms,
                                 oic_loss, proposal_terms)


def cas_candidates(scp: np.ndarray, thresholds: Sequence[float], min_length: int = 1,
                   subsnippet: bool = False
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Connected runs of each row of ``scp`` (K, T) above relative levels.

    A level t means ``min + t * (max - min)`` of the row over the video. Returns
    ``(rows (N,), starts (N,), ends (N,))``: run n covers snippets [starts[n], ends[n]) of
    row rows[n] (int); duplicates across levels are removed. ``min_length`` counts whole
    snippets of the run.

    With ``subsnippet`` the boundaries are where the row crosses the level, read off the
    straight line between the two snippets' centres on either side (float, snippets): a
    snippet's value sits at its centre ``i + 0.5``, so a run ``[s, e)`` starts in
    ``[s - 0.5, s + 0.5)`` and ends in ``(e - 0.5, e + 0.5]``; a run touching the video's
    start or end keeps 0 or T there. A snippet that an action covers in part responds in part,
    so the crossing places the boundary inside it, where whole-snippet runs are off by up to
    half a snippet on each side (most of a short action's tIoU).
    """
    scp = np.asarray(scp, dtype=np.float64)
    K, T = scp.shape
    if K == 0 or T == 0:
        z = np.zeros(0, dtype=np.int64)
        bounds = z.astype(np.float64) if subsnippet else z
        return z, bounds, bounds
    th = np.asarray(thresholds, dtype=np.float64)
    lo, hi = scp.min(1, keepdims=True), scp.max(1, keepdims=True)
    levels = lo + th[None, :] * (hi - lo)                       # (K, L)
    mask = scp[:, None, :] > levels[:, :, None]                 # (K, L, T)
    edges = np.diff(np.pad(mask.reshape(-1, T).astype(np.int8), ((0, 0), (1, 1))), axis=1)
    flat, starts = np.nonzero(edges == 1)
    _, ends = np.nonzero(edges == -1)
    rows, level = flat // len(th), flat % len(th)
    keep = (ends - starts) >= min_length
    rows, level, starts, ends = rows[keep], level[keep], starts[keep], ends[keep]
    if not subsnippet:
        trip = np.unique(np.stack([rows, starts, ends], 1), axis=0)
        return trip[:, 0], trip[:, 1], trip[:, 2]
    lv = levels[rows, level]
    st, en = starts.astype(np.float64), ends.astype(np.float64)
    # scp[s - 1] <= level < scp[s]: the crossing is a fraction [0, 1) of the way between
    # the centres s - 0.5 and s + 0.5 (and mirrored at the end)
    a = starts > 0
    below, above = scp[rows[a], starts[a] - 1], scp[rows[a], starts[a]]
    st[a] += (lv[a] - below) / (above - below) - 0.5
    b = ends < T
    inside, after = scp[rows[b], ends[b] - 1], scp[rows[b], ends[b]]
    en[b] += (inside - lv[b]) / (inside - after) - 0.5
    trip = np.unique(np.stack([rows.astype(np.float64), st, en], 1), axis=0)
    return trip[:, 0].astype(np.int64), trip[:, 1], trip[:, 2]


def smoothed_scp(scp: np.ndarray, fraction: float) -> np.ndarray:
    """``(K, T)`` rows of ``scp`` averaged over a sliding window of ``fraction`` of the video
    (``max(1, round(fraction * T))`` snippets, centred; the ends repeat the first and last
    value), for ``acn.long_candidates``: where an activity fills most of a video its CAS dips
    here and there, and only the smoothed CAS stays above a level over the whole of it."""
    a = np.asarray(scp, dtype=np.float32)
    return window_mean(a, max(1, int(round(fraction * a.shape[1]))))


def window_mean(scp: np.ndarray, k: int) -> np.ndarray:
    """``(K, T)`` float32 rows of ``scp`` averaged over a centred window of ``k`` snippets
    (the ends repeat the first and last value)."""
    a = np.asarray(scp, dtype=np.float32)
    K, T = a.shape
    if k <= 1 or K == 0 or T == 0:
        return a.copy()
    x = torch.from_numpy(np.ascontiguousarray(a))[:, None, :]         # (K, 1, T)
    x = torch.nn.functional.pad(x, (k // 2, k - 1 - k // 2), mode="replicate")
    return torch.nn.functional.avg_pool1d(x, k, stride=1)[:, 0].numpy()


def valley_depth(profile: np.ndarray, rows: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                 chunk: int = 1 << 20) -> np.ndarray:
    """The deepest valley of each segment's row of ``profile`` inside it, relative to the
    segment's peak (``localize.valley_weight``): a coherent action is one hump of its class's
    CAS; a segment whose CAS falls and rises again inside it spans two instances (or an
    instance and something else), where the sub-segments on either side are the better
    proposals.

    For the snippets ``x`` a segment overlaps (``floor(start)`` to ``ceil(end)``, at least
    one), the valley at snippet t is ``min(max x[..t], max x[t..]) - x[t]``; the result is the
    largest over t divided by ``max x`` (0 where that is not positive). A segment whose
    profile only rises, only falls, or rises then falls has depth 0.

    profile: ``(K, T)``; rows: ``(N,)`` int rows of ``profile``; starts/ends: ``(N,)``
    snippets (float). Returns ``(N,)`` float64 in [0, 1]. Segments are gathered in padded
    blocks of similar length (at most ``chunk`` values each), not looped over."""
    x_all = np.asarray(profile, dtype=np.float64)
    T = x_all.shape[1]
    rows = np.asarray(rows, dtype=np.int64)
    if T == 0 or len(rows) == 0:
        return np.zeros(len(rows))
    first = np.clip(np.floor(np.asarray(starts, dtype=np.float64)).astype(np.int64), 0, T - 1)
    stop = np.clip(np.ceil(np.asarray(ends, dtype=np.float64)).astype(np.int64), first + 1, T)
    n = stop - first
    out = np.zeros(len(rows))
    order = np.argsort(n, kind="stable")
    ns = n[order]
    i = 0
    while i < len(order):
        # the longest run of (sorted) segments whose padded block stays within chunk values
        size = np.arange(1, len(order) - i + 1) * ns[i:]  # nondecreasing
        k = max(1, int(np.searchsorted(size, chunk, side="right")))
        take, width = order[i:i + k], int(ns[i + k - 1])
        i += k
        offs = np.arange(width)
        valid = offs[None] < n[take, None]
        x = x_all[rows[take, None], np.minimum(first[take, None] + offs[None], T - 1)]
        x = np.where(valid, x, -np.inf)  # padding: never a side's maximum
        rise = np.maximum.accumulate(x, axis=1)
        fall = np.maximum.accumulate(x[:, ::-1], axis=1)[:, ::-1]
        depth = np.where(valid, np.minimum(rise, fall) - np.where(valid, x, 0.0), 0.0).max(1)
        peak = rise[:, -1]
        out[take] = np.where(peak > 0, depth / np.where(peak > 0, peak, 1.0), 0.0)
    return np.clip(out, 0.0, 1.0)


def regress_segments(starts: torch.Tensor, ends: torch.Tensor, T: int,
                     regressions: Mapping[int, torch.Tensor | None]) -> tuple[torch.Tensor, torch.Tensor]:
    """Move segment boundaries with the nearest-size anchor network (Eqs. 5-6).

    starts, ends: (N,) snippets; regressions: {P: r (2, T) or None}. Returns regressed
    (start, end), clamped to [0, T] with end >= start.
    """
    s, e = starts.to(torch.float64), ends.to(torch.float64)
    anchors = sorted(a for a, r in regressions.items() if r is not None)
    if not anchors or s.numel() == 0:
        return s, e
    P = torch.tensor(anchors, dtype=torch.float64)
    length = (e - s).clamp_min(1.0)
    pick = (length.log()[:, None] - P.log()[None, :]).abs().argmin(1)   # (N,)
    r = torch.stack([regressions[a].to(torch.float64) for a in anchors])  # (A, 2, T)
    si = s.long().clamp(0, T - 1)
    ei = e.long().clamp(0, T - 1)
    p = P[pick]
    s2 = s + p * (torch.sigmoid(r[pick, 0, si]) - 0.5)
    e2 = e + p * (torch.sigmoid(r[pick, 1, ei]) - 0.5)
    s2, e2 = s2.clamp(0, T), e2.clamp(0, T)
    return s2, torch.maximum(e2, s2)


def score_segments(features: torch.Tensor | PrefixIntegral, scp: torch.Tensor,
                   labels: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor,
                   inflation: float = 0.25, alpha: float = 0.6, score_terms: str = "both",
                   lc_features: str = "raw") -> torch.Tensor:
    """Scores (-objective) of N arbitrary segments, each for its own class.

    features: (T, D), or a prebuilt ``feature_integral(features, lc_features)`` to reuse
    (``lc_features`` is then ignored); scp: (C, T); labels: (N,) class index of each segment;
    starts/ends: (N,) snippets. The outer area is ``inflation * length`` on each side, clamped
    to the video.
    """
    pi = features if isinstance(features, PrefixIntegral) else None
    T = pi.T if pi is not None else features.shape[0]
    if starts.numel() == 0:
        return torch.zeros(0, dtype=torch.float64)
    classes, inv = torch.unique(labels, return_inverse=True)
    s, e = starts.to(torch.float64), ends.to(torch.float64)
    pad = inflation * (e - s)
    if pi is None:
        pi = feature_integral(features, lc_features)
    terms = proposal_terms(pi, scp[classes], (s - pad).clamp(0, T), s, e, (e + pad).clamp(0, T),
                           alpha=alpha, out_dtype=torch.float64)
    obj = objective_from_terms(terms, score_terms)   # (N, K)
    return -obj[torch.arange(len(s)), inv]


def attention_probability(attention: np.ndarray) -> np.ndarray:
    """``(T,)`` sigmoid of the base model's raw attention logits: its class-agnostic
    probability that a snippet is action (float64)."""
    a = np.asarray(attention, dtype=np.float64)
    # written with exp of a non-positive number: no overflow for logits of any size
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def attention_contrast(attention: np.ndarray, starts: torch.Tensor, ends: torch.Tensor,
                       inflation: float = 0.25) -> torch.Tensor:
    """The outer-inner contrast of the attention (``localize.attention_weight``): for each of
    N segments, the mean of :func:`attention_probability` over ``[start, end)`` minus its
    mean over the outer area ``inflation * length`` on each side (clamped to the video). It is
    -L_OIC (Eq. 1) with the attention in place of the class's SCP: the class-agnostic
    evidence that the segment is an action and its surroundings are not. A segment covering
    the whole video has no surroundings, so no such evidence: its contrast is 0. (L_OIC
    takes the missing outer mean as 0, which would make this the mean attention: with
    ``localize.whole_video: scored`` that lifted every whole-video proposal by its attention
    alone, so that "scored" imitated "first" a little worse (53.3 against 54.0 mAP@0.5 on the
    ActivityNet-like family member 0) and was chosen in its place on a held-out member.)

    attention: ``(T,)`` raw attention logits; starts/ends: ``(N,)`` snippets (float).
    Returns ``(N,)`` float64 in [-1, 1]."""
    T = len(attention)
    s, e = starts.to(torch.float64), ends.to(torch.float64)
    if s.numel() == 0:
        return torch.zeros(0, dtype=torch.float64)
    pad = inflation * (e - s)
    prob = torch.from_numpy(attention_probability(attention))[None]  # (1, T)
    contrast = -oic_loss(prob, (s - pad).clamp(0, T), s, e, (e + pad).clamp(0, T))[:, 0]
    return torch.where((s <= 0) & (e >= T), torch.zeros_like(contrast), contrast)


def scp_thresholds(scp: torch.Tensor, classes: torch.Tensor, threshold: float,
                   mode: str) -> torch.Tensor | float:
    """The SCP filtering threshold per selected class: ``absolute`` compares the SCP with
    ``threshold`` itself (paper); ``relative`` with ``threshold`` times the class's maximum SCP
    in the video (softmax SCPs of a true action are often far below an absolute 0.1)."""
    if mode == "absolute" or classes.numel() == 0:
        return threshold
    return threshold * scp[classes].max(1).values
