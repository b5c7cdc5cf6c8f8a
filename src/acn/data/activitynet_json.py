"""ActivityNet-style ground-truth JSON.

::

    {"database": {"<video>": {"subset": "training", "duration": 39.6,
                              "annotations": [{"segment": [1.6, 6.1], "label": "Washing dishes"}]}}}

Also read, as found in the wild: times written as strings (BaSNet's ``gt.json``), no
``duration`` (BaSNet; the largest segment end is used, with one warning), capitalised subsets
(ActionFormer's ``"Test"``; subsets are lower-cased), a per-video ``fps`` (ActionFormer; taken
as the feature frame rate) and optional ``frames_per_snippet``, ``labels`` and ``ambiguous``
(acn's canonical index). The class list is a top-level ``classes`` list when present, otherwise
the sorted set of segment and video labels. Times are seconds.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

from acn.data.annotations import Annotations, Segment, Video, clean_segment, infer_splits
from acn.data.annotations import aggregate_clip_warnings
from acn.data.wtalc import DEFAULT_FPS, DEFAULT_FRAMES_PER_SNIPPET
from acn.errors import AcnError
from acn.fileio import read_json


def read_json_strict(path: Path, what: str = "JSON file") -> Any:
    """:func:`acn.fileio.read_json`: a key given twice (a duplicate video id) is an error, since
    ``json`` alone silently keeps the last of two equal keys."""
    return read_json(path, what)


def _number(x: Any, what: str, where: str) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise AcnError(f"{where}: {what} {x!r} is not a number") from None
    if not math.isfinite(v):
        raise AcnError(f"{where}: {what} {x!r} is not a finite number")
    return v


def _segment(a: Any, where: str) -> tuple[float, float, str]:
    if not isinstance(a, dict) or "segment" not in a or "label" not in a:
        raise AcnError(f"{where}: annotation {a!r:.80} needs 'segment' and 'label'")
    seg = a["segment"]
    if not isinstance(seg, (list, tuple)) or len(seg) != 2:
        raise AcnError(f"{where}: segment {seg!r:.80} is not [start, end]")
    return _number(seg[0], "segment start", where), _number(seg[1], "segment end", where), \
        str(a["label"])


def annotations_from_activitynet(obj: Any, where: str, classes: list[str] | None = None,
                                 name: str | None = None) -> Annotations:
    """Build :class:`Annotations` from a parsed ActivityNet-style JSON object.

    ``where`` names the source in messages. ``classes`` overrides the class list (labels not in
    it raise :class:`AcnError`).
    """
    if not isinstance(obj, dict) or not isinstance(obj.get("database"), dict):
        raise AcnError(f"{where}: not an ActivityNet-style ground truth (expected "
                       '{"database": {video: {"subset", "duration", "annotations": [...]}}})')
    db: dict[str, Any] = obj["database"]
    videos: dict[str, Video] = {}
    no_duration: list[str] = []
    with aggregate_clip_warnings(where):
        for vid, e in db.items():
            w = f"{where}: video {vid}"
            if not isinstance(e, dict):
                raise AcnError(f"{w}: entry is a {type(e).__name__}, expected an object")
            if "subset" not in e:
                raise AcnError(f"{w}: has no 'subset'")
            anns = e.get("annotations", [])
            if not isinstance(anns, list):
                raise AcnError(f"{w}: 'annotations' is not a list")
            raw = [_segment(a, w) for a in anns]
            for s, t, _ in raw:  # checked here so that a missing duration cannot hide them
                if s < 0 or t < 0:
                    raise AcnError(f"{w}: segment [{s}, {t}] has a negative time")
                if t < s:
                    raise AcnError(f"{w}: segment end {t} is before its start {s}")
            amb_raw = e.get("ambiguous", [])
            try:
                amb = [(_number(a, "ambiguous start", w), _number(b, "ambiguous end", w))
                       for a, b in amb_raw]
            except (TypeError, ValueError):
                raise AcnError(f"{w}: 'ambiguous' is not a list of [start, end]") from None
            if e.get("duration") is None:
                no_duration.append(vid)
                duration = max([t for _, t, _ in raw] + [b for _, b in amb] + [0.0])
            else:
                duration = _number(e["duration"], "duration", w)
                if duration <= 0:
                    raise AcnError(f"{w}: duration {duration} is not positive")
            segs = []
            for s, t, lab in raw:
                se = clean_segment(s, t, duration, w)
                if se is not None:
                    segs.append(Segment(se[0], se[1], lab))
            labels = e.get("labels", [])
            if not isinstance(labels, list):
                raise AcnError(f"{w}: 'labels' is not a list")
            videos[str(vid)] = Video(
                id=str(vid), subset=str(e["subset"]).lower(), duration=duration,
                labels=tuple(sorted({str(x) for x in labels} | {lab for _, _, lab in raw})),
                segments=segs, ambiguous=amb,
                fps=_number(e.get("fps", DEFAULT_FPS), "fps", w),
                frames_per_snippet=int(_number(e.get("frames_per_snippet",
                                                     DEFAULT_FRAMES_PER_SNIPPET),
                                               "frames_per_snippet", w)))
    if not videos:
        raise AcnError(f"{where}: 'database' lists no video")
    if no_duration:
        warnings.warn(f"{where}: {len(no_duration)} video(s) have no duration (e.g. "
                      f"{', '.join(no_duration[:3])}); using their last segment end instead",
                      stacklevel=2)
    if classes is None and isinstance(obj.get("classes"), list):
        classes = [str(c) for c in obj["classes"]]
    if classes is None:
        classes = sorted({lab for v in videos.values() for lab in v.labels})
    train, test = infer_splits({v.subset for v in videos.values()})
    ann = Annotations(classes=list(classes), videos=videos,
                      train_subset=str(obj.get("train_subset", train)),
                      test_subset=str(obj.get("test_subset", test)),
                      name=name or str(obj.get("name", Path(where).stem)))
    for v in videos.values():
        for lab in v.labels:
            ann.class_index(lab, f"{where}: video {v.id}")
    return ann


def load_activitynet_json(path: Path, classes: list[str] | None = None) -> Annotations:
    """Read an ActivityNet-style ground-truth JSON file (times in seconds)."""
    path = Path(path)
    obj = read_json_strict(path, "ground-truth JSON")
    return annotations_from_activitynet(
        obj, str(path), classes, name=path.parent.name if path.stem == "gt" else path.stem)
