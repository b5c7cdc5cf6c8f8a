"""The canonical layout: what ``acn synth`` and ``acn extract`` write and ``acn`` reads fastest.

::

    DIR/
      index.json                      dataset index (below)
      features/{video}_rgb.npy        float32 (T, D), plain .npy (memory-mappable, no pickle)
      features/{video}_flow.npy       float32 (T, D), same T and D as RGB

``index.json``::

    {"format": "acn-canonical", "version": 1, "name": "...",
     "classes": ["BaseballPitch", ...], "train_subset": "validation", "test_subset": "test",
     "database": {"<video>": {"subset": "test", "duration": 162.3, "fps": 25.0,
                              "frames_per_snippet": 16, "num_snippets": 253,
                              "labels": ["Billiards"],
                              "annotations": [{"segment": [67.5, 75.9], "label": "Billiards"}],
                              "ambiguous": [[1.0, 2.5]]}}}

``database`` follows the ActivityNet JSON shape, so the index is also a valid ground-truth
file for ``acn evaluate``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from acn.data.annotations import Annotations, Segment, Video, aggregate_clip_warnings, clean_segment
from acn.data.features import Dataset, PairedNpyStore
from acn.errors import AcnError
from acn.fileio import ensure_dir, read_json, save_npy, write_json

FORMAT = "acn-canonical"
INDEX = "index.json"


def feature_paths(root: Path, video_id: str) -> tuple[Path, Path]:
    return root / "features" / f"{video_id}_rgb.npy", root / "features" / f"{video_id}_flow.npy"


def is_canonical(root: Path) -> bool:
    p = Path(root) / INDEX
    if not p.is_file():
        return False
    try:
        return read_json(p).get("format") == FORMAT
    except AttributeError:
        return False
    except AcnError:
        # A broken index of ours (duplicate key, bad JSON): say what is wrong with it rather
        # than "no dataset layout recognised".
        return f'"{FORMAT}"' in p.read_text(encoding="utf-8", errors="replace")


def annotations_to_json(ann: Annotations, num_snippets: dict[str, int] | None = None) -> dict:
    db = {}
    for v in sorted(ann.videos.values(), key=lambda v: v.id):
        entry = {
            "subset": v.subset,
            "duration": v.duration,
            "fps": v.fps,
            "frames_per_snippet": v.frames_per_snippet,
            "labels": list(v.labels),
            "annotations": [{"segment": [s.start, s.end], "label": s.label} for s in v.segments],
            "ambiguous": [list(a) for a in v.ambiguous],
        }
        if num_snippets and v.id in num_snippets:
            entry["num_snippets"] = int(num_snippets[v.id])
        db[v.id] = entry
    return {
        "format": FORMAT,
        "version": 1,
        "name": ann.name,
        "classes": list(ann.classes),
        "train_subset": ann.train_subset,
        "test_subset": ann.test_subset,
        "database": db,
    }


def annotations_from_json(obj: dict, where: str) -> Annotations:
    try:
        classes = [str(c) for c in obj["classes"]]
        db = obj["database"]
    except (KeyError, TypeError):
        raise AcnError(f"{where}: not an acn index (needs 'classes' and 'database')") from None
    videos = {}
    for vid, e in db.items():
        try:
            duration = float(e["duration"])
            segs = []
            for a in e.get("annotations", []):
                se = clean_segment(float(a["segment"][0]), float(a["segment"][1]), duration,
                                   f"{where}: video {vid}")
                if se is not None:
                    segs.append(Segment(se[0], se[1], str(a["label"])))
            labels = tuple(sorted(set(e.get("labels") or [s.label for s in segs])))
            videos[vid] = Video(
                id=vid, subset=str(e["subset"]), duration=duration, labels=labels, segments=segs,
                ambiguous=[(float(a), float(b)) for a, b in e.get("ambiguous", [])],
                fps=float(e.get("fps", 25.0)), frames_per_snippet=int(e.get("frames_per_snippet", 16)),
            )
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise AcnError(f"{where}: video {vid!r} entry is malformed ({err!r})") from None
    ann = Annotations(classes=classes, videos=videos,
                      train_subset=str(obj.get("train_subset", "validation")),
                      test_subset=str(obj.get("test_subset", "test")),
                      name=str(obj.get("name", Path(where).parent.name)))
    for v in videos.values():
        for lab in list(v.labels) + [s.label for s in v.segments]:
            ann.class_index(lab, f"{where}: video {v.id}")
    return ann


def load_canonical(root: Path) -> Dataset:
    """Open a canonical folder; features stay on disk (memory-mapped on access)."""
    root = Path(root)
    index = root / INDEX
    with aggregate_clip_warnings(str(index)):
        ann = annotations_from_json(read_json(index, "dataset index"), str(index))
    return Dataset(ann, PairedNpyStore(lambda vid: feature_paths(root, vid)), root=root)


def save_canonical(root: Path, ann: Annotations,
                   features: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> Path:
    """Write features (if given) and ``index.json``; each file is written atomically."""
    root = ensure_dir(Path(root))
    ensure_dir(root / "features")
    num = {}
    for vid, (rgb, flow) in (features or {}).items():
        rp, fp = feature_paths(root, vid)
        save_npy(rp, np.asarray(rgb, dtype=np.float32))
        save_npy(fp, np.asarray(flow, dtype=np.float32))
        num[vid] = len(rgb)
    write_json(root / INDEX, annotations_to_json(ann, num))
    return root
