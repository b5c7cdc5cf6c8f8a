"""The ActivityNet detection protocol (mAP at tIoU thresholds), vectorised over thresholds.

Matches ``compute_average_precision_detection`` / ``interpolated_prec_rec`` / ``segment_iou``
of the official ActivityNet ``Evaluation/eval_detection.py`` (activitynet/ActivityNet on
GitHub; also vendored by W-TALC, STPN, BaSNet, ActionFormer), detail by detail:

* Per class, independently. Ground truth and detections of other classes play no part.
* tIoU = ``inter / (len_det + len_gt - inter)`` with ``inter = max(0, min(ends) - max(starts))``
  (``segment_iou``). Deviation: two zero-length segments at the same time give 0/0, which is
  NaN in the official code (and then counts as a match because ``NaN < thr`` is false); here it
  is 0, so a zero-length segment never matches anything.
* Detections of the class are ranked by score, descending. The official code uses
  ``np.argsort(score)[::-1]``, whose order among equal scores depends on numpy's sort
  implementation; here equal scores are broken by video id (ascending), then by input order
  (a stable sort over the detections grouped by sorted video id).
* Each detection in rank order, for each threshold ``thr``: among the ground truths of its own
  video and class, take the one with the highest tIoU that is not yet matched at ``thr``; if
  its tIoU ``>= thr`` (non-strict) the detection is a true positive and locks that ground truth
  at ``thr``, else it is a false positive (also when a higher-tIoU ground truth is already
  locked and the next best is below ``thr``). Among equal tIoUs the ground truth listed first
  in ``Video.segments`` is taken (the official order among ties is again numpy's). Detections
  on videos without ground truth of the class are false positives.
* ``precision = cumsum(tp) / (cumsum(tp) + cumsum(fp))``, ``recall = cumsum(tp) / npos`` with
  ``npos`` the number of ground-truth segments of the class (zero-length ones included: they
  can never be found). AP is the all-point interpolated area: precision made monotone
  (running maximum from the right, after appending 0), summed over the recall increments,
  i.e. ``sum_i (rec_i - rec_{i-1}) * max_{j >= i} prec_j``.
* A class with ground truth but no detection has AP 0. A class without ground truth in the
  evaluated subset has no AP (NaN here); the mAP averages the classes that have ground truth
  (the official ``activity_index`` holds only those).
"""

from __future__ import annotations

import numpy as np

from acn.evaluate.grouping import grouped, rank_order
from acn.evaluate.tiou import tiou_matrix


def match_greedy(iou: np.ndarray, tious: np.ndarray) -> np.ndarray:
    """True positives of ranked detections against one video's ground truth of one class.

    ``iou`` is ``(D, G)``: detections (rows, in rank order) by ground truths (columns, in
    their given order). Returns ``(T, D)`` bool: detection ``d`` matched at ``tious[t]``.
    """
    return match_greedy_gt(iou, tious) >= 0


def match_greedy_gt(iou: np.ndarray, tious: np.ndarray) -> np.ndarray:
    """:func:`match_greedy`, saying which ground truth each true positive takes.

    Returns ``(T, D)`` int64: the column of ``iou`` (ground truth) that detection ``d`` matches
    at ``tious[t]``, or -1 where it is a false positive. The error diagnosis
    (:mod:`acn.evaluate.diagnose`) needs the matched instance, not only the flag.
    """
    tious = np.asarray(tious, dtype=np.float64)
    n_det, n_gt = iou.shape
    tp = np.full((len(tious), n_det), -1, dtype=np.int64)
    if n_det == 0 or n_gt == 0:
        return tp
    # Only detections reaching the lowest threshold with some ground truth can match; all
    # others are false positives at every threshold and change nothing.
    rows = np.flatnonzero(iou.max(axis=1) >= tious.min())
    reach = iou[rows][:, None, :] >= tious[None, :, None]  # (R, T, G) candidate ground truths
    n_cand = reach.sum(axis=2)  # (R, T)
    simple = n_cand.max(axis=0, initial=0) <= 1  # (T,)

    # Where no detection has two candidates, the greedy reduces to: each ground truth goes to
    # the first detection (in rank order) that reaches it. Vectorised over those thresholds.
    ts = np.flatnonzero(simple)
    if len(ts):
        t_idx, r_idx = np.nonzero(n_cand[:, ts].T == 1)  # sorted by threshold, then rank
        g_idx = reach[r_idx, ts[t_idx], :].argmax(axis=1)
        _, first = np.unique(t_idx * n_gt + g_idx, return_index=True)
        tp[ts[t_idx[first]], rows[r_idx[first]]] = g_idx[first]

    # Elsewhere, the sequential greedy, vectorised over the remaining thresholds.
    ts = np.flatnonzero(~simple)
    if len(ts):
        locked = np.zeros((len(ts), n_gt), dtype=bool)
        t_range = np.arange(len(ts))
        for r in np.flatnonzero(n_cand[:, ts].any(axis=1)).tolist():
            d = rows[r]
            ok = reach[r, ts, :] & ~locked
            masked = np.where(ok, iou[d][None, :], -1.0)
            best = masked.argmax(axis=1)  # first ground truth among equal tIoUs
            hit = masked[t_range, best] >= 0.0
            tp[ts[hit], d] = best[hit]
            locked[t_range[hit], best[hit]] = True
    return tp


def interpolated_ap(tp: np.ndarray, npos: int) -> np.ndarray:
    """All-point interpolated AP per row of ``tp`` (``(T, D)`` bool, detections in rank order)."""
    tp = np.atleast_2d(tp)
    if tp.shape[1] == 0 or npos == 0:
        return np.zeros(tp.shape[0])
    cum_tp = np.cumsum(tp, axis=1, dtype=np.float64)
    precision = cum_tp / np.arange(1, tp.shape[1] + 1, dtype=np.float64)
    recall = cum_tp / float(npos)
    monotone = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    steps = np.diff(recall, axis=1, prepend=0.0)
    return np.sum(steps * monotone, axis=1)


def ranked_matches(gt_video: np.ndarray, gt_label: np.ndarray, gt_start: np.ndarray,
                   gt_end: np.ndarray, det_video: np.ndarray, det_label: np.ndarray,
                   det_start: np.ndarray, det_end: np.ndarray, det_score: np.ndarray,
                   n_classes: int, tious: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ActivityNet matching of every detection, per class and threshold.

    Arguments as :func:`average_precision`. Returns ``(order, matched)``: ``order`` ``(N,)``
    the detections' rank order (:func:`~acn.evaluate.grouping.rank_order`), ``matched``
    ``(T, N)`` int64 with columns in that order: the ground-truth ROW (index into the ``gt_*``
    arrays) that the detection takes at ``tious[t]``, or -1 for a false positive.
    """
    tious = np.asarray(tious, dtype=np.float64)
    gt_label = np.asarray(gt_label, dtype=np.int64)
    det_label = np.asarray(det_label, dtype=np.int64)

    # Rank all detections once; group them by (video, class), keeping rank order in a group.
    order = rank_order(det_video, det_score)
    d_video, d_label = np.asarray(det_video)[order], det_label[order]
    d_start = np.asarray(det_start, dtype=np.float64)[order]
    d_end = np.asarray(det_end, dtype=np.float64)[order]
    matched = np.full((len(tious), len(order)), -1, dtype=np.int64)  # columns in rank order

    g_key = np.asarray(gt_video, dtype=np.int64) * n_classes + gt_label
    g_perm, g_spans = grouped(g_key)
    d_perm, d_spans = grouped(d_video.astype(np.int64) * n_classes + d_label)
    g_start = np.asarray(gt_start, dtype=np.float64)[g_perm]
    g_end = np.asarray(gt_end, dtype=np.float64)[g_perm]
    for key, (lo, hi) in d_spans.items():
        if key not in g_spans:
            continue  # no ground truth of this class in this video: all false positives
        glo, ghi = g_spans[key]
        cols = d_perm[lo:hi]
        iou = tiou_matrix(d_start[cols], d_end[cols], g_start[glo:ghi], g_end[glo:ghi],
                          union="sum")
        col = match_greedy_gt(iou, tious)
        matched[:, cols] = np.where(col >= 0, g_perm[glo + np.maximum(col, 0)], -1)
    return order, matched


def average_precision(gt_video: np.ndarray, gt_label: np.ndarray, gt_start: np.ndarray,
                      gt_end: np.ndarray, det_video: np.ndarray, det_label: np.ndarray,
                      det_start: np.ndarray, det_end: np.ndarray, det_score: np.ndarray,
                      n_classes: int, tious: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AP per class and threshold under the ActivityNet protocol.

    Videos and classes are integer codes; video codes must follow sorted video id order (ties
    between equal scores are broken by them). Times in seconds. Ground-truth rows keep their
    order within a video (it breaks ties between equal tIoUs). Returns ``(ap, npos)``:
    ``ap`` is ``(n_classes, T)`` with NaN for classes without ground truth, ``npos`` the
    ground-truth count per class.
    """
    n_t = len(np.atleast_1d(tious))
    npos = np.bincount(np.asarray(gt_label, dtype=np.int64), minlength=n_classes)
    order, matched = ranked_matches(gt_video, gt_label, gt_start, gt_end, det_video, det_label,
                                    det_start, det_end, det_score, n_classes, tious)
    tp = matched >= 0
    d_label = np.asarray(det_label, dtype=np.int64)[order]

    ap = np.full((n_classes, n_t), np.nan)
    c_perm, c_spans = grouped(d_label)
    for c in range(n_classes):
        if npos[c] == 0:
            continue
        lo, hi = c_spans.get(c, (0, 0))
        ap[c] = interpolated_ap(tp[:, c_perm[lo:hi]], int(npos[c]))
    return ap, npos
