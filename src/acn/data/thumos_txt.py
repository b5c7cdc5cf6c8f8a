"""The official THUMOS14 per-class annotation files.

::

    annotations_val/                      (or annotations_test/, or a folder holding both)
      BaseballPitch_val.txt ...           `video start end` per line, seconds
      Ambiguous_val.txt                   parts of videos left out of the evaluation

The subset comes from the file names (``val`` -> ``validation``, as W-TALC names it). Durations
come from the official metadata (``thumos14-val-meta.mat``, ``test_set_meta.mat``: any ``*.mat``
with ``video_name`` and ``video_duration_seconds`` fields in the folder, its parent or
grandparent, or given explicitly); a video the metadata does not list gets its last segment end
as duration, with one warning. Reading ``.mat`` needs scipy (an optional dependency).

Videos appear only if one of the class files lists them: video_test_0001292, which has only
ambiguous segments, is left out (as in W-TALC's 412-video THUMOS14). CliffDiving segments that are
also listed in Diving stay in both classes (THUMOS convention).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Iterable

from acn.data.annotations import Annotations, Segment, Video, clean_segment, infer_splits
from acn.data.annotations import aggregate_clip_warnings
from acn.data.wtalc import read_interval_file
from acn.errors import AcnError

_FILE = re.compile(r"^(?P<cls>.+)_(?P<subset>[A-Za-z]+)\.txt$")
_SUBSET_NAMES = {"val": "validation"}


def _looks_like_segments(path: Path) -> bool:
    """First non-empty line is `video start end` (tells class files from e.g. split_test.txt)."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if parts:
                    float(parts[1]), float(parts[2])
                    return len(parts) == 3
    except (OSError, UnicodeDecodeError, ValueError, IndexError):
        return False
    return True  # an empty class file (no instance in this subset) is still a class file


def _class_files(folder: Path) -> list[tuple[Path, str, str]]:
    """``(path, class, subset)`` of each ``<Class>_<subset>.txt`` (Ambiguous excluded)."""
    out = []
    for p in sorted(folder.glob("*_*.txt")):
        m = _FILE.match(p.name)
        if m and m["cls"] != "Ambiguous" and _looks_like_segments(p):
            out.append((p, m["cls"], _SUBSET_NAMES.get(m["subset"], m["subset"])))
    return out


def thumos_txt_folders(path: Path) -> list[Path]:
    """The per-class txt folders at ``path``: itself, or its subfolders that hold such files."""
    path = Path(path)
    if not path.is_dir():
        return []
    if _class_files(path):
        return [path]
    return [p for p in sorted(path.iterdir()) if p.is_dir() and _class_files(p)]


def read_thumos_meta(paths: Iterable[Path]) -> dict[str, float]:
    """Durations in seconds by video name, from the official THUMOS14 ``.mat`` metadata."""
    try:
        import scipy.io  # optional dependency, only for this format
    except ImportError:
        warnings.warn("scipy is not installed, so THUMOS14 .mat metadata cannot be read "
                      "(pip install scipy); durations fall back to the last segment end",
                      stacklevel=2)
        return {}
    out: dict[str, float] = {}
    for p in paths:
        try:
            mat = scipy.io.loadmat(str(p))
        except Exception as e:  # scipy raises assorted errors for bad files
            raise AcnError(f"{p}: cannot read MATLAB metadata ({type(e).__name__}: {e})") from None
        for key, arr in mat.items():
            names = getattr(getattr(arr, "dtype", None), "names", None) or ()
            if key.startswith("__") or "video_name" not in names \
                    or "video_duration_seconds" not in names:
                continue
            for rec in arr.reshape(-1):
                try:
                    out[str(rec["video_name"].reshape(-1)[0])] = \
                        float(rec["video_duration_seconds"].reshape(-1)[0])
                except (IndexError, TypeError, ValueError):
                    raise AcnError(f"{p}: malformed record in {key!r}") from None
    return out


def _meta_files(folders: list[Path]) -> list[Path]:
    seen: list[Path] = []
    for f in folders:
        for d in (f, f.parent, f.parent.parent):
            for p in sorted(d.glob("*.mat")):
                if p not in seen:
                    seen.append(p)
    return seen


def load_thumos_txt(path: Path, meta: Iterable[Path] | None = None) -> Annotations:
    """Read the official THUMOS14 per-class txt files at ``path`` (see module doc).

    ``meta`` lists ``.mat`` metadata files; by default they are looked for beside the folders.
    Times are seconds.
    """
    path = Path(path)
    if not path.is_dir():
        raise AcnError(f"{path}: THUMOS14 annotation folder not found")
    folders = thumos_txt_folders(path)
    if not folders:
        raise AcnError(f"{path}: no THUMOS14 per-class files (<Class>_<subset>.txt) here or in "
                       "its subfolders")
    raw: dict[str, list[tuple[float, float, str]]] = {}
    subset_of: dict[str, str] = {}
    ambiguous: dict[str, list[tuple[float, float]]] = {}
    classes: set[str] = set()
    for folder in folders:
        for p, cls, subset in _class_files(folder):
            classes.add(cls)
            for vid, ivs in read_interval_file(p).items():
                if subset_of.setdefault(vid, subset) != subset:
                    raise AcnError(f"{p}: video {vid} is also listed in subset "
                                   f"{subset_of[vid]!r}")
                raw.setdefault(vid, []).extend((s, e, cls) for s, e in ivs)
        for p in sorted(folder.glob("Ambiguous_*.txt")):
            for vid, ivs in read_interval_file(p).items():
                ambiguous.setdefault(vid, []).extend(ivs)
    durations = read_thumos_meta(_meta_files(folders) if meta is None else meta)
    guessed = []
    videos = {}
    with aggregate_clip_warnings(str(path)):
        for vid in sorted(raw):
            if vid in durations:
                duration = durations[vid]
            else:
                guessed.append(vid)
                duration = max(e for _, e, _ in raw[vid])
            segs = []
            for s, e, cls in raw[vid]:
                se = clean_segment(s, e, duration, f"{path}: video {vid}")
                if se is not None:
                    segs.append(Segment(se[0], se[1], cls))
            videos[vid] = Video(id=vid, subset=subset_of[vid], duration=duration,
                                labels=tuple(sorted({c for _, _, c in raw[vid]})), segments=segs,
                                ambiguous=ambiguous.get(vid, []))
    if guessed:
        warnings.warn(f"{path}: no metadata duration for {len(guessed)} video(s) (e.g. "
                      f"{', '.join(guessed[:3])}); using their last segment end instead",
                      stacklevel=2)
    train, test = infer_splits(set(subset_of.values()))
    name = path.parent.name if path.name.startswith("annotations") else path.name
    return Annotations(classes=sorted(classes), videos=videos, train_subset=train,
                       test_subset=test, name=name)
