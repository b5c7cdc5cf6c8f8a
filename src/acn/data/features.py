"""Feature stores: where a video's two-stream snippet features come from.

A store maps a video id to ``(rgb, flow)``, each a ``(T, D)`` float array over the video's
T snippets. Stores open lazily (memory-mapped ``.npy`` where the format allows), so a dataset
of thousands of videos is not read into RAM when it is opened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from acn.data.annotations import Annotations, Video
from acn.errors import AcnError
from acn.fileio import verify_checksum


class FeatureStore(Protocol):
    """Anything that returns the two streams of a video."""

    def has(self, video_id: str) -> bool: ...

    def load(self, video_id: str) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(rgb, flow)``, each ``(T, D)``; may be memory-mapped."""
        ...

    def describe(self, video_id: str) -> str:
        """Where the video's features live (for error messages)."""
        ...


def load_npy(path: Path, mmap: bool = True) -> np.ndarray:
    """Load a plain (non-pickled) ``.npy`` file, memory-mapped, with clear errors."""
    path = Path(path)
    if not path.is_file():
        raise AcnError(f"{path}: feature file is missing")
    verify_checksum(path, "feature file")  # when acn extract recorded one
    with open(path, "rb") as f:
        if f.read(6) != b"\x93NUMPY":
            raise AcnError(f"{path}: not a .npy file (no NumPy header; corrupt?)")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e).lower() or "Python objects" in str(e):
            raise AcnError(f"{path}: holds pickled objects; acn reads plain numeric .npy files "
                           "(pickles can run code)") from None
        if "mmap length" in str(e):
            raise AcnError(f"{path}: truncated .npy file (shorter than its header says)") from None
        raise AcnError(f"{path}: not a readable .npy array ({e})") from None
    except (OSError, EOFError) as e:
        raise AcnError(f"{path}: corrupt or truncated .npy file ({e})") from None


def check_streams(rgb: np.ndarray, flow: np.ndarray, where: str,
                  expected_dim: int | None = None, copy: bool = True, scan: bool = True
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Validate a video's two streams and return them as float32 arrays: copies in RAM, or
    with ``copy=False`` the arrays themselves where they are float32 already (a memory map
    stays one, read-only: for callers that copy the data on anyway, e.g. into a padded batch).

    Raises :class:`AcnError` naming ``where`` for: wrong rank, zero snippets, different T of
    RGB and Flow, different widths, a width other than ``expected_dim``, NaN or Inf values
    (the values are scanned only with ``scan``: callers that scanned them already skip it).
    """
    for name, a in (("RGB", rgb), ("Flow", flow)):
        if a.ndim != 2:
            raise AcnError(f"{where}: {name} features have shape {a.shape}; expected (T, D)")
    if rgb.shape[0] != flow.shape[0]:
        raise AcnError(f"{where}: RGB has {rgb.shape[0]} snippets but Flow has {flow.shape[0]}")
    if rgb.shape[0] == 0:
        raise AcnError(f"{where}: empty video (0 snippets)")
    if rgb.shape[1] != flow.shape[1]:
        raise AcnError(f"{where}: RGB width {rgb.shape[1]} differs from Flow width {flow.shape[1]}")
    if expected_dim is not None and rgb.shape[1] != expected_dim:
        raise AcnError(f"{where}: features are {rgb.shape[1]}-d per stream but the model "
                       f"expects {expected_dim}-d")
    out = []
    for name, a in (("RGB", rgb), ("Flow", flow)):
        # a copy in RAM unless asked not to: a memory map is read-only
        a = np.array(a, dtype=np.float32) if copy else np.asarray(a, dtype=np.float32)
        # NaN propagates through max and min, +-Inf is one of them: two reads, no temporary
        if scan and not (np.isfinite(a.max()) and np.isfinite(a.min())):
            bad = np.argwhere(~np.isfinite(a))[0]
            raise AcnError(f"{where}: {name} features contain NaN or Inf (first at snippet "
                           f"{bad[0]}, column {bad[1]})")
        out.append(a)
    return out[0], out[1]


@dataclass
class PairedNpyStore:
    """One or two ``.npy`` files per video, located by ``paths(video_id)``.

    ``paths`` returns either ``(rgb_path, flow_path)`` or ``(joint_path, None)``; a joint
    array of width 2D holds RGB in columns ``[0, D)`` and Flow in ``[D, 2D)``.
    """

    paths: Callable[[str], tuple[Path, Path | None]]

    def has(self, video_id: str) -> bool:
        a, b = self.paths(video_id)
        return a.is_file() and (b is None or b.is_file())

    def describe(self, video_id: str) -> str:
        a, b = self.paths(video_id)
        return f"{a}" if b is None else f"{a} + {b.name}"

    def load(self, video_id: str) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.paths(video_id)
        if b is None:
            return split_joint(load_npy(a), str(a))
        return load_npy(a), load_npy(b)


def split_joint(joint: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Split a ``(T, 2D)`` joint array into RGB ``[:, :D]`` and Flow ``[:, D:]``."""
    if joint.ndim != 2 or joint.shape[1] % 2:
        raise AcnError(f"{where}: joint features have shape {joint.shape}; expected (T, 2D) "
                       "with RGB in the first half of the columns and Flow in the second")
    d = joint.shape[1] // 2
    return joint[:, :d], joint[:, d:]


@dataclass
class MemoryStore:
    """Features held in RAM (synthetic data, tests)."""

    features: dict[str, tuple[np.ndarray, np.ndarray]]

    def has(self, video_id: str) -> bool:
        return video_id in self.features

    def describe(self, video_id: str) -> str:
        return f"video {video_id!r} (in memory)"

    def load(self, video_id: str) -> tuple[np.ndarray, np.ndarray]:
        return self.features[video_id]


@dataclass
class Dataset:
    """Annotations plus a feature store; the unit every stage of acn consumes."""

    annotations: Annotations
    store: FeatureStore
    root: Path | None = None
    _checked: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def classes(self) -> list[str]:
        return self.annotations.classes

    def video(self, video_id: str) -> Video:
        return self.annotations.videos[video_id]

    def features(self, video_id: str, expected_dim: int | None = None,
                 copy: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Validated ``(rgb, flow)`` float32 arrays of shape ``(T, D)`` for one video: copies
        in RAM, or with ``copy=False`` the stored arrays where they are float32 (memory maps
        stay memory maps, read-only; see ``check_streams``). A video that ``validate``
        checked at this ``expected_dim`` is not scanned for NaN/Inf again."""
        if not self.store.has(video_id):
            what = self.store.describe(video_id)
            paths = getattr(self.store, "paths", None)
            if paths is not None:  # name the file that is missing, not the pair
                gone = [str(p) for p in paths(video_id) if p is not None and not p.is_file()]
                what = " and ".join(gone) or what
            raise AcnError(f"{what}: feature file missing for listed video {video_id!r}")
        rgb, flow = self.store.load(video_id)
        scanned = expected_dim is not None and self._checked.get(video_id) == expected_dim
        return check_streams(rgb, flow, self.store.describe(video_id), expected_dim, copy,
                             scan=not scanned)

    def validate(self, video_ids, expected_dim: int | None = None) -> int:
        """Read and check the features of every video in ``video_ids`` now, one at a time.

        Raises :class:`AcnError` naming the file for the first missing, corrupt, empty, NaN/Inf
        or wrongly shaped video, or one whose width differs from the others (or from
        ``expected_dim``). Run before anything is written, so that a bad input fails fast and
        leaves no partial output. Videos already checked are skipped. Returns the width.
        """
        dim = expected_dim
        for vid in video_ids:
            if dim is not None and self._checked.get(vid) == dim:
                continue
            rgb, _ = self.features(vid, dim, copy=False)  # checked, not kept: no copy
            dim = int(rgb.shape[1])
            self._checked[vid] = dim
        return int(dim) if dim is not None else self.feature_dim()

    def feature_dim(self) -> int:
        """Per-stream feature width, read from the first video's features."""
        for vid in sorted(self.annotations.videos):
            if self.store.has(vid):
                rgb, _ = self.store.load(vid)
                return int(rgb.shape[1])
        raise AcnError(f"{self.root or self.annotations.name}: no video has features")

    def subset(self, name: str) -> list[Video]:
        return self.annotations.subset(name)
