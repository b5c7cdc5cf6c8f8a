"""The official THUMOS14 detection protocol (``TH14evalDet.m``), vectorised over thresholds.

Ported from the MATLAB evaluation kit of the THUMOS'14 challenge: ``TH14evalDet.m`` (reads
files, loops over classes), its ``TH14eventdetpr`` (matching, precision/recall, AP) and
``intervaloverlapvalseconds.m`` (overlap), as found in the challenge kit and in repositories
that vendor it (e.g. the ``TH14evalDet_Updated.m`` copies with ``unsortConf``/``unsortFlag``,
and the Python re-creations in the TCN and other W-TAL code). Every detail matched here:

* Overlap (``intervaloverlapvalseconds``, ``normtype=0``): ``iw = min(ends) - max(starts)``;
  if ``iw > 0`` the overlap is ``iw / (max(ends) - min(starts))`` (intersection over the hull,
  which is the union when they intersect), else 0. Touching or zero-length segments never
  overlap.
* Per class, per video (videos in sorted-name order, MATLAB ``unique``): the class's
  detections of the video sorted by confidence descending, stably (MATLAB ``sort``), so equal
  scores keep their input order.
* Matching is driven by the ground truth, not by the detections: for each ground-truth
  segment of the class in the video, in file order (here: ``Video.segments`` order, which
  the W-TALC arrays keep from the official files), take among the detections not yet matched
  the one with the maximum overlap (``max``: the first, i.e. highest-ranked, among equal
  overlaps); if that overlap is strictly greater than the threshold (``vm > overlapthresh``),
  the detection becomes a true positive and is no longer free. A ground truth whose best free
  detection is below the threshold stays unmatched. So a lower-scored detection with a better
  overlap can take a ground truth from a higher-scored one.
* Ambiguous segments (``Ambiguous_<subset>.txt``, class-less, per video): an unmatched
  detection whose overlap with any ambiguous segment of its video is positive (``iw > 0``) is
  removed - neither true nor false positive. Matched detections stay true positives.
* Ranking across videos: the per-video lists are concatenated in video-name order and sorted
  stably by confidence descending; equal scores thus rank by video name, then by the within-
  video order above (implemented as one lexicographic sort).
* ``tp = cumsum(is_tp)``, ``fp = cumsum(is_fp)`` over the kept detections,
  ``prec = tp ./ (tp + fp)``; AP is non-interpolated (``prap``): the sum of the precision at
  each true positive, divided by ``npos``, the number of ground-truth segments of the class in
  the subset.
* A class with no detection has AP 0. The mAP is the mean over all classes of the detection
  class list. The official code asserts ``npos > 0`` for each; here a class without ground
  truth gets NaN and :func:`acn.evaluate.evaluate` leaves it out of the mean with a warning.
"""

from __future__ import annotations

import numpy as np

from acn.evaluate.grouping import grouped, rank_order
from acn.evaluate.tiou import intersects, tiou_matrix


def match_gt_driven(overlap: np.ndarray, tious: np.ndarray) -> np.ndarray:
    """Matched detections of one video and class under the THUMOS14 rule.

    ``overlap`` is ``(G, D)``: ground truths (rows, in file order) by detections (columns, in
    rank order). Returns ``(T, D)`` bool: detection ``d`` matched at ``tious[t]``.
    """
    tious = np.asarray(tious, dtype=np.float64)
    n_gt, n_det = overlap.shape
    matched = np.zeros((len(tious), n_det), dtype=bool)
    if n_gt == 0 or n_det == 0:
        return matched
    above = overlap[:, None, :] > tious[None, :, None]  # (G, T, D)
    # Where every detection exceeds the threshold with at most one ground truth, no ground
    # truth can take another's detection: each ground truth simply takes its best-overlapping
    # detection (the first among equals) if that exceeds the threshold.
    simple = above.sum(axis=0).max(axis=1) <= 1  # (T,)
    ts = np.flatnonzero(simple)
    if len(ts):
        best = overlap.argmax(axis=1)  # (G,)
        hit = above[np.arange(n_gt)[:, None], ts[None, :], best[:, None]]  # (G, T')
        g_idx, t_idx = np.nonzero(hit)
        matched[ts[t_idx], best[g_idx]] = True

    # Elsewhere the sequential loop over ground truths, vectorised over those thresholds.
    ts = np.flatnonzero(~simple)
    if len(ts):
        sub = tious[ts]
        free = np.ones((len(ts), n_det), dtype=bool)
        t_range = np.arange(len(ts))
        # A ground truth whose best overlap does not exceed the lowest threshold matches
        # nothing and changes no state: skip it.
        for g in np.flatnonzero(overlap.max(axis=1) > sub.min()).tolist():
            masked = np.where(free, overlap[g][None, :], -np.inf)
            pick = masked.argmax(axis=1)  # first (highest-ranked) among equal overlaps
            hit = masked[t_range, pick] > sub  # strict, as the official ``vm > overlapthresh``
            free[t_range[hit], pick[hit]] = False
        matched[ts] = ~free
    return matched


def non_interpolated_ap(tp: np.ndarray, keep: np.ndarray, npos: int) -> np.ndarray:
    """THUMOS14 AP per row: sum of precision at true positives over ``npos``.

    ``tp`` and ``keep`` are ``(T, D)`` bool in rank order; ``keep`` marks detections that count
    (true positives and false positives; removed ambiguous detections are not kept).
    """
    if tp.shape[1] == 0 or npos == 0:
        return np.zeros(tp.shape[0])
    cum_tp = np.cumsum(tp, axis=1, dtype=np.float64)
    cum_kept = np.cumsum(keep, axis=1, dtype=np.float64)
    precision = cum_tp / np.maximum(cum_kept, 1.0)  # only read where tp (then cum_kept >= 1)
    return np.sum(np.where(tp, precision, 0.0), axis=1) / float(npos)


def average_precision(gt_video: np.ndarray, gt_label: np.ndarray, gt_start: np.ndarray,
                      gt_end: np.ndarray, det_video: np.ndarray, det_label: np.ndarray,
                      det_start: np.ndarray, det_end: np.ndarray, det_score: np.ndarray,
                      n_classes: int, tious: np.ndarray, amb_video: np.ndarray | None = None,
                      amb_start: np.ndarray | None = None,
                      amb_end: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """AP per class and threshold under the official THUMOS14 protocol.

    Videos and classes are integer codes; video codes must follow sorted video-name order
    (they break ties between equal scores, as in the MATLAB code). Times in seconds.
    Ground-truth rows keep their order within a video (it drives the matching). ``amb_*``
    are the ambiguous segments with their video codes. Returns ``(ap, npos)``: ``ap`` is
    ``(n_classes, T)`` with NaN for classes without ground truth.
    """
    tious = np.asarray(tious, dtype=np.float64)
    n_t = len(tious)
    gt_label = np.asarray(gt_label, dtype=np.int64)
    det_label = np.asarray(det_label, dtype=np.int64)
    npos = np.bincount(gt_label, minlength=n_classes)

    order = rank_order(det_video, det_score)
    d_video, d_label = np.asarray(det_video, dtype=np.int64)[order], det_label[order]
    d_start = np.asarray(det_start, dtype=np.float64)[order]
    d_end = np.asarray(det_end, dtype=np.float64)[order]
    matched = np.zeros((n_t, len(order)), dtype=bool)
    ambiguous = np.zeros(len(order), dtype=bool)

    # Ambiguous segments do not depend on the class: flag every detection once per video.
    if amb_video is not None and len(amb_video):
        a_perm, a_spans = grouped(np.asarray(amb_video, dtype=np.int64))
        a_start = np.asarray(amb_start, dtype=np.float64)[a_perm]
        a_end = np.asarray(amb_end, dtype=np.float64)[a_perm]
        v_perm, v_spans = grouped(d_video)
        for v, (lo, hi) in v_spans.items():
            if v in a_spans:
                alo, ahi = a_spans[v]
                cols = v_perm[lo:hi]
                ambiguous[cols] = intersects(d_start[cols], d_end[cols], a_start[alo:ahi],
                                             a_end[alo:ahi]).any(axis=1)

    g_perm, g_spans = grouped(np.asarray(gt_video, dtype=np.int64) * n_classes + gt_label)
    g_start = np.asarray(gt_start, dtype=np.float64)[g_perm]
    g_end = np.asarray(gt_end, dtype=np.float64)[g_perm]
    d_perm, d_spans = grouped(d_video * n_classes + d_label)
    for key, (lo, hi) in d_spans.items():
        if key not in g_spans:
            continue
        glo, ghi = g_spans[key]
        cols = d_perm[lo:hi]
        overlap = tiou_matrix(g_start[glo:ghi], g_end[glo:ghi], d_start[cols], d_end[cols],
                              union="hull")
        matched[:, cols] = match_gt_driven(overlap, tious)

    keep = matched | ~ambiguous[None, :]
    ap = np.full((n_classes, n_t), np.nan)
    c_perm, c_spans = grouped(d_label)
    for c in range(n_classes):
        if npos[c] == 0:
            continue
        lo, hi = c_spans.get(c, (0, 0))
        cols = c_perm[lo:hi]
        ap[c] = non_interpolated_ap(matched[:, cols], keep[:, cols], int(npos[c]))
    return ap, npos
