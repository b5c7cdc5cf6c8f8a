"""Temporal intersection-over-union of segments, in the two flavours the protocols use.

Both flavours agree on every pair of segments that intersect with positive length (then the
union of the two is their hull). They differ only in rounding (the ActivityNet code computes the
union as ``len_a + len_b - inter``, the THUMOS14 MATLAB code as ``max(ends) - min(starts)``) and
in the degenerate pair of two zero-length segments at the same time (0/0: NaN in the ActivityNet
code, 0 in the THUMOS14 code). Each protocol uses its own formula so that a tIoU lying exactly on
a threshold compares as it does in the official code; the 0/0 case is 0 in both.
"""

from __future__ import annotations

import numpy as np


def tiou_matrix(a_start: np.ndarray, a_end: np.ndarray, b_start: np.ndarray, b_end: np.ndarray,
                *, union: str = "sum") -> np.ndarray:
    """tIoU of every segment of ``a`` with every segment of ``b``: shape ``(len(a), len(b))``.

    Times in seconds (any unit works: the ratio has none). ``union="sum"`` divides the
    intersection by ``len_a + len_b - inter`` (ActivityNet ``segment_iou``); ``union="hull"``
    by ``max(end) - min(start)`` (THUMOS14 ``intervaloverlapvalseconds``). Pairs that do not
    intersect with positive length have tIoU 0.
    """
    a_s = np.asarray(a_start, dtype=np.float64)[:, None]
    a_e = np.asarray(a_end, dtype=np.float64)[:, None]
    b_s = np.asarray(b_start, dtype=np.float64)[None, :]
    b_e = np.asarray(b_end, dtype=np.float64)[None, :]
    inter = np.minimum(a_e, b_e) - np.maximum(a_s, b_s)
    if union == "sum":
        inter = np.clip(inter, 0.0, None)
        denom = (a_e - a_s) + (b_e - b_s) - inter
    elif union == "hull":
        denom = np.maximum(a_e, b_e) - np.minimum(a_s, b_s)
    else:
        raise ValueError(f"union must be 'sum' or 'hull', not {union!r}")
    positive = inter > 0
    # Where inter > 0 the denominator is >= inter > 0, so the division is safe there.
    return np.divide(inter, denom, out=np.zeros(positive.shape), where=positive)


def intersects(a_start: np.ndarray, a_end: np.ndarray, b_start: np.ndarray,
               b_end: np.ndarray) -> np.ndarray:
    """Whether each segment of ``a`` overlaps each of ``b`` with positive length.

    Returns an ``(A, B)`` bool array; touching segments do not overlap.
    """
    a_s = np.asarray(a_start, dtype=np.float64)[:, None]
    a_e = np.asarray(a_end, dtype=np.float64)[:, None]
    return (np.minimum(a_e, np.asarray(b_end, dtype=np.float64)[None, :])
            - np.maximum(a_s, np.asarray(b_start, dtype=np.float64)[None, :])) > 0
