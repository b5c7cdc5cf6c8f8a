"""Per-video feature folders (the annotations come from a separate ground-truth source).

Three layouts, each plain ``.npy`` per video, memory-mapped on access:

* ``joint``:          ``{video}.npy``, ``(T, 2D)`` with RGB in ``[:, :D]``, Flow in ``[:, D:]``
* ``rgbflow``:        ``rgb/{video}.npy`` + ``flow/{video}.npy`` (BaS-Net / STPN)
* ``video_features``: ``{video}_rgb.npy`` + ``{video}_flow.npy`` (v-iashin/video_features)

Files may sit in the folder itself or one level down (BaS-Net keeps ``train/rgb/`` and
``test/rgb/``); the folder is scanned once when opened. A video the annotations list but no file
holds is reported when its features are read, naming the path expected.
"""

from __future__ import annotations

import os
from pathlib import Path

from acn.data.annotations import Annotations
from acn.data.features import Dataset, PairedNpyStore
from acn.errors import AcnError

LAYOUTS = ("joint", "rgbflow", "video_features")
_SUFFIX = {"rgb": "_rgb.npy", "flow": "_flow.npy"}


def _npy_files(folder: Path) -> list[Path]:
    try:
        with os.scandir(folder) as it:
            return [Path(e.path) for e in it if e.name.endswith(".npy") and e.is_file()]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _dirs(root: Path) -> list[Path]:
    """``root`` and its immediate subfolders (hidden ones skipped)."""
    with os.scandir(root) as it:
        subs = sorted(Path(e.path) for e in it if e.is_dir() and not e.name.startswith("."))
    return [root] + subs


def _add(index: dict[str, Path], vid: str, path: Path) -> None:
    if vid in index and index[vid] != path:
        raise AcnError(f"{path}: video {vid!r} has features in two places (also {index[vid]})")
    index[vid] = path


def scan_folder(root: Path, layout: str) -> dict[str, tuple[Path, Path | None]]:
    """Map each video id found under ``root`` to ``(joint, None)`` or ``(rgb, flow)`` paths.

    A video with only one of its two stream files is left out (reported on access).
    """
    root = Path(root)
    if layout not in LAYOUTS:
        raise AcnError(f"unknown feature-folder layout {layout!r}; choose one of {LAYOUTS}")
    if not root.is_dir():
        raise AcnError(f"{root}: feature folder not found")
    out: dict[str, tuple[Path, Path | None]] = {}
    if layout == "joint":
        joint: dict[str, Path] = {}
        # rgb/ and flow/ hold single streams: never read them as joint arrays.
        for d in (d for d in _dirs(root) if d.name.lower() not in _SUFFIX or d == root):
            for p in _npy_files(d):
                if not p.name.endswith(tuple(_SUFFIX.values())):
                    _add(joint, p.stem, p)
        return {v: (p, None) for v, p in joint.items()}
    rgb: dict[str, Path] = {}
    flow: dict[str, Path] = {}
    for d in _dirs(root):
        if layout == "rgbflow":
            for stream, index in (("rgb", rgb), ("flow", flow)):
                for p in _npy_files(d / stream):
                    _add(index, p.stem, p)
        else:
            for p in _npy_files(d):
                for stream, index in (("rgb", rgb), ("flow", flow)):
                    if p.name.endswith(_SUFFIX[stream]):
                        _add(index, p.name.removesuffix(_SUFFIX[stream]), p)
    for vid in rgb.keys() & flow.keys():
        out[vid] = (rgb[vid], flow[vid])
    return out


def detect_folder_layout(root: Path) -> str | None:
    """Which per-video layout ``root`` holds, or ``None``; ``rgb/``+``flow/`` win over suffixes."""
    root = Path(root)
    if not root.is_dir():
        return None
    for layout in ("rgbflow", "video_features", "joint"):
        if scan_folder(root, layout):
            return layout
    return None


def _expected(root: Path, layout: str, vid: str) -> tuple[Path, Path | None]:
    if layout == "joint":
        return root / f"{vid}.npy", None
    if layout == "rgbflow":
        return root / "rgb" / f"{vid}.npy", root / "flow" / f"{vid}.npy"
    return root / f"{vid}_rgb.npy", root / f"{vid}_flow.npy"


def folder_store(root: Path, layout: str) -> PairedNpyStore:
    """A memory-mapping store over the files found by :func:`scan_folder`."""
    root = Path(root)
    found = scan_folder(root, layout)
    if not found:  # a forced layout that matches nothing: say so now, not once per video
        a, b = _expected(root, layout, "<video>")
        raise AcnError(f"{root}: no {layout} feature files here (expected {a}"
                       f"{'' if b is None else f' + {b.name}'}, or one folder down)")
    return PairedNpyStore(lambda vid: found.get(vid) or _expected(root, layout, vid))


def open_feature_folder(root: Path, layout: str, annotations: Annotations) -> Dataset:
    """A :class:`Dataset` of ``annotations`` over the per-video files in ``root``."""
    return Dataset(annotations, folder_store(root, layout), root=Path(root))
