"""``evaluate``: detections against ground truth, mAP at tIoU thresholds, under either protocol.

Only the videos of the evaluated subset count: their ground truth (and, for THUMOS14, their
ambiguous segments) and the detections on them. Detections on any other video are an error,
or are dropped (with a warning and a count in the result) with ``ignore_unknown_videos``. A
detection label that is not a class of the dataset is always an error. Videos of the subset
that the detections do not mention at all are evaluated as "nothing detected" with a warning
(list a video with an empty list to say so explicitly).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from acn.data.annotations import Annotations
from acn.errors import AcnError
from acn.evaluate import activitynet, thumos14
from acn.evaluate.results import DetectionDict, Detections

PROTOCOLS = ("activitynet", "thumos14")
_NAMES = {"activitynet": "ActivityNet", "thumos14": "THUMOS14"}


def default_tious(protocol: str) -> tuple[float, ...]:
    """Default tIoU thresholds: THUMOS14 0.1:0.1:0.7, ActivityNet 0.5:0.05:0.95."""
    protocol = check_protocol(protocol)
    if protocol == "thumos14":
        return tuple(round(0.1 * k, 2) for k in range(1, 8))
    return tuple(round(0.5 + 0.05 * k, 2) for k in range(10))


def check_protocol(protocol: str) -> str:
    p = str(protocol).lower()
    if p not in PROTOCOLS:
        raise AcnError(f"unknown evaluation protocol {protocol!r}; choose one of {list(PROTOCOLS)}")
    return p


def check_tious(tious: Iterable[float]) -> tuple[float, ...]:
    """Validate thresholds: numbers in (0, 1], no duplicates; returned sorted ascending.

    Each is rounded to 10 decimals, so ``0.1 * 3`` means the same threshold as ``0.3``.
    """
    try:
        values = [round(float(t), 10) for t in tious]
    except (TypeError, ValueError):
        raise AcnError(f"tIoU thresholds must be numbers, got {tious!r}") from None
    if not values:
        raise AcnError("no tIoU threshold given")
    bad = [t for t in values if not 0.0 < t <= 1.0]
    if bad:
        raise AcnError(f"tIoU thresholds must lie in (0, 1], got {bad}")
    if len(set(values)) != len(values):
        raise AcnError(f"duplicate tIoU thresholds in {values}")
    return tuple(sorted(values))


def tiou_key(t: float) -> str:
    """The JSON key of a threshold: ``0.5`` -> ``"0.5"``, ``0.55`` -> ``"0.55"``."""
    return f"{t:.10g}"


@dataclass(frozen=True, eq=False)
class EvalResult:
    """mAP of one evaluation. All AP values are fractions in [0, 1].

    Attributes:
        protocol: ``"activitynet"`` or ``"thumos14"``.
        subset: the evaluated subset.
        tious: thresholds, ascending.
        classes: the classes averaged into the mAP (rows of ``ap``).
        ap: ``(len(classes), len(tious))`` AP per class and threshold.
        num_ground_truth: ground-truth segments per class (same order as ``classes``).
        num_videos: videos in the subset.
        num_detections: detections evaluated.
        num_dropped: detections dropped because their video is not in the subset.
        videos_without_detections: videos of the subset that the detections do not mention.
        classes_without_ground_truth: classes of the dataset left out of the mean because
            the subset has no ground truth of them (their AP is undefined).
    """

    protocol: str
    subset: str
    tious: tuple[float, ...]
    classes: tuple[str, ...]
    ap: np.ndarray
    num_ground_truth: tuple[int, ...]
    num_videos: int
    num_detections: int
    num_dropped: int = 0
    videos_without_detections: int = 0
    classes_without_ground_truth: tuple[str, ...] = ()

    @property
    def map(self) -> dict[float, float]:
        """mAP per threshold (mean AP over ``classes``)."""
        means = self.ap.mean(axis=0) if len(self.classes) else np.zeros(len(self.tious))
        return {t: float(m) for t, m in zip(self.tious, means)}

    @property
    def average(self) -> float:
        """Mean of the mAP over the thresholds (ActivityNet's "average mAP")."""
        return float(np.mean(list(self.map.values())))

    @property
    def per_class(self) -> dict[str, dict[float, float]]:
        """AP per class and threshold."""
        return {c: {t: float(a) for t, a in zip(self.tious, row)}
                for c, row in zip(self.classes, self.ap)}

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; thresholds become string keys (``"0.5"``), values fractions."""
        return {
            "protocol": self.protocol,
            "subset": self.subset,
            "tious": list(self.tious),
            "map": {tiou_key(t): m for t, m in self.map.items()},
            "average": self.average,
            "per_class": {c: {tiou_key(t): a for t, a in row.items()}
                          for c, row in self.per_class.items()},
            "num_ground_truth": dict(zip(self.classes, self.num_ground_truth)),
            "num_videos": self.num_videos,
            "num_detections": self.num_detections,
            "num_dropped_detections": self.num_dropped,
            "videos_without_detections": self.videos_without_detections,
            "classes_without_ground_truth": list(self.classes_without_ground_truth),
        }

    def format_table(self, per_class: bool = False) -> str:
        """Plain-text table of mAP (in percent) per threshold and their average.

        With ``per_class`` one more row per class (its AP in percent).
        """
        name_w = max([len("mAP (%)"), *(len(c) for c in self.classes)]) if per_class else 7
        cols = [tiou_key(t) for t in self.tious] + ["avg"]
        width = max(6, *(len(c) for c in cols))

        def line(label: str, values: Sequence[str]) -> str:
            return f"{label:<{name_w}}  " + " ".join(f"{v:>{width}}" for v in values)

        def pct(values: Iterable[float]) -> list[str]:
            return [f"{100 * v:.2f}" for v in values]

        head = (f"{_NAMES[self.protocol]} protocol, subset {self.subset!r}: {self.num_videos} "
                f"videos, {sum(self.num_ground_truth)} ground-truth segments, "
                f"{len(self.classes)} classes, {self.num_detections} detections")
        out = [head, line("tIoU", cols)]
        maps = list(self.map.values())
        out.append(line("mAP (%)", pct([*maps, self.average])))
        if per_class:
            out.append("")
            for c, row in zip(self.classes, self.ap):
                out.append(line(c, pct([*row, float(np.mean(row))])))
        notes = []
        if self.num_dropped:
            notes.append(f"{self.num_dropped} detections on videos outside the subset dropped")
        if self.videos_without_detections:
            notes.append(f"{self.videos_without_detections} videos without any detection")
        if self.classes_without_ground_truth:
            notes.append(f"{len(self.classes_without_ground_truth)} classes without ground "
                         "truth left out of the mean")
        if notes:
            out.append("(" + "; ".join(notes) + ")")
        return "\n".join(out)


def _id_hint(unknown: Sequence[str], known: set[str]) -> str:
    """Suggest the ActivityNet ``v_`` prefix when adding or removing it would match."""
    def fixed(v: str) -> str:
        return v[2:] if v.startswith("v_") else "v_" + v
    n = sum(fixed(v) in known for v in unknown)
    if n * 2 >= len(unknown):
        return (f"; {n} of them match a video id once the 'v_' prefix is "
                f"{'removed' if unknown[0].startswith('v_') else 'added'}")
    return ""


@dataclass(frozen=True, eq=False)
class FlatTables:
    """Ground truth and detections of one subset as flat, integer-coded arrays.

    Video codes index ``videos`` (the subset, sorted by id: the protocols break score ties by
    them); class codes index the dataset's ``classes``. Times in seconds.

    Attributes:
        videos: the subset's videos, sorted by id.
        gt_video, gt_label, gt_start, gt_end: ``(G,)`` one row per ground-truth segment, in
            the order of each video's ``segments``.
        amb_video, amb_start, amb_end: ``(A,)`` ambiguous segments (THUMOS14).
        det_video, det_label, det_start, det_end, det_score: ``(N,)`` the kept detections,
            in input order.
        num_dropped: detections dropped because their video is not in the subset.
        videos_without_detections: videos of the subset the detections do not mention.
    """

    videos: list[Any]
    gt_video: np.ndarray
    gt_label: np.ndarray
    gt_start: np.ndarray
    gt_end: np.ndarray
    amb_video: np.ndarray
    amb_start: np.ndarray
    amb_end: np.ndarray
    det_video: np.ndarray
    det_label: np.ndarray
    det_start: np.ndarray
    det_end: np.ndarray
    det_score: np.ndarray
    num_dropped: int
    videos_without_detections: int

    @property
    def gt_arrays(self) -> tuple[np.ndarray, ...]:
        return self.gt_video, self.gt_label, self.gt_start, self.gt_end

    @property
    def det_arrays(self) -> tuple[np.ndarray, ...]:
        return self.det_video, self.det_label, self.det_start, self.det_end, self.det_score

    @property
    def ambiguous_arrays(self) -> tuple[np.ndarray, ...]:
        return self.amb_video, self.amb_start, self.amb_end


def flatten(gt: Annotations, detections: Detections | DetectionDict, subset: str,
            ignore_unknown_videos: bool = False, where: str = "detections") -> FlatTables:
    """The checks of :func:`evaluate` (unknown videos and labels, missing videos), then the
    subset's ground truth and the detections on it as :class:`FlatTables`."""
    videos = gt.subset(subset)  # sorted by id: video codes follow name order, as required
    dets = Detections.from_dict(detections, where=where)

    vid_code = {v.id: i for i, v in enumerate(videos)}
    det_vcode = np.array([vid_code.get(n, -1) for n in dets.video_names], dtype=np.int64)
    row_vcode = det_vcode[dets.video] if len(dets) else np.zeros(0, dtype=np.int64)
    unknown = [n for n, c in zip(dets.video_names, det_vcode.tolist()) if c < 0]
    num_dropped = 0
    if unknown:
        num_dropped = int(np.count_nonzero(row_vcode < 0))
        other = sum(1 for n in unknown if n in gt.videos)
        detail = (f" ({other} of them in other subsets of {gt.name!r})" if other else
                  f" (none of them in {gt.name!r})")
        msg = (f"{where}: {num_dropped} detections on {len(unknown)} videos that are not in "
               f"subset {subset!r}{detail}, e.g. {', '.join(map(repr, unknown[:3]))}"
               f"{_id_hint(unknown, set(gt.videos))}")
        if not ignore_unknown_videos:
            raise AcnError(msg + "; drop them with --ignore-unknown-videos "
                                 "(ignore_unknown_videos=True)")
        warnings.warn(msg + "; dropped", stacklevel=3)
    keep = row_vcode >= 0

    class_code = {c: i for i, c in enumerate(gt.classes)}
    lab_code = np.array([class_code.get(n, -1) for n in dets.label_names], dtype=np.int64)
    row_lcode = lab_code[dets.label] if len(dets) else np.zeros(0, dtype=np.int64)
    bad = sorted({dets.label_names[i] for i in np.unique(dets.label[keep & (row_lcode < 0)])})
    if bad:
        n_bad = int(np.count_nonzero(keep & (row_lcode < 0)))
        raise AcnError(f"{where}: {n_bad} detections have labels that are not classes of "
                       f"{gt.name!r}: {bad[:10]}{' ...' if len(bad) > 10 else ''} (classes: "
                       f"{', '.join(gt.classes[:5])}{', ...' if len(gt.classes) > 5 else ''})")

    missing = len(videos) - len(set(det_vcode[det_vcode >= 0].tolist()))
    if missing:
        warnings.warn(f"{where}: {missing} of the {len(videos)} videos of subset {subset!r} "
                      "have no entry in the detections; they count as detecting nothing",
                      stacklevel=3)

    gt_v, gt_l, gt_s, gt_e, amb_v, amb_s, amb_e = [], [], [], [], [], [], []
    for i, v in enumerate(videos):
        for seg in v.segments:
            gt_v.append(i)
            gt_l.append(gt.class_index(seg.label, where=f"{gt.name}: video {v.id}"))
            gt_s.append(seg.start)
            gt_e.append(seg.end)
        for s, e in v.ambiguous:
            amb_v.append(i)
            amb_s.append(s)
            amb_e.append(e)

    return FlatTables(
        videos, np.asarray(gt_v, dtype=np.int64), np.asarray(gt_l, dtype=np.int64),
        np.asarray(gt_s, dtype=np.float64), np.asarray(gt_e, dtype=np.float64),
        np.asarray(amb_v, dtype=np.int64), np.asarray(amb_s, dtype=np.float64),
        np.asarray(amb_e, dtype=np.float64), row_vcode[keep], row_lcode[keep], dets.start[keep],
        dets.end[keep], dets.score[keep], num_dropped, missing)


def evaluate(gt: Annotations, detections: Detections | DetectionDict, subset: str | None = None,
             protocol: str = "activitynet", tious: Iterable[float] | None = None,
             ignore_unknown_videos: bool = False, where: str = "detections") -> EvalResult:
    """Mean average precision of ``detections`` against ``gt`` on one subset.

    Args:
        gt: ground truth; times in seconds.
        detections: :class:`Detections` or ``{video_id: [(start_s, end_s, label, score)]}``.
        subset: the subset to evaluate (default: ``gt.test_subset``).
        protocol: ``"activitynet"`` (greedy matching by score, tIoU >= thr, interpolated AP)
            or ``"thumos14"`` (the official MATLAB protocol: ground-truth-driven matching,
            overlap > thr, ambiguous segments removed, non-interpolated AP). See the protocol
            modules.
        tious: thresholds in (0, 1]; default :func:`default_tious` of the protocol.
        ignore_unknown_videos: drop detections on videos outside the subset (with a warning)
            instead of raising.
        where: how to name the detections in error messages (e.g. the results file path).

    Classes without ground truth in the subset have no AP and are left out of the mean under
    both protocols (ActivityNet does so officially; the THUMOS14 code asserts they do not
    exist, so here that case warns); they are listed in
    ``EvalResult.classes_without_ground_truth``.

    Raises :class:`AcnError` for an unknown protocol, bad thresholds, an empty subset or one
    without any ground-truth segment, detections on videos outside the subset (unless
    ignored), and labels that are not classes of ``gt``.
    """
    protocol = check_protocol(protocol)
    tious_t = check_tious(default_tious(protocol) if tious is None else tious)
    subset = gt.test_subset if subset is None else subset
    flat = flatten(gt, detections, subset, ignore_unknown_videos, where)
    args = (*flat.gt_arrays, *flat.det_arrays, len(gt.classes), np.asarray(tious_t))
    videos, num_dropped, missing = flat.videos, flat.num_dropped, flat.videos_without_detections
    if protocol == "activitynet":
        ap, npos = activitynet.average_precision(*args)
    else:
        ap, npos = thumos14.average_precision(*args, *flat.ambiguous_arrays)
    rows = np.flatnonzero(npos > 0)
    if len(rows) == 0:
        raise AcnError(f"{gt.name}: subset {subset!r} has no ground-truth segment to evaluate")
    no_gt = tuple(gt.classes[c] for c in np.flatnonzero(npos == 0))
    if protocol == "thumos14" and no_gt:
        # The official code asserts that every detection class has ground truth; rather than
        # fail (small or sampled test sets hit this), leave such classes out of the mean,
        # loudly: their AP is undefined, and counting them as 0 would be wrong.
        warnings.warn(f"{gt.name}: {len(no_gt)} of {len(gt.classes)} classes have no ground "
                      f"truth in subset {subset!r} ({', '.join(no_gt[:10])}"
                      f"{', ...' if len(no_gt) > 10 else ''}); the THUMOS14 mAP averages over "
                      f"the other {len(rows)}", stacklevel=2)

    ap = ap[rows]
    ap.setflags(write=False)
    return EvalResult(protocol=protocol, subset=subset, tious=tious_t,
                      classes=tuple(gt.classes[c] for c in rows), ap=ap,
                      num_ground_truth=tuple(int(npos[c]) for c in rows),
                      num_videos=len(videos), num_detections=len(flat.det_video),
                      num_dropped=num_dropped, videos_without_detections=missing,
                      classes_without_ground_truth=no_gt)
