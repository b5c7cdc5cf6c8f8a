"""CAS-thresholding baseline: detections straight from the base model's SCP.

For each class the video is predicted to contain, threshold the class activation sequence
(the SCP row of the class) at one or several levels, take the runs of snippets above each
level as segments, score them, and remove duplicates with NMS. This is the trivial baseline
every W-TAL method must beat (DESIGN.md, "Evaluation habits").

Units: snippets inside (:func:`cas_segments`), seconds in the detections
(:func:`cas_detections`): ``dict[video_id, list[(start_s, end_s, label, score)]]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from acn.config import over_defaults
from acn.data.annotations import Annotations
from acn.data.features import Dataset
from acn.errors import AcnError
from acn.localize.nms import nms

Detection = tuple[float, float, str, float]

#: Defaults of the CAS baseline. Every key:
#:
#: - ``class_threshold``: keep the classes whose video score is >= this (the paper's 0.1).
#: - ``top_classes``: when no class passes ``class_threshold``, keep this many best-scoring
#:   classes anyway (0 = none; a video then has no detection).
#: - ``threshold_mode``: ``"relative"``: a level ``t`` means ``min + t * (max - min)`` of the
#:   class's CAS over the video (W-TALC style); ``"absolute"``: ``t`` is compared with the
#:   CAS (a probability) directly.
#: - ``thresholds``: the levels; a snippet belongs to a segment when its CAS is strictly above
#:   the level. Several levels give overlapping proposals that NMS sorts out.
#: - ``attention``: ``"none"``; ``"weight"``: multiply the CAS by the video's attention
#:   min-max normalised to [0, 1]; ``"gate"``: snippets whose raw attention is below
#:   ``attention_threshold`` never belong to a segment.
#: - ``attention_threshold``: raw attention level for ``"gate"`` (see
#:   :func:`acn.train.outputs.calibrate_attention`).
#: - ``min_length``: drop segments shorter than this many snippets.
#: - ``score``: ``"mean"`` (mean CAS inside) or ``"contrast"`` (mean inside minus mean of the
#:   outer area, the segment inflated by ``inflation`` of its length on each side: AutoLoc's
#:   outer-inner contrast with the sign flipped so that higher is better).
#: - ``inflation``: outer area width as a fraction of the segment length (at least 1 snippet).
#: - ``video_score_weight``: add this times the class's video score to every segment's score.
#: - ``nms_iou``: class-wise greedy NMS IoU threshold (ACN's test-time value 0.4).
#: - ``max_per_video``: keep at most this many detections per video (None = all).
#:
#: Chosen on the TRAINING videos of ``acn.data.synth`` THUMOS14 (seed 0) with the default base
#: model, THUMOS14 protocol mAP@0.1/0.3/0.5/0.7 (test split in brackets for reference):
#: Flow 57.6/48.3/29.9/7.6 [53.7/44.1/25.4/6.9], RGB 44.9/36.7/25.4/8.0 [44.6/37.3/24.2/7.6].
#: At mAP@0.5 (train videos, Flow / RGB): the mean CAS instead of the outer-inner contrast
#: gives 15.1 / 16.6; the single W-TALC level 0.5 instead of nine levels 17.1 / 16.7;
#: min_length 1 and 3 give 26.5 / 24.4 and 26.5 / 24.1 (a one-snippet run is mostly noise);
#: attention weighting 17.8 / 22.8. NMS 0.5 loses at low tIoU, an attention gate at the 30th
#: training percentile is neutral, adding the video score is slightly worse.
DEFAULT_BASELINE_CONFIG: dict[str, Any] = {
    "class_threshold": 0.1,
    "top_classes": 1,
    "threshold_mode": "relative",
    "thresholds": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
    "attention": "none",
    "attention_threshold": None,
    "min_length": 2,
    "score": "contrast",
    "inflation": 0.25,
    "video_score_weight": 0.0,
    "nms_iou": 0.4,
    "max_per_video": None,
}


def resolve_baseline_config(cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    """Merge ``cfg`` over :data:`DEFAULT_BASELINE_CONFIG`, validating every key."""
    out = over_defaults(cfg, DEFAULT_BASELINE_CONFIG, "baseline config")
    if out["threshold_mode"] not in ("relative", "absolute"):
        raise AcnError(f"baseline config: threshold_mode must be 'relative' or 'absolute', got "
                       f"{out['threshold_mode']!r}")
    th = np.asarray(out["thresholds"], dtype=float).ravel()
    if th.size == 0 or not np.isfinite(th).all():
        raise AcnError(f"baseline config: thresholds must be a non-empty list of numbers, got "
                       f"{out['thresholds']!r}")
    out["thresholds"] = th.tolist()
    if out["attention"] not in ("none", "weight", "gate"):
        raise AcnError(f"baseline config: attention must be 'none', 'weight' or 'gate', got "
                       f"{out['attention']!r}")
    if out["attention"] == "gate" and out["attention_threshold"] is None:
        raise AcnError("baseline config: attention='gate' needs an attention_threshold")
    if out["score"] not in ("mean", "contrast"):
        raise AcnError(f"baseline config: score must be 'mean' or 'contrast', got "
                       f"{out['score']!r}")
    if out["min_length"] < 1 or out["top_classes"] < 0 or out["inflation"] < 0:
        raise AcnError("baseline config: min_length must be >= 1, top_classes >= 0 and "
                       "inflation >= 0")
    if out["max_per_video"] is not None and out["max_per_video"] < 1:
        raise AcnError(f"baseline config: max_per_video must be >= 1 or None, got "
                       f"{out['max_per_video']!r}")
    return out


def mask_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of True (connected components) in each row of a boolean ``(K, T)`` mask.

    Returns:
        ``(rows, starts, ends)``, each ``(N,)`` int: run ``n`` covers snippets
        ``[starts[n], ends[n])`` of row ``rows[n]`` (end exclusive), ordered by row then start.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask_runs: expected a (K, T) mask, got shape {mask.shape}")
    edges = np.diff(np.pad(mask.astype(np.int8), ((0, 0), (1, 1))), axis=1)
    # Row-major nonzero keeps (row, position) order, so the k-th start pairs with the k-th end.
    rows, starts = np.nonzero(edges == 1)
    _, ends = np.nonzero(edges == -1)
    return rows, starts, ends


def _range_means(csum: np.ndarray, rows: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean of row ``rows[n]`` over ``[a[n], b[n])`` from prefix sums ``csum`` ``(K, T + 1)``."""
    return (csum[rows, b] - csum[rows, a]) / np.maximum(b - a, 1)


def cas_segments(scp: np.ndarray, video_scores: np.ndarray, attention: np.ndarray | None = None,
                 cfg: Mapping[str, Any] | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CAS-thresholding proposals of one video, in snippets, after NMS.

    Args:
        scp: ``(C, T)`` snippet class probabilities.
        video_scores: ``(C,)`` video-level class scores.
        attention: ``(T,)`` raw attention (needed by ``attention="weight"/"gate"``).
        cfg: options over :data:`DEFAULT_BASELINE_CONFIG`.

    Returns:
        ``(segments (N, 2) float [start, end) in snippets, labels (N,) int class indices,
        scores (N,) float)``, sorted by score descending.
    """
    cfg = resolve_baseline_config(cfg)
    scp = np.asarray(scp, dtype=np.float64)
    video_scores = np.asarray(video_scores, dtype=np.float64).ravel()
    if scp.ndim != 2 or video_scores.shape != (scp.shape[0],):
        raise AcnError(f"cas_segments: scp {scp.shape} and video_scores {video_scores.shape} do "
                       "not match (expected (C, T) and (C,))")
    T = scp.shape[1]
    empty = (np.zeros((0, 2)), np.zeros(0, dtype=np.int64), np.zeros(0))

    classes = np.flatnonzero(video_scores >= cfg["class_threshold"])
    if classes.size == 0 and cfg["top_classes"] > 0:
        classes = np.argsort(-video_scores, kind="stable")[: cfg["top_classes"]]
    if classes.size == 0 or T == 0:
        return empty
    cas = scp[classes]  # (K, T)
    gate = np.ones(T, dtype=bool)
    if cfg["attention"] != "none":
        if attention is None or np.shape(attention) != (T,):
            raise AcnError(f"cas_segments: attention={cfg['attention']!r} needs a ({T},) "
                           f"attention, got {None if attention is None else np.shape(attention)}")
        att = np.asarray(attention, dtype=np.float64)
        if cfg["attention"] == "weight":
            span = att.max() - att.min()
            cas = cas * ((att - att.min()) / span if span > 0 else np.ones(T))
        else:
            gate = att >= cfg["attention_threshold"]

    th = np.asarray(cfg["thresholds"])  # (L,)
    if cfg["threshold_mode"] == "relative":
        lo, hi = cas.min(1, keepdims=True), cas.max(1, keepdims=True)
        levels = lo + th[None, :] * (hi - lo)  # (K, L)
    else:
        levels = np.broadcast_to(th[None, :], (len(classes), len(th)))
    masks = (cas[:, None, :] > levels[:, :, None]) & gate  # (K, L, T)
    rows, s, e = mask_runs(masks.reshape(-1, T))
    keep = (e - s) >= cfg["min_length"]
    rows, s, e = rows[keep], s[keep], e[keep]
    if rows.size == 0:
        return empty
    krow = rows // len(th)  # index into `classes`

    csum = np.concatenate([np.zeros((len(classes), 1)), np.cumsum(cas, axis=1)], axis=1)
    inner = _range_means(csum, krow, s, e)
    score = inner
    if cfg["score"] == "contrast":
        pad = np.maximum(1, np.round(cfg["inflation"] * (e - s))).astype(np.int64)
        os_, oe = np.maximum(0, s - pad), np.minimum(T, e + pad)
        outer_len = (oe - os_) - (e - s)
        outer_sum = (csum[krow, oe] - csum[krow, os_]) - (csum[krow, e] - csum[krow, s])
        # A segment covering the whole video has no outer area: contrast with 0.
        outer = np.where(outer_len > 0, outer_sum / np.maximum(outer_len, 1), 0.0)
        score = inner - outer
    labels = classes[krow]
    score = score + cfg["video_score_weight"] * video_scores[labels]
    segs = np.stack([s, e], axis=1).astype(np.float64)

    keep = nms(segs, score, labels, iou_threshold=cfg["nms_iou"], max_dets=cfg["max_per_video"])
    return segs[keep], labels[keep], score[keep]


def cas_detections(outputs: Mapping[str, Any], source: Annotations | Dataset,
                   cfg: Mapping[str, Any] | None = None) -> dict[str, list[Detection]]:
    """CAS-thresholding detections for every video in ``outputs``, in seconds.

    Args:
        outputs: ``{video_id: BaseOutputs}`` (anything with ``scp``, ``attention`` and
            ``video_scores``), e.g. from :func:`acn.train.base.predict_base`.
        source: annotations (or dataset) giving each video's class list, fps,
            frames_per_snippet and duration.
        cfg: options over :data:`DEFAULT_BASELINE_CONFIG`.

    Returns:
        ``{video_id: [(start_s, end_s, label, score), ...]}`` sorted by score descending;
        segments are clipped to the video's duration.
    """
    cfg = resolve_baseline_config(cfg)
    classes = source.classes
    out: dict[str, list[Detection]] = {}
    for vid, v, o in _videos_of(outputs, source, "cas_detections"):
        segs, labels, scores = cas_segments(o.scp, o.video_scores, o.attention, cfg)
        sec = segs * (v.frames_per_snippet / v.fps)
        if v.duration > 0:
            sec = np.minimum(sec, v.duration)
        out[vid] = [(float(a), float(b), classes[int(c)], float(sc))
                    for (a, b), c, sc in zip(sec, labels, scores) if b > a]
    return out


def whole_video_detections(outputs: Mapping[str, Any], source: Annotations | Dataset,
                           class_threshold: float = 0.1, top_classes: int = 1
                           ) -> dict[str, list[Detection]]:
    """The trivial baseline of DESIGN.md: the whole video as one detection of each predicted
    class (video score >= ``class_threshold``, else the ``top_classes`` best), scored by the
    video score. Strong where actions fill most of each video (ActivityNet).

    Returns ``{video_id: [(0.0, duration_s, label, score), ...]}`` sorted by score; the
    duration is the annotated one, or the snippet count times the snippet length without it.
    """
    classes = source.classes
    out: dict[str, list[Detection]] = {}
    for vid, v, o in _videos_of(outputs, source, "whole_video_detections"):
        vs = np.asarray(o.video_scores, dtype=np.float64)
        pick = np.flatnonzero(vs >= class_threshold)
        if pick.size == 0 and top_classes > 0:
            pick = np.argsort(-vs, kind="stable")[:top_classes]
        end = v.duration if v.duration > 0 else np.shape(o.scp)[1] * v.frames_per_snippet / v.fps
        pick = pick[np.argsort(-vs[pick], kind="stable")]
        out[vid] = [(0.0, float(end), classes[int(c)], float(vs[c])) for c in pick]
    return out


def _videos_of(outputs: Mapping[str, Any], source: Annotations | Dataset, who: str):
    """``(video_id, Video, outputs)`` for each video of ``outputs``, checked against the
    annotations (known video, one SCP row and one video score per class)."""
    classes = source.classes
    videos = source.annotations.videos if isinstance(source, Dataset) else source.videos
    for vid, o in outputs.items():
        if vid not in videos:
            raise AcnError(f"{who}: video {vid!r} is not in the annotations")
        if np.shape(o.scp)[0] != len(classes) or np.shape(o.video_scores) != (len(classes),):
            raise AcnError(f"{who}: video {vid!r} has SCP for {np.shape(o.scp)[0]} classes "
                           f"and {np.shape(o.video_scores)} video scores but the dataset has "
                           f"{len(classes)} classes")
        yield vid, videos[vid], o
