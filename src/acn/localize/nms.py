"""Class-aware non-maximum suppression for 1-D segments: greedy NMS and Soft-NMS.

Both accept torch tensors or numpy arrays and return the same kind. Suppression is
class-aware: a detection only suppresses (or decays) detections with the same label; with
``labels=None`` every detection is in one class. Each greedy step is one vectorised IoU of the
current winner against all remaining candidates, so the Python loop runs once per *kept*
detection (greedy) or per selected detection (Soft-NMS), never over pairs.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from acn.localize.geometry import iou_from_bounds

__all__ = ["nms", "soft_nms", "topk_per_class"]

NmsMethod = Literal["greedy", "soft_gaussian", "soft_linear"]


def _as_tensor(x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x)))


def _prepare(segments, scores, labels):
    """Validate shapes; return (seg float, scores float, labels long) tensors and whether numpy."""
    is_numpy = not isinstance(segments, torch.Tensor)
    seg = _as_tensor(segments)
    sc = _as_tensor(scores)
    # Compute in float64 when the caller gave numpy (no precision loss), else keep the dtype.
    fdtype = torch.float64 if is_numpy or not seg.is_floating_point() else seg.dtype
    seg = seg.to(fdtype).reshape(-1, 2) if seg.numel() else seg.to(fdtype).reshape(0, 2)
    sc = sc.to(device=seg.device, dtype=torch.promote_types(fdtype, sc.dtype)
               if sc.is_floating_point() else fdtype).reshape(-1)
    if sc.shape[0] != seg.shape[0]:
        raise ValueError(f"nms: {seg.shape[0]} segments but {sc.shape[0]} scores")
    if labels is None:
        lab = torch.zeros(seg.shape[0], dtype=torch.long, device=seg.device)
    else:
        lab = _as_tensor(labels).to(device=seg.device, dtype=torch.long).reshape(-1)
        if lab.shape[0] != seg.shape[0]:
            raise ValueError(f"nms: {seg.shape[0]} segments but {lab.shape[0]} labels")
    return seg, sc, lab, is_numpy


def _sort_desc(scores: torch.Tensor) -> torch.Tensor:
    """Indices by score descending; ties keep the lower index first (deterministic)."""
    return torch.sort(scores, descending=True, stable=True).indices


def topk_per_class(scores: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` highest-scoring detections of each label (ties: lower index first).

    Args:
        scores: (N,) scores; labels: (N,) integer labels.
    Returns:
        (M,) long indices into the inputs, M <= N, sorted by score descending.
    """
    order = _sort_desc(scores)
    by_label = torch.sort(labels[order], stable=True).indices
    grouped = order[by_label]
    lab = labels[grouped]
    _, counts = torch.unique_consecutive(lab, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(lab.numel(), device=lab.device) - torch.repeat_interleave(starts, counts)
    chosen = grouped[rank < k]
    return chosen[_sort_desc(scores[chosen])]


def _candidates(sc: torch.Tensor, lab: torch.Tensor, topk: int | None) -> torch.Tensor:
    if topk is not None:
        if topk < 0:
            raise ValueError(f"nms: topk must be >= 0, got {topk}")
        return topk_per_class(sc, lab, topk)
    return _sort_desc(sc)


def _greedy(seg, sc, lab, iou_threshold: float, topk, max_dets) -> torch.Tensor:
    cand = _candidates(sc, lab, topk)
    if cand.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=seg.device)
    limit = cand.numel() if max_dets is None else max_dets
    # Suppression never crosses labels, so each label is an independent greedy run; the
    # global run stopped after `limit` detections keeps the first `limit` of their union in
    # candidate order. Each step is a handful of numpy operations on the label's survivors
    # (torch's per-operation overhead dominated on these short arrays).
    c = cand.cpu()
    s = seg[:, 0].cpu()[c].numpy()
    e = seg[:, 1].cpu()[c].numpy()
    lb = lab.cpu()[c].numpy()
    length = np.maximum(e - s, 0)
    kept: list[np.ndarray] = []
    for label in np.unique(lb):
        idx = np.flatnonzero(lb == label)  # candidate positions, score order
        if idx.size <= _MATRIX_NMS_MAX:
            kept.append(idx[_greedy_matrix(s[idx], e[idx], length[idx], iou_threshold, limit)])
            continue
        alive = idx
        got: list[int] = []
        while alive.size and len(got) < limit:
            i = int(alive[0])
            got.append(i)
            rest = alive[1:]
            # suppress strictly above the threshold (same label by construction)
            alive = rest[~(_iou_row(s[i], e[i], length[i], s[rest], e[rest], length[rest])
                           > iou_threshold)]
        kept.append(np.asarray(got, dtype=np.int64))
    pos = np.sort(np.concatenate(kept))[:limit]
    return cand[torch.from_numpy(pos).to(cand.device)]


# Labels with at most this many candidates are suppressed from one IoU matrix (8 MB of
# float64 at the limit); more fall back to one row of IoUs per kept detection.
_MATRIX_NMS_MAX = 1024


def _iou_row(s0, e0, l0, s, e, length):
    """IoU of segment(s) (s0, e0) of length l0 with (s, e), broadcast; 0 where a segment or
    the union is empty."""
    inter = np.maximum(np.minimum(e0, e) - np.maximum(s0, s), 0)
    union = l0 + length - inter
    valid = (l0 > 0) & (length > 0) & (union > 0)
    return np.where(valid, inter / np.where(valid, union, 1), 0)


def _greedy_matrix(s, e, length, iou_threshold: float, limit: int) -> np.ndarray:
    """Greedy NMS of one label's (n,) candidates in score order, from the (n, n) IoU matrix
    (the same IoU arithmetic as ``_iou_row``): a walk over the candidates that ORs in the
    suppressions of each one kept. Returns the kept positions (at most ``limit``)."""
    sup = _iou_row(s[:, None], e[:, None], length[:, None], s, e, length) > iou_threshold
    removed = np.zeros(len(s), dtype=bool)
    got: list[int] = []
    for k in range(len(s)):
        if removed[k]:
            continue
        got.append(k)
        if len(got) >= limit:
            break
        removed |= sup[k]
    return np.asarray(got, dtype=np.int64)


def _soft(seg, sc, lab, method: str, iou_threshold: float, sigma: float, topk, max_dets,
          min_score: float | None, score_floor: float | None):
    cand = _candidates(sc, lab, topk)
    s, e, lb = seg[cand, 0], seg[cand, 1], lab[cand]
    cur = sc[cand].clone()
    if cur.numel() == 0:
        return cand, cur
    # Decay multiplies (score - floor): for non-negative scores floor = 0 is classic Soft-NMS;
    # for negative scores (ACN's -L can be negative) decay moves a score towards the floor
    # instead of upwards.
    floor = float(min(0.0, cur.min().item())) if score_floor is None else float(score_floor)
    w = (cur - floor).clamp_min(0)
    alive = torch.arange(cand.numel(), device=seg.device)
    picked: list[int] = []
    new_scores: list[torch.Tensor] = []
    limit = cand.numel() if max_dets is None else max_dets
    while alive.numel() > 0 and len(picked) < limit:
        j = int(torch.argmax(w[alive]))  # first maximum = highest original rank on ties
        p = int(alive[j])
        value = w[p] + floor
        if min_score is not None and value.item() < min_score:
            break  # p is the best remaining, so nothing else can pass
        picked.append(p)
        new_scores.append(value)
        alive = torch.cat([alive[:j], alive[j + 1:]])
        iou = iou_from_bounds(s[p], e[p], s[alive], e[alive])
        if method == "soft_gaussian":
            decay = torch.exp(-(iou * iou) / sigma)
        else:  # soft_linear
            decay = torch.where(iou > iou_threshold, 1.0 - iou, torch.ones_like(iou))
        decay = torch.where(lb[alive] == lb[p], decay, torch.ones_like(decay))
        w[alive] = w[alive] * decay
    idx = torch.as_tensor(picked, dtype=torch.long, device=seg.device)
    scores_out = torch.stack(new_scores) if new_scores else cur[:0]
    return cand[idx], scores_out


def nms(
    segments,
    scores,
    labels=None,
    iou_threshold: float = 0.4,
    method: NmsMethod = "greedy",
    sigma: float = 0.5,
    topk: int | None = None,
    max_dets: int | None = None,
    min_score: float | None = None,
    score_floor: float | None = None,
):
    """Class-aware NMS over 1-D segments.

    Args:
        segments: (N, 2) ``[start, end]`` (any unit), torch tensor or numpy array.
        scores: (N,) confidence, higher is better (may be negative).
        labels: (N,) integer class labels, or None for class-agnostic suppression.
        iou_threshold: greedy -- a detection is suppressed by a kept one of the same label when
            their IoU is strictly above this; soft_linear -- decay applies above this.
        method: ``"greedy"``, ``"soft_gaussian"`` (score *= exp(-IoU^2/sigma)) or
            ``"soft_linear"`` (score *= 1 - IoU when IoU > iou_threshold).
        sigma: Gaussian Soft-NMS width.
        topk: keep at most this many highest-scoring candidates *per label* before NMS.
        max_dets: stop after this many detections in total (the result is then the top
            ``max_dets`` of the full NMS result).
        min_score: Soft-NMS only: stop once the best remaining decayed score is below this.
        score_floor: Soft-NMS only: decay acts on ``score - floor``; default ``min(0, min score)``
            so that classic non-negative scores decay towards 0 and negative scores stay ordered.
    Returns:
        greedy: (K,) int64 indices into the inputs, by score descending.
        soft_*: ``(indices (K,), new_scores (K,))`` in selection order (new scores descending).
        Numpy in gives numpy out; torch in gives torch out (same device).
    """
    if method not in ("greedy", "soft_gaussian", "soft_linear"):
        raise ValueError(f"nms: unknown method {method!r}")
    if max_dets is not None and max_dets < 0:
        raise ValueError(f"nms: max_dets must be >= 0, got {max_dets}")
    if method == "soft_gaussian" and sigma <= 0:
        raise ValueError(f"nms: sigma must be > 0, got {sigma}")
    seg, sc, lab, is_numpy = _prepare(segments, scores, labels)
    if method == "greedy":
        keep = _greedy(seg, sc, lab, iou_threshold, topk, max_dets)
        return keep.cpu().numpy() if is_numpy else keep
    keep, new_scores = _soft(seg, sc, lab, method, iou_threshold, sigma, topk, max_dets,
                             min_score, score_floor)
    if is_numpy:
        return keep.cpu().numpy(), new_scores.cpu().numpy()
    return keep, new_scores.to(scores.dtype if isinstance(scores, torch.Tensor)
                               and scores.is_floating_point() else new_scores.dtype)


def soft_nms(segments, scores, labels=None, method: Literal["gaussian", "linear"] = "gaussian",
             sigma: float = 0.5, iou_threshold: float = 0.4, **kwargs):
    """Soft-NMS shorthand: ``nms(..., method="soft_" + method)``; returns (indices, new_scores)."""
    return nms(segments, scores, labels, iou_threshold=iou_threshold, method=f"soft_{method}",
               sigma=sigma, **kwargs)
