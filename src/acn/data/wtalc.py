"""The W-TALC layout: one joint feature file plus a folder of numpy annotation arrays.

::

    ROOT/
      <Name>-I3D-JOINTFeatures.npy    object array, one (T, 2D) float array per video:
                                      RGB in columns [0, D), Flow in [D, 2D)
      <Name>-Annotations/
        videoname.npy  subset.npy  duration.npy  classlist.npy       plain arrays (bytes or str)
        segments.npy   labels.npy  labels_all.npy                    object arrays (pickles)
        Ambiguous_test.txt                                           optional, `video start end`
        original_fps.npy  extracted_fps.npy                          optional, not used (below)
        feature_fps.npy  frames_per_snippet.npy                      optional, acn's own addition

Entry ``i`` of every array belongs to video ``videoname[i]``; times are in seconds. The
features are on a grid of 16-frame snippets at 25 fps (snippet index = seconds * 25 / 16), as
every W-TALC evaluation assumes. ``extracted_fps.npy`` of THUMOS14-reduced says 10 for every
video although its features follow the 25/16 grid, so it is ignored; a folder that really is on
another grid says so with ``feature_fps.npy`` / ``frames_per_snippet.npy`` (a scalar or one value
per video), which :func:`save_wtalc` writes when a video is not on the 25/16 grid.

Pickles run code when loaded: the object arrays (features, segments, labels) are only read with
``allow_pickle=True``. ``acn convert`` makes a one-time pickle-free canonical copy.

Known defects of THUMOS14-reduced are handled here, not in the data: segments ending after their
video are clipped (one aggregated warning per dataset), and the video-level labels are the union
of ``labels_all`` and the segment labels (video_test_0000270 has an empty ``labels_all``;
video_test_0001496 lists FrisbeeCatch while its segments say CricketShot, so it gets both).
CliffDiving segments that are also labelled Diving stay as given (THUMOS convention).
"""

from __future__ import annotations

import io
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from acn.data.annotations import (Annotations, Segment, Video, aggregate_clip_warnings,
                                  clean_segment, infer_splits)
from acn.data.features import Dataset, split_joint
from acn.errors import AcnError
from acn.fileio import ensure_dir, save_npy, write_bytes, write_text

FEATURES_SUFFIX = "-I3D-JOINTFeatures.npy"
ANNOTATIONS_SUFFIX = "-Annotations"
DEFAULT_FPS = 25.0
DEFAULT_FRAMES_PER_SNIPPET = 16
_REQUIRED = ("videoname", "subset", "duration", "segments", "labels", "labels_all", "classlist")


# -- shared helpers (also used by the other loaders) ---------------------------------------------
def pickle_message(path: Path) -> str:
    """The one-line refusal to unpickle ``path`` without the user's opt-in."""
    return (f"{path}: is a pickle (numpy object array) and pickles can run code when loaded; "
            "if you trust the file, opt in with --allow-pickle on the command line or "
            "allow_pickle=True in the API (`acn convert --allow-pickle` makes a one-time "
            "pickle-free canonical copy)")


def read_npy(path: Path, allow_pickle: bool, what: str = "file", mmap: bool = False) -> np.ndarray:
    """Load a ``.npy`` file; unpickle object arrays only when ``allow_pickle`` is set.

    Plain numeric arrays are memory-mapped when ``mmap`` is set. Raises :class:`AcnError`
    naming ``path`` for a missing, corrupt, or (without opt-in) pickled file.
    """
    path = Path(path)
    if not path.is_file():
        raise AcnError(f"{path}: {what} not found")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as e:
        if not ("pickle" in str(e) or "Python objects" in str(e)):
            raise AcnError(f"{path}: not a readable .npy array ({e})") from None
    except (OSError, EOFError) as e:
        raise AcnError(f"{path}: corrupt or truncated .npy file ({e})") from None
    # Here the file holds objects, or is no .npy at all (np.load then assumes a raw pickle).
    with open(path, "rb") as f:
        head = f.read(6)
    if not (head.startswith(b"\x93NUMPY") or head.startswith(b"\x80")):
        raise AcnError(f"{path}: not a .npy file (corrupt?)")
    if not allow_pickle:
        raise AcnError(pickle_message(path))
    try:
        return np.load(path, allow_pickle=True)
    except Exception as e:  # unpickling can fail in many ways; all mean a bad file
        raise AcnError(f"{path}: corrupt pickled .npy file ({type(e).__name__}: {e})") from None


def as_str(x: Any) -> str:
    """Decode bytes (W-TALC stores most strings as bytes) and unwrap numpy scalars."""
    if isinstance(x, np.ndarray) and x.size == 1:
        x = x.reshape(-1)[0]
    if isinstance(x, (bytes, np.bytes_)):
        return bytes(x).decode("utf-8")
    return str(x)


def read_interval_file(path: Path) -> dict[str, list[tuple[float, float]]]:
    """Read ``video start end`` lines (seconds) into ``{video: [(start, end), ...]}``."""
    out: dict[str, list[tuple[float, float]]] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise AcnError(f"{path}: not a UTF-8 text file") from None
    except OSError as e:
        raise AcnError(f"{path}: cannot read ({e.strerror})") from None
    for n, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            continue
        try:
            if len(parts) != 3:
                raise ValueError
            start, end = float(parts[1]), float(parts[2])
        except ValueError:
            raise AcnError(f"{path}:{n}: expected `video start end` (seconds), "
                           f"got {line!r}") from None
        if not (np.isfinite(start) and np.isfinite(end)):
            raise AcnError(f"{path}:{n}: time is not a finite number in {line!r}")
        if start < 0 or end < 0:
            raise AcnError(f"{path}:{n}: negative time in {line!r}")
        if end < start:
            raise AcnError(f"{path}:{n}: segment end {end} is before its start {start}")
        out.setdefault(parts[0], []).append((start, end))
    return out


# -- reading ---------------------------------------------------------------------------------------
def _per_video(path: Path, arr: np.ndarray, n: int, dtype: type) -> np.ndarray:
    """A scalar or one value per video, broadcast to ``(n,)``."""
    arr = np.asarray(arr).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, n)
    if arr.size != n:
        raise AcnError(f"{path}: has {arr.size} entries but videoname.npy lists {n} videos")
    try:
        return arr.astype(dtype)
    except (TypeError, ValueError):
        raise AcnError(f"{path}: entries are not numbers") from None


def _read_wtalc(folder: Path, allow_pickle: bool) -> tuple[Annotations, list[str]]:
    """Annotations plus the video ids in file order (the row order of the feature file)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AcnError(f"{folder}: W-TALC annotation folder not found")
    missing = [f"{k}.npy" for k in _REQUIRED if not (folder / f"{k}.npy").is_file()]
    if missing:
        raise AcnError(f"{folder}: not a W-TALC annotation folder (missing {', '.join(missing)})")
    arrays = {k: read_npy(folder / f"{k}.npy", allow_pickle, "W-TALC annotation file")
              for k in _REQUIRED}
    ids = [as_str(v) for v in np.asarray(arrays["videoname"]).reshape(-1)]
    n = len(ids)
    if n == 0:
        raise AcnError(f"{folder / 'videoname.npy'}: lists no video")
    dups = sorted(v for v, k in Counter(ids).items() if k > 1)
    if dups:
        raise AcnError(f"{folder / 'videoname.npy'}: duplicate video ids {dups[:5]}")
    for k in _REQUIRED[1:6]:
        # duration is (N,) or (N, 1); the others hold one entry (maybe a list) per video.
        size = arrays[k].size if k == "duration" else (len(arrays[k]) if arrays[k].ndim else 1)
        if size != n:
            raise AcnError(f"{folder / f'{k}.npy'}: has {size} entries but videoname.npy lists "
                           f"{n} videos")
    name = folder.name.removesuffix(ANNOTATIONS_SUFFIX) or folder.name
    classes = [as_str(c) for c in np.asarray(arrays["classlist"]).reshape(-1)]
    duration = _per_video(folder / "duration.npy", arrays["duration"], n, np.float64)
    fps = np.full(n, DEFAULT_FPS)
    fpsn = np.full(n, DEFAULT_FRAMES_PER_SNIPPET)
    if (folder / "feature_fps.npy").is_file():
        fps = _per_video(folder / "feature_fps.npy",
                         read_npy(folder / "feature_fps.npy", False), n, np.float64)
    if (folder / "frames_per_snippet.npy").is_file():
        fpsn = _per_video(folder / "frames_per_snippet.npy",
                          read_npy(folder / "frames_per_snippet.npy", False), n, np.int64)
    if not (np.all(fps > 0) and np.all(fpsn > 0)):  # NaN fails too
        raise AcnError(f"{folder}: feature_fps.npy / frames_per_snippet.npy must be positive")
    ambiguous: dict[str, list[tuple[float, float]]] = {}
    for p in sorted(folder.glob("Ambiguous_*.txt")):
        for vid, iv in read_interval_file(p).items():
            ambiguous.setdefault(vid, []).extend(iv)

    seg_file, lab_file = folder / "segments.npy", folder / "labels.npy"
    bad_duration = ~np.isfinite(duration) | (duration <= 0)
    if bad_duration.any():
        i = int(np.argmax(bad_duration))
        raise AcnError(f"{folder / 'duration.npy'}: video {ids[i]} has duration {duration[i]}")
    videos: dict[str, Video] = {}
    relabelled: list[str] = []
    with aggregate_clip_warnings(str(folder)):
        for i, vid in enumerate(ids):
            try:
                seg = np.asarray(arrays["segments"][i], dtype=np.float64).reshape(-1, 2)
            except (TypeError, ValueError):
                raise AcnError(f"{seg_file}: video {vid} segments are not [start, end] pairs "
                               f"({arrays['segments'][i]!r:.80})") from None
            labs = [as_str(x) for x in np.asarray(arrays["labels"][i], dtype=object).reshape(-1)]
            if len(labs) != len(seg):
                raise AcnError(f"{lab_file}: video {vid} has {len(labs)} segment labels but "
                               f"segments.npy gives it {len(seg)} segments")
            segs = []
            for (s, e), lab in zip(seg.tolist(), labs):
                se = clean_segment(s, e, float(duration[i]), f"{seg_file}: video {vid}")
                if se is not None:
                    segs.append(Segment(se[0], se[1], lab))
            given = {as_str(x)
                     for x in np.asarray(arrays["labels_all"][i], dtype=object).reshape(-1)}
            union = given | set(labs)
            if union != given:
                relabelled.append(vid)
            videos[vid] = Video(
                id=vid, subset=as_str(arrays["subset"][i]), duration=float(duration[i]),
                labels=tuple(sorted(union)), segments=segs, ambiguous=ambiguous.get(vid, []),
                fps=float(fps[i]), frames_per_snippet=int(fpsn[i]))
    if relabelled:
        warnings.warn(f"{folder}: {len(relabelled)} video(s) have segment labels missing from "
                      f"labels_all.npy (e.g. {', '.join(relabelled[:3])}); their video-level "
                      "labels are the union of both", stacklevel=3)
    train, test = infer_splits({v.subset for v in videos.values()})
    ann = Annotations(classes=classes, videos=videos, train_subset=train, test_subset=test,
                      name=name)
    for v in videos.values():
        for lab in v.labels:
            ann.class_index(lab, f"{folder}: video {v.id}")
    return ann, ids


def load_wtalc_annotations(folder: Path, allow_pickle: bool = False) -> Annotations:
    """Read a ``<Name>-Annotations`` folder (times in seconds).

    Needs ``allow_pickle=True`` for the object arrays (segments, labels, labels_all): pickles can
    run code, so only opt in for files you trust. Raises :class:`AcnError` otherwise.
    """
    return _read_wtalc(Path(folder), allow_pickle)[0]


# -- features --------------------------------------------------------------------------------------
class WtalcStore:
    """Per-video views into the joint feature file, which is read once, on first access.

    The file is a pickled object array (GBs for THUMOS14): it cannot be memory-mapped, so it
    is loaded whole, but only when a video's features are first asked for.
    """

    def __init__(self, path: Path, video_ids: list[str], allow_pickle: bool) -> None:
        self.path = Path(path)
        self.allow_pickle = allow_pickle
        self._row = {v: i for i, v in enumerate(video_ids)}
        self._data: np.ndarray | None = None

    def _rows(self) -> np.ndarray:
        if self._data is None:
            data = read_npy(self.path, self.allow_pickle, "W-TALC feature file", mmap=True)
            if data.dtype != object and data.ndim != 3:
                raise AcnError(f"{self.path}: features have shape {data.shape}; expected one "
                               "(T, 2D) array per video")
            if len(data) != len(self._row):
                raise AcnError(f"{self.path}: holds features of {len(data)} videos but the "
                               f"annotations list {len(self._row)}")
            self._data = data
        return self._data

    def has(self, video_id: str) -> bool:
        return video_id in self._row and self.path.is_file()

    def describe(self, video_id: str) -> str:
        row = self._row.get(video_id)
        return f"{self.path} (row {row}, video {video_id})" if row is not None else \
            f"{self.path} (video {video_id} is not listed in videoname.npy)"

    def load(self, video_id: str) -> tuple[np.ndarray, np.ndarray]:
        if video_id not in self._row:
            raise AcnError(f"{self.describe(video_id)}: no features for this video")
        joint = np.asarray(self._rows()[self._row[video_id]])
        return split_joint(joint, self.describe(video_id))


def find_wtalc(path: Path) -> tuple[Path, Path] | None:
    """``(annotation folder, feature file)`` of a W-TALC dataset at ``path``, or ``None``.

    ``path`` may be the root holding ``<Name>-Annotations/`` (exactly one), the annotation
    folder itself, or the feature file. The feature file need not exist.
    """
    path = Path(path)
    if path.is_file() and path.name.endswith(FEATURES_SUFFIX):
        name = path.name.removesuffix(FEATURES_SUFFIX)
        return path.parent / f"{name}{ANNOTATIONS_SUFFIX}", path
    if not path.is_dir():
        return None
    if (path / "videoname.npy").is_file():
        name = path.name.removesuffix(ANNOTATIONS_SUFFIX)
        return path, path.parent / f"{name}{FEATURES_SUFFIX}"
    found = sorted(p for p in path.glob(f"*{ANNOTATIONS_SUFFIX}")
                   if (p / "videoname.npy").is_file())
    if not found:
        return None
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise AcnError(f"{path}: holds several W-TALC datasets ({names}); name the one to use "
                       "(its -Annotations folder)")
    name = found[0].name.removesuffix(ANNOTATIONS_SUFFIX)
    return found[0], path / f"{name}{FEATURES_SUFFIX}"


def open_wtalc(path: Path, allow_pickle: bool = False) -> Dataset:
    """Open a W-TALC dataset (see :func:`find_wtalc` for what ``path`` may be).

    Annotations are read now; the feature file only when a video's features are first read.
    A missing feature file is reported then, naming the expected path.
    """
    found = find_wtalc(path)
    if found is None:
        raise AcnError(f"{path}: no W-TALC dataset here (looked for <Name>-Annotations/ with "
                       f"videoname.npy, or <Name>{FEATURES_SUFFIX})")
    folder, features = found
    ann, ids = _read_wtalc(folder, allow_pickle)
    return Dataset(ann, WtalcStore(features, ids, allow_pickle), root=features.parent)


# -- writing ---------------------------------------------------------------------------------------
def _objects(items: list[Any]) -> np.ndarray:
    # Built element by element so numpy never stacks equal-length lists into a numeric array.
    arr = np.empty(len(items), dtype=object)
    for i, x in enumerate(items):
        arr[i] = x
    return arr


def _save_object_npy(path: Path, arr: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    write_bytes(path, buf.getvalue())


def save_wtalc(root: Path, name: str, ann: Annotations,
               features: dict[str, tuple[np.ndarray, np.ndarray]] | None) -> Path:
    """Write ``ann`` (and ``features``: ``{video: (rgb, flow)}``, each ``(T, D)``) as W-TALC.

    Produces ``root/<name>-Annotations/`` and, when features are given,
    ``root/<name>-I3D-JOINTFeatures.npy`` (float32 rows ``[rgb | flow]``). Videos are written in
    sorted id order. Returns ``root``. Every file is written atomically.
    """
    root = ensure_dir(Path(root))
    folder = ensure_dir(root / f"{name}{ANNOTATIONS_SUFFIX}")
    vids = sorted(ann.videos.values(), key=lambda v: v.id)
    if features is not None:
        missing = [v.id for v in vids if v.id not in features]
        if missing:
            raise AcnError(f"save_wtalc: no features for video(s) {missing[:5]}")
    save_npy(folder / "videoname.npy", np.array([v.id.encode() for v in vids], dtype=bytes))
    save_npy(folder / "subset.npy", np.array([v.subset.encode() for v in vids], dtype=bytes))
    save_npy(folder / "duration.npy", np.array([v.duration for v in vids], dtype=np.float64))
    save_npy(folder / "classlist.npy", np.array([c.encode() for c in ann.classes], dtype=bytes))
    _save_object_npy(folder / "segments.npy",
                     _objects([[[s.start, s.end] for s in v.segments] for v in vids]))
    _save_object_npy(folder / "labels.npy", _objects([[s.label for s in v.segments] for v in vids]))
    _save_object_npy(folder / "labels_all.npy", _objects([list(v.labels) for v in vids]))
    if any((v.fps, v.frames_per_snippet) != (DEFAULT_FPS, DEFAULT_FRAMES_PER_SNIPPET)
           for v in vids):
        save_npy(folder / "feature_fps.npy", np.array([v.fps for v in vids], dtype=np.float64))
        save_npy(folder / "frames_per_snippet.npy",
                 np.array([v.frames_per_snippet for v in vids], dtype=np.int64))
    amb = "".join(f"{v.id} {float(s)!r} {float(e)!r}\n" for v in vids for s, e in v.ambiguous)
    if amb:
        write_text(folder / "Ambiguous_test.txt", amb)
    if features is not None:
        joint = []
        for v in vids:
            rgb, flow = features[v.id]
            if np.shape(rgb) != np.shape(flow) or np.ndim(rgb) != 2:
                raise AcnError(f"save_wtalc: video {v.id} has RGB {np.shape(rgb)} and Flow "
                               f"{np.shape(flow)}; expected two equal (T, D) arrays")
            joint.append(np.concatenate([rgb, flow], axis=1).astype(np.float32))
        _save_object_npy(root / f"{name}{FEATURES_SUFFIX}", _objects(joint))
    return root
