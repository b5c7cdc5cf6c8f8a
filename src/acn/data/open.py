"""One entry point for every dataset layout and every ground-truth format.

* :func:`open_dataset` opens features + annotations, guessing the layout from the folder.
* :func:`load_ground_truth` reads annotations alone (for ``acn evaluate`` and feature folders).
* :func:`convert_to_canonical` writes any dataset as the canonical layout (plain float32 ``.npy``,
  no pickles), one video at a time.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from acn.data.activitynet_json import annotations_from_activitynet, read_json_strict
from acn.data.annotations import Annotations
from acn.data.canonical import (FORMAT, INDEX, annotations_from_json, annotations_to_json,
                                feature_paths, is_canonical, load_canonical)
from acn.data.features import Dataset
from acn.data.folders import LAYOUTS, detect_folder_layout, open_feature_folder
from acn.data.thumos_txt import load_thumos_txt, thumos_txt_folders
from acn.data.wtalc import FEATURES_SUFFIX, find_wtalc, load_wtalc_annotations, open_wtalc
from acn.errors import AcnError
from acn.fileio import ensure_dir, save_npy, write_json

FORMATS = ("canonical", "wtalc", *LAYOUTS)
SIDECAR_GT = "gt.json"  # BaS-Net / ACM-Net keep it beside (or above) the per-video features

_LOOKED_FOR = ("a canonical index.json; a W-TALC <Name>-Annotations/ folder (with "
               f"<Name>{FEATURES_SUFFIX}); rgb/ + flow/ folders of <video>.npy; "
               "<video>_rgb.npy + <video>_flow.npy files; <video>.npy joint (T, 2D) arrays")


def detect_format(path: Path) -> str:
    """The layout of the dataset at ``path``: one of :data:`FORMATS`."""
    path = Path(path)
    if not path.exists():
        raise AcnError(f"{path}: dataset not found")
    if path.is_file():
        if path.name.endswith(FEATURES_SUFFIX):
            return "wtalc"
        if path.suffix == ".json" and is_canonical(path.parent) and path.name == INDEX:
            return "canonical"
        raise AcnError(f"{path}: not a dataset; give a folder holding {_LOOKED_FOR}")
    if is_canonical(path):
        return "canonical"
    if find_wtalc(path) is not None:
        return "wtalc"
    layout = detect_folder_layout(path)
    if layout is not None:
        return layout
    raise AcnError(f"{path}: no dataset layout recognised; looked for {_LOOKED_FOR}")


def _sidecar_gt(root: Path, allow_pickle: bool) -> Annotations:
    for d in (root, root.parent):
        if (d / SIDECAR_GT).is_file():
            return load_ground_truth(d / SIDECAR_GT, allow_pickle)
    raise AcnError(f"{root}: per-video feature folder without annotations; pass them with "
                   "--annotations (ActivityNet-style JSON, W-TALC annotation folder, THUMOS14 "
                   f"txt folder or canonical index.json), or put a {SIDECAR_GT} beside it")


def _with_overrides(ann: Annotations, where: str, train_subset: str | None,
                    test_subset: str | None, fps: float | None,
                    frames_per_snippet: int | None) -> Annotations:
    for given in (train_subset, test_subset):
        if given is not None and given not in ann.subsets:
            raise AcnError(f"{where}: no video in subset {given!r} (subsets: {ann.subsets})")
    videos = ann.videos
    if fps is not None or frames_per_snippet is not None:
        if (fps is not None and not fps > 0) or (frames_per_snippet is not None
                                                 and frames_per_snippet < 1):
            raise AcnError(f"fps ({fps}) and frames per snippet ({frames_per_snippet}) must be "
                           "positive")
        videos = {k: dataclasses.replace(
            v, fps=float(fps) if fps is not None else v.fps,
            frames_per_snippet=int(frames_per_snippet) if frames_per_snippet is not None
            else v.frames_per_snippet) for k, v in videos.items()}
    return dataclasses.replace(ann, videos=videos,
                               train_subset=train_subset or ann.train_subset,
                               test_subset=test_subset or ann.test_subset)


def open_dataset(path: Path | str, format: str | None = None,
                 annotations: Path | str | Annotations | None = None, allow_pickle: bool = False,
                 train_subset: str | None = None, test_subset: str | None = None, *,
                 fps: float | None = None, frames_per_snippet: int | None = None) -> Dataset:
    """Open the dataset at ``path`` (features stay on disk until a video is read).

    Args:
        path: a canonical folder (or its index.json), a W-TALC root / ``-Annotations`` folder /
            feature file, or a per-video feature folder.
        format: one of :data:`FORMATS`; guessed from the folder when ``None``.
        annotations: ground truth replacing the dataset's own (any source
            :func:`load_ground_truth` reads, or an :class:`Annotations`). Required for per-video
            folders unless a ``gt.json`` sits in the folder or its parent.
        allow_pickle: allow unpickling W-TALC object arrays (pickles can run code).
        train_subset, test_subset: override the guessed training / test subset names.
        fps, frames_per_snippet: override every video's snippet grid (snippet index =
            seconds * fps / frames_per_snippet), e.g. for features not at 25 fps / 16 frames.
    """
    path = Path(path)
    if not path.exists():
        raise AcnError(f"{path}: dataset not found")
    fmt = format or detect_format(path)
    if fmt not in FORMATS:
        raise AcnError(f"unknown dataset format {fmt!r}; choose one of {', '.join(FORMATS)}")
    gt = annotations if isinstance(annotations, Annotations) or annotations is None \
        else load_ground_truth(annotations, allow_pickle)
    if fmt == "canonical":
        root = path.parent if path.is_file() else path
        if not (root / INDEX).is_file():
            raise AcnError(f"{root}: no {INDEX} (not a canonical dataset folder)")
        ds = load_canonical(root)
    elif fmt == "wtalc":
        ds = open_wtalc(path, allow_pickle)
    else:
        if not path.is_dir():
            raise AcnError(f"{path}: a {fmt} feature layout is a folder, not a file")
        if gt is None:
            gt = _sidecar_gt(path, allow_pickle)
        ds = open_feature_folder(path, fmt, gt)
    ann = _with_overrides(gt if gt is not None else ds.annotations, str(path), train_subset,
                          test_subset, fps, frames_per_snippet)
    return Dataset(ann, ds.store, root=ds.root)


def load_ground_truth(path: Path | str, allow_pickle: bool = False) -> Annotations:
    """Read annotations (seconds) from any supported ground-truth source.

    ``path``: an ActivityNet-style JSON (or canonical ``index.json``), a canonical folder, a
    W-TALC ``-Annotations`` folder (or the folder holding one, or its feature file), or a
    THUMOS14 per-class txt folder (or a folder holding ``annotations_val/``, ``annotations_test/``).
    """
    path = Path(path)
    if not path.exists():
        raise AcnError(f"{path}: ground truth not found")
    if path.is_file():
        if path.name.endswith(FEATURES_SUFFIX):
            found = find_wtalc(path)
            assert found is not None
            return load_wtalc_annotations(found[0], allow_pickle)
        if path.suffix.lower() != ".json":
            raise AcnError(f"{path}: not a ground-truth file (expected an ActivityNet-style .json,"
                           " or a folder)")
        obj = read_json_strict(path, "ground-truth JSON")
        if isinstance(obj, dict) and obj.get("format") == FORMAT:
            return annotations_from_json(obj, str(path))
        return annotations_from_activitynet(
            obj, str(path), name=path.parent.name if path.stem == "gt" else path.stem)
    if (path / INDEX).is_file():
        return load_ground_truth(path / INDEX, allow_pickle)
    found = find_wtalc(path)
    if found is not None:
        return load_wtalc_annotations(found[0], allow_pickle)
    if thumos_txt_folders(path):
        return load_thumos_txt(path)
    if (path / SIDECAR_GT).is_file():
        return load_ground_truth(path / SIDECAR_GT, allow_pickle)
    raise AcnError(f"{path}: no ground truth recognised; looked for {INDEX}, a W-TALC "
                   "<Name>-Annotations/ folder, THUMOS14 <Class>_<subset>.txt files, "
                   f"{SIDECAR_GT}")


def convert_to_canonical(dataset: Dataset, out: Path | str, progress: bool = False) -> Path:
    """Write ``dataset`` as a canonical folder ``out``; returns ``out``.

    Features are validated and written as float32 ``(T, D)`` ``.npy`` files one video at a time
    (RAM holds one video, plus whatever the source store keeps: a W-TALC joint file is loaded
    whole), then ``index.json`` with ``num_snippets`` per video. Every file is written atomically.
    """
    out = Path(out)
    if dataset.root is not None and out.resolve() == Path(dataset.root).resolve():
        raise AcnError(f"{out}: the output folder is the dataset's own folder; choose another")
    ensure_dir(out / "features")
    ann = dataset.annotations
    ids = sorted(ann.videos)
    if progress:
        from tqdm import tqdm

        ids = tqdm(ids, desc="convert", unit="video", disable=None)
    num = {}
    for vid in ids:
        rgb, flow = dataset.features(vid)
        rp, fp = feature_paths(out, vid)
        save_npy(rp, rgb)
        save_npy(fp, flow)
        num[vid] = int(rgb.shape[0])
    write_json(out / INDEX, annotations_to_json(ann, num))
    return out
