"""Ranking and grouping of flat detection / ground-truth tables, shared by both protocols."""

from __future__ import annotations

from typing import Iterator

import numpy as np


def rank_order(video: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Indices that rank detections: score descending, then video index, then input row.

    With videos indexed in sorted-id order this is exactly the order of the THUMOS14 MATLAB
    code (``unique`` sorts the video names; both ``sort`` calls are stable) and a stable sort
    for the ActivityNet protocol.
    """
    n = len(score)
    return np.lexsort((np.arange(n), np.asarray(video), -np.asarray(score, dtype=np.float64)))


def group_slices(keys: np.ndarray) -> Iterator[tuple[int, int, int]]:
    """``(key, lo, hi)`` for each run of equal values in an already grouped ``keys`` array."""
    keys = np.asarray(keys)
    if len(keys) == 0:
        return
    bounds = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [len(keys)]))
    for lo, hi in zip(starts.tolist(), ends.tolist()):
        yield int(keys[lo]), lo, hi


def grouped(keys: np.ndarray) -> tuple[np.ndarray, dict[int, tuple[int, int]]]:
    """A stable permutation grouping equal ``keys`` and ``{key: (lo, hi)}`` into it."""
    perm = np.argsort(np.asarray(keys), kind="stable")
    spans = {k: (lo, hi) for k, lo, hi in group_slices(np.asarray(keys)[perm])}
    return perm, spans
