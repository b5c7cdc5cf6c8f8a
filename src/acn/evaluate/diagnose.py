"""Error diagnosis of temporal detections in the manner of DETAD (Alwassel et al., ECCV 2018).

"Diagnosing Error in Temporal Action Detectors" asks *why* an mAP is what it is. Three
analyses, all at ONE tIoU threshold ``t`` (0.5 by default) and all on top of the ActivityNet
matching that :mod:`acn.evaluate.activitynet` implements (:func:`ranked_matches`: per class,
detections ranked by score, each one takes the unmatched same-class ground truth of its video
with the highest tIoU if that tIoU is ``>= t``). There is one matching in this package; this
module only reads its result.

**False-positive types.** Every detection that the matching leaves unmatched is a false
positive of exactly one type, decided from its best tIoU with the ground truth of its own
video (``same``: the best over instances of the detection's class, ``other``: over instances
of every other class), in this priority order (first rule that holds wins):

1. ``double_detection``: ``same >= t``. The instance it overlaps enough is already matched
   by a higher-scored detection (were it free, the greedy matching would have taken it).
2. ``wrong_label``: ``other >= t``: it would be a true positive had it the other label.
3. ``localization``: ``min_tiou <= same < t`` (``min_tiou`` = 0.1): right class, poorly
   placed.
4. ``confusion``: ``min_tiou <= other < t``: the wrong class, and poorly placed.
5. ``background``: ``same < min_tiou`` and ``other < min_tiou`` (also: the video has no
   ground truth at all).

The order ranks the tIoU band first (``>= t`` before ``[min_tiou, t)``), then the detection's
own class before the others. DETAD's code instead takes the label of the single
highest-tIoU instance, whatever its class; the two differ only for a detection that overlaps
an instance of its own class AND one of another class within the same band, which this
module calls a double detection (respectively a localization error) - the error a better
NMS or regression would fix - where DETAD may call it a wrong label (a confusion).
Ambiguous segments (THUMOS14) play no part, as in DETAD.

**Which false positives are counted.** DETAD's "false positive profile" looks at the top
``k * G`` predictions of each class, ``G`` its number of ground-truth instances (``k = 1``:
as many predictions as there is ground truth to find; the profile runs ``k = 1..10``).
:attr:`Diagnosis.top` counts the types among the top ``floor(top_factor * G)`` predictions
(true positives included, as their own column); :attr:`Diagnosis.all` among every
prediction. Both are reported; the counts of each row add up to the predictions it covers.
Detections of a class without ground truth in the subset have no AP to lower (the mAP leaves
such classes out) and are left out of the counts too; :attr:`Diagnosis.num_unscored` says
how many there are.

**mAP gained if a type were removed.** For each type, every false positive of that type (all
predictions, not only the top ``k * G``) is deleted from the ranked lists, AP is recomputed
(ActivityNet interpolated AP at ``t``, the other detections keep their true/false status) and
the gain is ``mAP(removed) - mAP`` over the classes with ground truth.

**Sensitivity.** Ground-truth instances are put into buckets of a characteristic: their
length in seconds (DETAD's THUMOS14 buckets, ``(lo, hi]``: XS (0, 3], S (3, 6], M (6, 18],
L (18, 36], XL > 36) and the number of instances of the same class in their video (XS 1,
S 2-4, M 5-8, L 9-16, XL > 16). For a bucket, AP of a class counts only that class's
instances in the bucket as positives; detections matched to instances outside the bucket are
removed (they are neither right nor wrong about this bucket), every false positive stays.
The AP is DETAD's *normalized* AP: ``precision_N = R * N / (R * N + FP)`` with ``R`` the
recall and ``N`` the mean number of instances per class over the whole subset, so that a
bucket with few instances is not punished for being small. ``mAP_N`` averages the classes
that have instances in the bucket; :attr:`Diagnosis.map_n` is the same figure over all
instances, the reference line.

Times are in seconds; every AP and gain is a fraction (tables print percent / points).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from acn.data.annotations import Annotations
from acn.evaluate.activitynet import interpolated_ap, ranked_matches
from acn.evaluate.evaluator import flatten
from acn.evaluate.grouping import grouped
from acn.evaluate.results import DetectionDict, Detections
from acn.evaluate.tiou import tiou_matrix

#: Kind codes of a detection: 0 true positive, then the false-positive types in priority order.
TRUE_POSITIVE = 0
ERROR_TYPES: tuple[str, ...] = ("double_detection", "wrong_label", "localization", "confusion",
                                "background")
KINDS: tuple[str, ...] = ("true_positive", *ERROR_TYPES)
#: Human names of the kinds, for tables and plots.
KIND_NAMES: dict[str, str] = {
    "true_positive": "true positive", "double_detection": "double detection",
    "wrong_label": "wrong label", "localization": "localization error",
    "confusion": "confusion", "background": "background"}

Bucket = tuple[str, float, float]
#: Ground-truth length buckets in seconds, each ``(name, lo, hi)`` meaning ``lo < length <= hi``.
LENGTH_BUCKETS: tuple[Bucket, ...] = (("XS", 0.0, 3.0), ("S", 3.0, 6.0), ("M", 6.0, 18.0),
                                      ("L", 18.0, 36.0), ("XL", 36.0, math.inf))
#: Instances of the same class per video, each ``(name, lo, hi)`` meaning ``lo < count <= hi``.
INSTANCE_BUCKETS: tuple[Bucket, ...] = (("XS", 0, 1), ("S", 1, 4), ("M", 4, 8), ("L", 8, 16),
                                        ("XL", 16, math.inf))
CHARACTERISTICS: dict[str, str] = {"length": "action length (s)",
                                   "instances": "instances of its class in the video"}


# ----------------------------------------------------------------------------- kernels


def classify_detections(gt_video: np.ndarray, gt_label: np.ndarray, gt_start: np.ndarray,
                        gt_end: np.ndarray, det_video: np.ndarray, det_label: np.ndarray,
                        det_start: np.ndarray, det_end: np.ndarray, det_score: np.ndarray,
                        n_classes: int, tiou: float = 0.5, min_tiou: float = 0.1
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The kind of every detection (true positive or one false-positive type).

    Arguments are flat integer-coded tables as :func:`acn.evaluate.activitynet.average_precision`
    takes them: ground truth ``(G,)``, detections ``(N,)``, times in seconds, video codes in
    sorted video id order. Returns, each ``(N,)`` in the detections' input order:

    * ``kind``: int8 index into :data:`KINDS` (0 true positive, 1..5 :data:`ERROR_TYPES`,
      by the priority order of the module docstring);
    * ``matched``: int64 ground-truth row that a true positive takes, -1 for false positives;
    * ``rank``: int64 position of the detection in its class's ranked list (0 = best score).
    """
    n = len(det_score)
    det_video = np.asarray(det_video, dtype=np.int64)
    det_label = np.asarray(det_label, dtype=np.int64)
    gt_video = np.asarray(gt_video, dtype=np.int64)
    gt_label = np.asarray(gt_label, dtype=np.int64)
    order, m = ranked_matches(gt_video, gt_label, gt_start, gt_end, det_video, det_label,
                              det_start, det_end, det_score, n_classes, np.array([tiou]))
    matched = np.full(n, -1, dtype=np.int64)
    matched[order] = m[0]
    rank = np.zeros(n, dtype=np.int64)
    if n:
        # position within the class: the global rank order, stably grouped by class
        by_class = order[np.argsort(det_label[order], kind="stable")]
        first = np.searchsorted(det_label[by_class], det_label[by_class], side="left")
        rank[by_class] = np.arange(n) - first

    # Best tIoU of each detection with its video's instances of its own / of other classes.
    best_same = np.zeros(n)
    best_other = np.zeros(n)
    g_perm, g_spans = grouped(gt_video)
    d_perm, d_spans = grouped(det_video)
    for v, (lo, hi) in d_spans.items():
        if v not in g_spans:
            continue  # a video without ground truth: background, whatever the detection
        glo, ghi = g_spans[v]
        rows, gts = d_perm[lo:hi], g_perm[glo:ghi]
        iou = tiou_matrix(det_start[rows], det_end[rows], gt_start[gts], gt_end[gts],
                          union="sum")  # the matching's own tIoU, so the bands agree with it
        same = det_label[rows][:, None] == gt_label[gts][None, :]
        best_same[rows] = np.where(same, iou, 0.0).max(axis=1)
        best_other[rows] = np.where(same, 0.0, iou).max(axis=1)

    fp_kind = np.select(
        [best_same >= tiou, best_other >= tiou, best_same >= min_tiou, best_other >= min_tiou],
        [1, 2, 3, 4], default=5)
    kind = np.where(matched >= 0, TRUE_POSITIVE, fp_kind).astype(np.int8)
    return kind, matched, rank


def kind_counts(kind: np.ndarray, label: np.ndarray, rank: np.ndarray, npos: np.ndarray,
                top_factor: float | None = None) -> np.ndarray:
    """``(C, len(KINDS))`` counts of each kind per class.

    With ``top_factor`` only the top ``floor(top_factor * npos[c])`` predictions of class ``c``
    count (DETAD's top-``kG``); ``None`` counts every prediction. ``label``, ``rank`` as from
    :func:`classify_detections`, ``npos`` ``(C,)`` ground truth per class.
    """
    n_classes = len(npos)
    label = np.asarray(label, dtype=np.int64)
    keep = np.ones(len(kind), dtype=bool)
    if top_factor is not None:
        keep = rank < np.floor(top_factor * np.asarray(npos, dtype=np.float64))[label]
    flat = label[keep] * len(KINDS) + np.asarray(kind, dtype=np.int64)[keep]
    return np.bincount(flat, minlength=n_classes * len(KINDS)).reshape(n_classes, len(KINDS))


def normalized_ap(tp: np.ndarray, npos: int, n_norm: float | None = None) -> float:
    """Interpolated AP of one ranked list of true-positive flags ``(D,)``.

    ``n_norm=None`` is the plain ActivityNet AP. Otherwise DETAD's normalized AP: precision
    ``R * n_norm / (R * n_norm + FP)`` (``R`` = recall, ``FP`` = false positives so far); with
    ``n_norm = npos`` it equals the plain AP.
    """
    tp = np.asarray(tp, dtype=bool)
    if n_norm is None or npos == 0 or len(tp) == 0:
        return float(interpolated_ap(tp[None, :], npos)[0])
    cum_tp = np.cumsum(tp, dtype=np.float64)
    recall = cum_tp / float(npos)
    fp = np.arange(1, len(tp) + 1, dtype=np.float64) - cum_tp
    denom = recall * n_norm + fp  # > 0 from the first row on: either a TP or an FP so far
    precision = recall * n_norm / denom
    monotone = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * monotone))


def class_aps(kind: np.ndarray, label: np.ndarray, rank: np.ndarray, npos: np.ndarray,
              keep: np.ndarray | None = None, n_norm: float | None = None) -> np.ndarray:
    """``(C,)`` AP per class from the detections' kinds (NaN where ``npos`` is 0).

    ``keep`` ``(N,)`` bool drops the other rows before ranking (the removal and sensitivity
    analyses); ``npos`` may be a restricted count (a sensitivity bucket).
    """
    label = np.asarray(label, dtype=np.int64)
    keep = np.ones(len(kind), dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    rows = np.flatnonzero(keep)
    rows = rows[np.lexsort((rank[rows], label[rows]))]  # by class, then rank
    lab = label[rows]
    tp = np.asarray(kind)[rows] == TRUE_POSITIVE
    out = np.full(len(npos), np.nan)
    bounds = np.searchsorted(lab, np.arange(len(npos) + 1))
    for c in np.flatnonzero(np.asarray(npos) > 0).tolist():
        out[c] = normalized_ap(tp[bounds[c]:bounds[c + 1]], int(npos[c]), n_norm)
    return out


def bucket_index(values: np.ndarray, buckets: Sequence[Bucket]) -> np.ndarray:
    """``(len(values),)`` index of the bucket ``(name, lo, hi)`` with ``lo < value <= hi``;
    -1 for a value in none (e.g. a zero-length instance for the length buckets)."""
    values = np.asarray(values, dtype=np.float64)
    out = np.full(len(values), -1, dtype=np.int64)
    for b, (_, lo, hi) in enumerate(buckets):
        out[(values > lo) & (values <= hi) & (out < 0)] = b
    return out


def instances_per_video(gt_video: np.ndarray, gt_label: np.ndarray) -> np.ndarray:
    """``(G,)``: for each instance, the instances of its class in its video (itself included)."""
    key = np.asarray(gt_video, dtype=np.int64) * (int(np.max(gt_label, initial=0)) + 1) \
        + np.asarray(gt_label, dtype=np.int64)
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    return counts[inverse.reshape(-1)]


def bucket_maps(kind: np.ndarray, label: np.ndarray, rank: np.ndarray, matched: np.ndarray,
                gt_label: np.ndarray, gt_bucket: np.ndarray, n_buckets: int, n_classes: int,
                n_norm: float) -> tuple[np.ndarray, np.ndarray]:
    """Normalized mAP per bucket of a ground-truth characteristic.

    ``gt_bucket`` ``(G,)`` is each instance's bucket (-1: none). For bucket ``b`` the
    positives of class ``c`` are its instances in ``b``; true positives matched to instances
    outside ``b`` are dropped, false positives all stay. Returns ``(map_n, n_gt)``, each
    ``(n_buckets,)``: mAP_N over the classes with instances in the bucket (NaN if none) and
    the bucket's instance count.
    """
    gt_label = np.asarray(gt_label, dtype=np.int64)
    maps, n_gt = np.full(n_buckets, np.nan), np.zeros(n_buckets, dtype=np.int64)
    is_tp = np.asarray(kind) == TRUE_POSITIVE
    for b in range(n_buckets):
        inside = gt_bucket == b
        n_gt[b] = int(inside.sum())
        if not n_gt[b]:
            continue
        npos = np.bincount(gt_label[inside], minlength=n_classes)
        keep = ~is_tp | inside[np.maximum(matched, 0)]
        maps[b] = float(np.nanmean(class_aps(kind, label, rank, npos, keep, n_norm)))
    return maps, n_gt


# ----------------------------------------------------------------------------- result


@dataclass(frozen=True, eq=False)
class Sensitivity:
    """mAP_N per bucket of one ground-truth characteristic (fractions)."""

    characteristic: str
    buckets: tuple[Bucket, ...]
    map_n: tuple[float, ...]
    num_ground_truth: tuple[int, ...]

    def bucket_labels(self) -> list[str]:
        """``"XS (0, 3]"``-style names; integer characteristics print as ranges ``2-4``."""
        out = []
        for name, lo, hi in self.buckets:
            if self.characteristic == "instances":
                a, b = int(lo) + 1, hi
                rng = f">{int(lo)}" if math.isinf(b) else (f"{a}" if a == int(b) else f"{a}-{int(b)}")
            else:
                rng = f">{lo:g}" if math.isinf(hi) else f"({lo:g}, {hi:g}]"
            out.append(f"{name} {rng}")
        return out


@dataclass(frozen=True, eq=False)
class Diagnosis:
    """The error diagnosis of one set of detections on one subset (see the module docstring).

    Attributes:
        subset, tiou, min_tiou, top_factor: what was analysed and how.
        classes: classes with ground truth in the subset (the rows of ``top`` / ``all``).
        num_ground_truth: ``(C,)`` instances per class.
        top: ``(C, 6)`` counts of :data:`KINDS` among the top ``floor(top_factor * G)``
            predictions of each class.
        all: ``(C, 6)`` the same over every prediction of the class.
        ap: ``(C,)`` ActivityNet interpolated AP at ``tiou``.
        gain: ``(C, 5)`` AP gained per class if the false positives of each of
            :data:`ERROR_TYPES` were removed.
        profile: ``{k: (6,) counts}`` of the kinds among the top ``k * G`` predictions,
            summed over classes, for ``k = 1..10`` (DETAD's false-positive profile).
        map_n: normalized mAP over all instances (the sensitivity reference).
        n_norm: ``N`` of the normalized AP (mean instances per class).
        sensitivity: one :class:`Sensitivity` per characteristic.
        kind, label, rank, video, start, end, score: ``(N,)`` per detection evaluated, in
            input order: its kind (index into :data:`KINDS`), class code (into
            ``all_classes``), rank in its class, video code (into ``video_ids``), segment in
            seconds and score.
        num_unscored: detections of classes without ground truth in the subset (in no count).
        all_classes: the dataset's classes (``label`` codes index them).
        video_ids: the subset's videos, sorted (``video`` codes index them).
    """

    subset: str
    tiou: float
    min_tiou: float
    top_factor: float
    classes: tuple[str, ...]
    num_ground_truth: np.ndarray
    top: np.ndarray
    all: np.ndarray
    ap: np.ndarray
    gain: np.ndarray
    profile: dict[int, np.ndarray]
    map_n: float
    n_norm: float
    sensitivity: tuple[Sensitivity, ...]
    kind: np.ndarray
    label: np.ndarray
    rank: np.ndarray
    video: np.ndarray
    start: np.ndarray
    end: np.ndarray
    score: np.ndarray
    num_unscored: int
    all_classes: tuple[str, ...]
    video_ids: tuple[str, ...]

    @property
    def map(self) -> float:
        """mAP at ``tiou`` (mean AP over ``classes``)."""
        return float(np.mean(self.ap)) if len(self.ap) else 0.0

    @property
    def map_gain(self) -> dict[str, float]:
        """mAP gained (fraction) if each error type were removed."""
        return {e: float(np.mean(self.gain[:, i])) if len(self.gain) else 0.0
                for i, e in enumerate(ERROR_TYPES)}

    def totals(self, which: str = "top") -> dict[str, int]:
        """Counts of each kind summed over classes: ``"top"`` (top-kG) or ``"all"``."""
        counts = (self.top if which == "top" else self.all).sum(axis=0)
        return {k: int(c) for k, c in zip(KINDS, counts)}

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (fractions; counts as ints)."""
        def kinds(row: np.ndarray) -> dict[str, int]:
            return {k: int(c) for k, c in zip(KINDS, row)}
        return {
            "method": "DETAD (Alwassel et al., ECCV 2018), ActivityNet matching",
            "subset": self.subset, "tiou": self.tiou, "min_tiou": self.min_tiou,
            "top_factor": self.top_factor, "map": self.map,
            "top": self.totals("top"), "all": self.totals("all"),
            "map_gain": self.map_gain, "num_unscored": self.num_unscored,
            "profile": {str(k): kinds(v) for k, v in self.profile.items()},
            "per_class": {c: {"num_ground_truth": int(g), "ap": float(a), "top": kinds(t),
                              "all": kinds(al),
                              "gain": {e: float(x) for e, x in zip(ERROR_TYPES, gn)}}
                          for c, g, a, t, al, gn in zip(self.classes, self.num_ground_truth,
                                                        self.ap, self.top, self.all, self.gain)},
            "map_n": self.map_n, "n_norm": self.n_norm,
            "sensitivity": {s.characteristic: {lab: {"map_n": m, "num_ground_truth": n}
                                               for lab, m, n in zip(s.bucket_labels(), s.map_n,
                                                                    s.num_ground_truth)}
                            for s in self.sensitivity},
        }

    def format_table(self) -> str:
        """The breakdown and the sensitivity as plain-text tables (percent / points)."""
        k = f"{self.top_factor:g}G"
        out = [f"Error diagnosis (DETAD, Alwassel et al. ECCV 2018), subset {self.subset!r}: "
               f"ActivityNet matching at tIoU {self.tiou:g}, mAP@{self.tiou:g} "
               f"{100 * self.map:.2f}%",
               f"False positives among the top-{k} predictions of each class (G = its "
               f"ground-truth count) and among all predictions; mAP gain if every false "
               f"positive of the type were removed:"]
        top, al, gain = self.totals("top"), self.totals("all"), self.map_gain
        n_top_fp = sum(top[e] for e in ERROR_TYPES)
        n_all_fp = sum(al[e] for e in ERROR_TYPES)
        w = max(len(n) for n in KIND_NAMES.values())
        out.append(f"  {'':<{w}}  {'top-' + k:>9} {'share':>7}  {'all':>9} {'share':>7}  "
                   f"{'mAP gain':>9}")
        for e in ERROR_TYPES:
            out.append(f"  {KIND_NAMES[e]:<{w}}  {top[e]:>9d} {_share(top[e], n_top_fp):>7}  "
                       f"{al[e]:>9d} {_share(al[e], n_all_fp):>7}  {100 * gain[e]:>+8.2f}p")
        out.append(f"  {'false positives':<{w}}  {n_top_fp:>9d} {'':>7}  {n_all_fp:>9d}")
        out.append(f"  {'true positives':<{w}}  {top['true_positive']:>9d} {'':>7}  "
                   f"{al['true_positive']:>9d}")
        if self.num_unscored:
            out.append(f"  ({self.num_unscored} detections of classes without ground truth in "
                       "the subset are in no count: they change no AP)")
        out.append("")
        out.append(f"Sensitivity: normalized mAP_N (%) at tIoU {self.tiou:g} per ground-truth "
                   f"bucket (N = {self.n_norm:.1f} instances per class; all instances: "
                   f"{100 * self.map_n:.2f}%)")
        for s in self.sensitivity:
            labels = s.bucket_labels()
            cw = max(9, *(len(x) for x in labels))
            out.append(f"  {CHARACTERISTICS.get(s.characteristic, s.characteristic)}")
            out.append("    " + f"{'bucket':<10}" + " ".join(f"{x:>{cw}}" for x in labels))
            out.append("    " + f"{'instances':<10}"
                       + " ".join(f"{n:>{cw}d}" for n in s.num_ground_truth))
            out.append("    " + f"{'mAP_N (%)':<10}"
                       + " ".join(f"{'-' if math.isnan(m) else f'{100 * m:.2f}':>{cw}}"
                                  for m in s.map_n))
        return "\n".join(out)


def _share(n: int, total: int) -> str:
    return f"{100 * n / total:.1f}%" if total else "-"


def diagnose(gt: Annotations, detections: Detections | DetectionDict, subset: str | None = None,
             tiou: float = 0.5, min_tiou: float = 0.1, top_factor: float = 1.0,
             length_buckets: Sequence[Bucket] = LENGTH_BUCKETS,
             instance_buckets: Sequence[Bucket] = INSTANCE_BUCKETS,
             profile_factors: Iterable[int] = range(1, 11),
             ignore_unknown_videos: bool = False, where: str = "detections") -> Diagnosis:
    """The DETAD error diagnosis of ``detections`` against ``gt`` on ``subset``.

    Args:
        gt: ground truth; times in seconds.
        detections: :class:`Detections` or ``{video_id: [(start_s, end_s, label, score)]}``.
        subset: default ``gt.test_subset``.
        tiou: the threshold of a true positive (ActivityNet: ``>= tiou``).
        min_tiou: below it with every instance, a false positive is background.
        top_factor: :attr:`Diagnosis.top` counts the top ``floor(top_factor * G)``
            predictions of each class.
        length_buckets, instance_buckets: the sensitivity buckets ``(name, lo, hi]``.
        profile_factors: the ``k`` of :attr:`Diagnosis.profile`.
        ignore_unknown_videos, where: as for :func:`acn.evaluate.evaluate` (the same checks).

    Raises :class:`acn.errors.AcnError` as :func:`acn.evaluate.evaluate` does, and for
    thresholds outside ``0 < min_tiou <= tiou <= 1``.
    """
    from acn.errors import AcnError

    if not 0.0 < min_tiou <= tiou <= 1.0:
        raise AcnError(f"diagnosis thresholds must satisfy 0 < min_tiou <= tiou <= 1, got "
                       f"min_tiou={min_tiou}, tiou={tiou}")
    subset = gt.test_subset if subset is None else subset
    flat = flatten(gt, detections, subset, ignore_unknown_videos, where)
    n_classes = len(gt.classes)
    gv, gl, gs, ge = flat.gt_arrays
    if len(gl) == 0:
        raise AcnError(f"{gt.name}: subset {subset!r} has no ground-truth segment to diagnose")
    kind, matched, rank = classify_detections(gv, gl, gs, ge, *flat.det_arrays, n_classes,
                                              tiou, min_tiou)
    label = flat.det_label
    npos = np.bincount(gl, minlength=n_classes)
    rows = np.flatnonzero(npos > 0)

    ap = class_aps(kind, label, rank, npos)
    gain = np.stack([class_aps(kind, label, rank, npos, kind != e) - ap
                     for e in range(1, len(KINDS))], axis=1)
    n_norm = float(npos[rows].mean())
    map_n = float(np.nanmean(class_aps(kind, label, rank, npos, n_norm=n_norm)))
    sens = []
    for name, buckets, values in (("length", length_buckets, ge - gs),
                                  ("instances", instance_buckets, instances_per_video(gv, gl))):
        maps, n_gt = bucket_maps(kind, label, rank, matched, gl, bucket_index(values, buckets),
                                 len(buckets), n_classes, n_norm)
        sens.append(Sensitivity(name, tuple(buckets), tuple(float(m) for m in maps),
                                tuple(int(n) for n in n_gt)))
    return Diagnosis(
        subset=subset, tiou=float(tiou), min_tiou=float(min_tiou), top_factor=float(top_factor),
        classes=tuple(gt.classes[c] for c in rows), num_ground_truth=npos[rows],
        top=kind_counts(kind, label, rank, npos, top_factor)[rows],
        all=kind_counts(kind, label, rank, npos)[rows], ap=ap[rows], gain=gain[rows],
        profile={int(k): kind_counts(kind, label, rank, npos, float(k)).sum(axis=0)
                 for k in profile_factors},
        map_n=map_n, n_norm=n_norm, sensitivity=tuple(sens), kind=kind, label=label,
        rank=rank, video=flat.det_video, start=flat.det_start, end=flat.det_end,
        score=flat.det_score, num_unscored=int(np.count_nonzero(npos[label] == 0)),
        all_classes=tuple(gt.classes),
        video_ids=tuple(v.id for v in flat.videos))
