"""The data behind the report's per-video timelines, embedded in the page as JSON.

For each video (all of the evaluated subset, or an even sample of ``max_videos``): its ground
truth, each stream's SCP of the video's classes and attention (downsampled to at most
``max_points`` points by the MAXIMUM over equal bins, so that no peak disappears), and the
``top`` highest-scored detections of each method with their kind from the error diagnosis.
Times in seconds; the page's script (``assets/report.js``) draws them with Plotly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from acn.data.annotations import Video
from acn.evaluate.diagnose import Diagnosis
from acn.train.outputs import BaseOutputs


@dataclass(frozen=True)
class TimelineNotes:
    """What was left out or thinned, said on the page."""

    videos_total: int
    videos_shown: int
    downsampled_videos: int
    max_points: int
    capped_detections: int
    top: int


def choose_videos(videos: Sequence[Video], max_videos: int) -> list[Video]:
    """All videos (sorted by id) or, beyond ``max_videos``, an even sample of them."""
    videos = sorted(videos, key=lambda v: v.id)
    if len(videos) <= max_videos:
        return list(videos)
    idx = np.unique(np.linspace(0, len(videos) - 1, max_videos).round().astype(int))
    return [videos[i] for i in idx]


def downsample_max(x: np.ndarray, max_points: int) -> tuple[np.ndarray, int]:
    """``(y, factor)``: ``x`` ``(T,)`` reduced to ``ceil(T / factor)`` points, each the
    maximum of ``factor`` consecutive values (the last bin may be shorter)."""
    x = np.asarray(x, dtype=np.float64)
    factor = max(1, math.ceil(len(x) / max_points))
    if factor == 1:
        return x, 1
    pad = (-len(x)) % factor
    padded = np.concatenate([x, np.full(pad, -np.inf)]) if pad else x
    return padded.reshape(-1, factor).max(axis=1), factor


def _r(x: np.ndarray | Sequence[float], nd: int) -> list[float | None]:
    """Rounded values for the page's JSON; a non-finite value is ``null`` (a gap in the
    curve: JSON has no NaN)."""
    return [round(v, nd) if math.isfinite(v) else None
            for v in np.asarray(x, dtype=np.float64).tolist()]


def timeline_data(videos: Sequence[Video], classes: Sequence[str],
                  outputs: Mapping[str, Mapping[str, BaseOutputs]] | None,
                  diags: Mapping[str, Diagnosis], thresholds: Mapping[str, float] | None = None,
                  max_points: int = 600, top: int = 40) -> tuple[dict[str, Any], TimelineNotes]:
    """The JSON object the page's timeline script reads, and what was thinned.

    Args:
        videos: the videos to include (see :func:`choose_videos`).
        classes: class names (codes index them).
        outputs: ``{stream: {video_id: BaseOutputs}}`` (SCP ``(C, T)``, attention ``(T,)`` in
            snippets) or ``None`` (no curves drawn).
        diags: ``{method: Diagnosis}``: each method's detections and their kinds.
        thresholds: ``{stream: attention threshold}`` drawn as a dashed line.
        max_points: most points per curve.
        top: most detections per method and video (the highest-scored).
    """
    outputs = outputs or {}
    methods = list(diags)
    # per method: rows of each video, and the score range that maps to opacity 0.15..1
    per_video: dict[str, dict[str, np.ndarray]] = {}
    ranges = {}
    for m, d in diags.items():
        vid_rows: dict[str, np.ndarray] = {}
        order = np.lexsort((-d.score, d.video))  # by video, best score first
        if len(order):
            bounds = np.flatnonzero(np.diff(d.video[order])) + 1
            for chunk in np.split(order, bounds):
                vid_rows[d.video_ids[int(d.video[chunk[0]])]] = chunk
        per_video[m] = vid_rows
        lo, hi = (float(d.score.min()), float(d.score.max())) if len(d.score) else (0.0, 1.0)
        ranges[m] = (lo, hi)

    out_videos, downsampled, capped = [], 0, 0
    class_index = {c: i for i, c in enumerate(classes)}
    for v in videos:
        entry: dict[str, Any] = {
            "id": v.id, "duration": round(float(v.duration), 2),
            "labels": sorted({s.label for s in v.segments} | set(v.labels)),
            "gt": [[round(s.start, 2), round(s.end, 2), class_index[s.label]]
                   for s in v.segments if s.label in class_index],
        }
        streams = [s for s in outputs if v.id in outputs[s]]
        if streams:
            sec = v.frames_per_snippet / v.fps  # seconds per snippet
            shown = [class_index[c] for c in entry["labels"] if c in class_index]
            # the video's own classes, and the one its base models score highest
            for s in streams:
                best = int(np.argmax(outputs[s][v.id].video_scores))
                if best not in shown:
                    shown.append(best)
            scp, att, factor = {}, {}, 1
            for s in streams:
                o = outputs[s][v.id]
                scp[s] = {}
                for c in shown:
                    y, factor = downsample_max(o.scp[c], max_points)
                    scp[s][str(c)] = _r(y, 3)
                y, factor = downsample_max(o.attention, max_points)
                att[s] = _r(y, 3)
            downsampled += factor > 1
            entry.update(dt=round(sec * factor, 5), scp=scp, att=att)
        dets = []
        for m in methods:
            d, rows = diags[m], per_video[m].get(v.id, np.zeros(0, dtype=np.int64))
            capped += max(0, len(rows) - top)
            rows = rows[:top]
            lo, hi = ranges[m]
            opac = 0.15 + 0.85 * (d.score[rows] - lo) / (hi - lo) if hi > lo else \
                np.ones(len(rows))
            dets.append([[round(float(d.start[i]), 2), round(float(d.end[i]), 2),
                          int(d.label[i]), round(float(d.score[i]), 4), round(float(a), 2),
                          int(d.kind[i])] for i, a in zip(rows.tolist(), opac)])
        entry["dets"] = dets
        out_videos.append(entry)
    data = {"classes": list(classes), "methods": methods, "videos": out_videos,
            "thresholds": {s: round(float(t), 4) for s, t in (thresholds or {}).items()},
            "top": top}
    notes = TimelineNotes(len(videos), len(out_videos), downsampled, max_points, capped, top)
    return data, notes
