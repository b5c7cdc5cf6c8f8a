"""Detections in memory and on disk (the ActivityNet submission JSON).

On disk::

    {"version": "VERSION 1.3",
     "results": {video_id: [{"label": str, "score": float, "segment": [start_s, end_s]}, ...]},
     "external_data": {...}}

In memory a :class:`Detections` is one flat table (numpy arrays, one row per detection) so
that the evaluator can group and sort without Python loops. Rows keep the order of the input
(videos in order of first appearance, detections of a video in list order); the evaluators
rely on that order only to break ties between equal scores (see ``acn.evaluate``).

Decisions:

* A file with zero detections (``"results": {}`` or only empty lists) loads with a
  ``UserWarning``, not an error: a model that detects nothing is a legitimate (if poor) result
  and evaluates to mAP 0, but it is more often a mistake, so it is never silent.
* Times must be finite with ``end >= start`` (zero-length segments are allowed and never match
  anything); scores must be finite. Negative times are allowed: evaluation is well defined.
* ``"version"`` and ``"external_data"`` are optional when reading (many tools omit them) and
  always written.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from acn.errors import AcnError
from acn.fileio import read_json, write_json

RESULTS_VERSION = "VERSION 1.3"

#: The detection format of the localizer and the baselines: per video a list of
#: ``(start_s, end_s, label, score)``.
DetectionDict = Mapping[str, Sequence[tuple[float, float, str, float]]]


def _frozen(a: np.ndarray, dtype: type) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=dtype).reshape(-1)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Detections:
    """A flat, read-only table of temporal detections; times in seconds.

    Attributes:
        video_names: distinct video ids, in order of first appearance; may include videos
            without any detection (an empty list in the source).
        video: ``(N,)`` int index into ``video_names`` per detection.
        label_names: distinct class names, in order of first appearance.
        label: ``(N,)`` int index into ``label_names`` per detection.
        start, end: ``(N,)`` float64 seconds.
        score: ``(N,)`` float64 confidence (higher is more confident).
    """

    video_names: tuple[str, ...]
    video: np.ndarray
    label_names: tuple[str, ...]
    label: np.ndarray
    start: np.ndarray
    end: np.ndarray
    score: np.ndarray

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen dataclass: normalise the fields once, here
        set_(self, "video_names", tuple(self.video_names))
        set_(self, "label_names", tuple(self.label_names))
        for name, dtype in (("video", np.int64), ("label", np.int64), ("start", np.float64),
                            ("end", np.float64), ("score", np.float64)):
            set_(self, name, _frozen(getattr(self, name), dtype))
        n = len(self.video)
        if not all(len(getattr(self, k)) == n for k in ("label", "start", "end", "score")):
            raise ValueError("Detections: video, label, start, end and score differ in length")
        for codes, names, what in ((self.video, self.video_names, "video"),
                                   (self.label, self.label_names, "label")):
            if n and (codes.min() < 0 or codes.max() >= len(names)):
                raise ValueError(f"Detections: {what} index out of range")
        self._validate()

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def empty(cls) -> "Detections":
        return cls((), [], (), [], [], [], [])

    @classmethod
    def from_dict(cls, detections: DetectionDict, where: str = "detections") -> "Detections":
        """Build from ``{video_id: [(start_s, end_s, label, score), ...]}``.

        Raises :class:`AcnError` naming the video and entry for a malformed tuple, a
        non-finite time or score, or ``end < start``.
        """
        if isinstance(detections, Detections):
            return detections
        if not isinstance(detections, Mapping):
            raise AcnError(f"{where}: expected a mapping video_id -> list of "
                           f"(start_s, end_s, label, score), got {type(detections).__name__}")
        b = _Builder(where)
        for vid, dets in detections.items():
            b.add_video(vid)
            if isinstance(dets, (str, bytes)) or not isinstance(dets, Iterable):
                raise AcnError(f"{where}: video {vid!r}: expected a list of "
                               f"(start_s, end_s, label, score), got {type(dets).__name__}")
            for i, d in enumerate(dets):
                if not isinstance(d, Sequence) or isinstance(d, str) or len(d) != 4:
                    raise AcnError(f"{where}: video {vid!r} detection {i}: expected a tuple "
                                   f"(start_s, end_s, label, score), got {d!r}")
                s, e, lab, sc = d
                b.add(f"{where}: video {vid!r} detection {i}", vid, lab, s, e, sc)
        return b.build()

    @classmethod
    def from_arrays(cls, video_ids: Sequence[str], labels: Sequence[str], start: Sequence[float],
                    end: Sequence[float], score: Sequence[float],
                    where: str = "detections") -> "Detections":
        """Build from parallel per-detection sequences (video id and label strings per row)."""
        vids = np.asarray(video_ids, dtype=object).reshape(-1)
        labs = np.asarray(labels, dtype=object).reshape(-1)
        if not (len(vids) == len(labs) == len(start) == len(end) == len(score)):
            raise AcnError(f"{where}: video_ids, labels, start, end and score differ in length")
        vnames, vcode = _codes(vids)
        lnames, lcode = _codes(labs)
        for n in (*vnames, *lnames):
            if not isinstance(n, str):
                raise AcnError(f"{where}: video ids and labels must be strings, got {n!r}")
        return cls(vnames, vcode, lnames, lcode, np.asarray(start, dtype=np.float64),
                   np.asarray(end, dtype=np.float64), np.asarray(score, dtype=np.float64))

    # -- views -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.video)

    def __repr__(self) -> str:
        return (f"Detections({len(self)} detections on {len(self.video_names)} videos, "
                f"{len(self.label_names)} labels)")

    @property
    def video_ids(self) -> np.ndarray:
        """The video id of each row, ``(N,)`` object array of str."""
        return np.asarray(self.video_names, dtype=object)[self.video] if len(self) else \
            np.empty(0, dtype=object)

    @property
    def labels(self) -> np.ndarray:
        """The class name of each row, ``(N,)`` object array of str."""
        return np.asarray(self.label_names, dtype=object)[self.label] if len(self) else \
            np.empty(0, dtype=object)

    def to_dict(self) -> dict[str, list[tuple[float, float, str, float]]]:
        """``{video_id: [(start_s, end_s, label, score), ...]}`` in row order (all videos)."""
        out: dict[str, list[tuple[float, float, str, float]]] = {v: [] for v in self.video_names}
        names, labels = self.video_names, self.label_names
        for v, lab, s, e, sc in zip(self.video.tolist(), self.label.tolist(), self.start.tolist(),
                                    self.end.tolist(), self.score.tolist()):
            out[names[v]].append((s, e, labels[lab], sc))
        return out

    def select(self, rows: np.ndarray, keep_videos: Iterable[str] | None = None) -> "Detections":
        """The detections at ``rows`` (bool mask or indices), in their original order.

        ``video_names`` keeps the videos that still have a row, plus ``keep_videos``.
        """
        rows = np.asarray(rows)
        idx = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64)
        idx = np.sort(idx)
        wanted = set(keep_videos or ())
        keep_v = np.zeros(len(self.video_names), dtype=bool)
        keep_v[self.video[idx]] = True
        keep_v |= np.array([v in wanted for v in self.video_names], dtype=bool)
        new_index = np.cumsum(keep_v) - 1
        return Detections(tuple(v for v, k in zip(self.video_names, keep_v) if k),
                          new_index[self.video[idx]], self.label_names, self.label[idx],
                          self.start[idx], self.end[idx], self.score[idx])

    # -- checks ------------------------------------------------------------------------------
    def _row_name(self, i: int) -> str:
        v = self.video[i]
        nth = int(np.count_nonzero(self.video[:i] == v))
        return f"video {self.video_names[v]!r} detection {nth}"

    def _validate(self, where: str = "detections") -> None:
        bad = ~(np.isfinite(self.start) & np.isfinite(self.end))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise AcnError(f"{where}: {self._row_name(i)}: segment has a non-finite time "
                           f"[{self.start[i]}, {self.end[i]}] ({int(bad.sum())} such detections)")
        bad = self.end < self.start
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise AcnError(f"{where}: {self._row_name(i)}: segment end {self.end[i]} is before "
                           f"its start {self.start[i]} ({int(bad.sum())} such detections)")
        bad = ~np.isfinite(self.score)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise AcnError(f"{where}: {self._row_name(i)}: score is {self.score[i]} "
                           f"({int(bad.sum())} detections have a NaN or infinite score)")


def _codes(values: np.ndarray) -> tuple[tuple[Any, ...], np.ndarray]:
    """Distinct values in order of first appearance, and each row's index into them."""
    index: dict[Any, int] = {}
    codes = np.fromiter((index.setdefault(v, len(index)) for v in values.tolist()),
                        dtype=np.int64, count=len(values))
    return tuple(index), codes


def _is_number(x: Any) -> bool:
    return isinstance(x, Real) and not isinstance(x, bool)


class _Builder:
    """Collects rows one by one with precise error messages, then makes :class:`Detections`."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.videos: dict[str, int] = {}
        self.labels: dict[str, int] = {}
        self.v: list[int] = []
        self.lab: list[int] = []
        self.s: list[float] = []
        self.e: list[float] = []
        self.sc: list[float] = []

    def add_video(self, vid: Any) -> int:
        if not isinstance(vid, str):
            raise AcnError(f"{self.where}: video id {vid!r} is not a string")
        return self.videos.setdefault(vid, len(self.videos))

    def add(self, where: str, vid: str, label: Any, start: Any, end: Any, score: Any) -> None:
        """Append one detection; ``where`` names it in error messages."""
        if not isinstance(label, str):
            raise AcnError(f"{where}: label must be a class name (string), got {label!r}")
        if not (_is_number(start) and _is_number(end)):
            raise AcnError(f"{where}: segment times must be numbers, got [{start!r}, {end!r}]")
        if not _is_number(score):
            raise AcnError(f"{where}: score must be a number, got {score!r}")
        start, end, score = float(start), float(end), float(score)
        if not (math.isfinite(start) and math.isfinite(end)):
            raise AcnError(f"{where}: segment has a non-finite time [{start}, {end}]")
        if end < start:
            raise AcnError(f"{where}: segment end {end} is before its start {start}")
        if not math.isfinite(score):
            raise AcnError(f"{where}: score is {score} (must be a finite number)")
        self.v.append(self.videos[vid])
        self.lab.append(self.labels.setdefault(label, len(self.labels)))
        self.s.append(start)
        self.e.append(end)
        self.sc.append(score)

    def build(self) -> Detections:
        return Detections(tuple(self.videos), self.v, tuple(self.labels), self.lab, self.s,
                          self.e, self.sc)


# -- files ---------------------------------------------------------------------------------------
def save_results(path: Path | str, detections: Detections | DetectionDict,
                 external_data: Mapping[str, Any] | None = None) -> None:
    """Write ``detections`` as an ActivityNet submission JSON, atomically.

    Every video of ``detections`` is written, including those without a detection (as an
    empty list), so that "processed, nothing found" differs from "not processed".
    """
    dets = Detections.from_dict(detections, where=str(path))
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in dets.video_names}
    names, labels = dets.video_names, dets.label_names
    for v, lab, s, e, sc in zip(dets.video.tolist(), dets.label.tolist(), dets.start.tolist(),
                                dets.end.tolist(), dets.score.tolist()):
        results[names[v]].append({"label": labels[lab], "score": sc, "segment": [s, e]})
    obj = {"version": RESULTS_VERSION, "results": results,
           "external_data": dict(external_data) if external_data is not None else {}}
    write_json(Path(path), obj, indent=None)


def load_results(path: Path | str) -> Detections:
    """Read an ActivityNet submission JSON into :class:`Detections`.

    Raises :class:`AcnError` naming the file and the offending key or entry when the file is
    missing, is not JSON, or does not have the ActivityNet shape, or when a detection has a
    non-finite time or score or ends before it starts. Warns (``UserWarning``) when the file
    holds zero detections.
    """
    path = Path(path)
    obj = read_json(path, what="results file")
    where = str(path)
    if not isinstance(obj, dict):
        raise AcnError(f"{where}: expected a JSON object with a \"results\" key (ActivityNet "
                       f"submission format), got a JSON {type(obj).__name__}")
    if "results" not in obj:
        raise AcnError(f"{where}: no \"results\" key (ActivityNet submission format: "
                       f"{{\"version\", \"results\": {{video_id: [...]}}, \"external_data\"}}); "
                       f"keys present: {sorted(obj)[:10]}")
    results = obj["results"]
    if not isinstance(results, dict):
        raise AcnError(f"{where}: \"results\" must map video ids to lists of detections, "
                       f"got a JSON {type(results).__name__}")
    b = _Builder(where)
    for vid, dets in results.items():
        b.add_video(vid)
        if not isinstance(dets, list):
            raise AcnError(f"{where}: results[{vid!r}] must be a list of detections, got a "
                           f"JSON {type(dets).__name__}")
        for i, d in enumerate(dets):
            entry = f"{where}: results[{vid!r}][{i}]"
            if not isinstance(d, dict):
                raise AcnError(f"{entry}: a detection must be an object with \"label\", "
                               f"\"score\" and \"segment\", got {d!r}")
            missing = [k for k in ("label", "score", "segment") if k not in d]
            if missing:
                raise AcnError(f"{entry}: missing key(s) {missing} (has {sorted(d)})")
            seg = d["segment"]
            if not isinstance(seg, list) or len(seg) != 2:
                raise AcnError(f"{entry}: \"segment\" must be [start_s, end_s], got {seg!r}")
            b.add(entry, vid, d["label"], seg[0], seg[1], d["score"])
    dets_ = b.build()
    if len(dets_) == 0:
        warnings.warn(f"{where}: the results file holds no detection "
                      f"({len(dets_.video_names)} videos, all empty); every AP will be 0",
                      stacklevel=2)
    return dets_
