"""The one in-memory model of a W-TAL dataset's annotations.

Every loader (W-TALC npy folder, ActivityNet JSON, THUMOS14 txt files, the canonical index)
produces an :class:`Annotations`. Times are in **seconds** everywhere in this module; the
snippet grid of a video is described by ``fps`` and ``frames_per_snippet``
(snippet index = seconds * fps / frames_per_snippet).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import warnings
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from acn.errors import AcnError

# Default split names: THUMOS14 trains on "validation" and tests on "test"; ActivityNet trains
# on "training" and tests on "validation".
KNOWN_SPLITS = {
    frozenset({"validation", "test"}): ("validation", "test"),
    frozenset({"training", "validation"}): ("training", "validation"),
    frozenset({"training", "validation", "testing"}): ("training", "validation"),
    frozenset({"train", "test"}): ("train", "test"),
    frozenset({"train", "val"}): ("train", "val"),
}


@dataclass(frozen=True)
class Segment:
    """One labelled action instance, in seconds."""

    start: float
    end: float
    label: str


@dataclass
class Video:
    """One untrimmed video.

    Attributes:
        id: video identifier (file stem, e.g. ``video_test_0000004``).
        subset: split name (``validation``/``test`` for THUMOS14, ``training``/``validation``
            for ActivityNet).
        duration: length in seconds.
        labels: video-level label set (the only supervision used in training).
        segments: temporal annotations (used for evaluation only).
        ambiguous: ``(start, end)`` seconds of ambiguous segments (THUMOS14 protocol).
        fps: frame rate of the feature extraction.
        frames_per_snippet: frames per snippet of the feature extraction.
    """

    id: str
    subset: str
    duration: float
    labels: tuple[str, ...] = ()
    segments: list[Segment] = field(default_factory=list)
    ambiguous: list[tuple[float, float]] = field(default_factory=list)
    fps: float = 25.0
    frames_per_snippet: int = 16

    @property
    def snippets_per_second(self) -> float:
        return self.fps / self.frames_per_snippet

    def seconds_to_snippets(self, seconds: float) -> float:
        return seconds * self.fps / self.frames_per_snippet

    def snippets_to_seconds(self, snippets: float) -> float:
        return snippets * self.frames_per_snippet / self.fps


@dataclass
class Annotations:
    """Class list plus videos keyed by id, and which subsets are for training and testing."""

    classes: list[str]
    videos: dict[str, Video]
    train_subset: str = "validation"
    test_subset: str = "test"
    name: str = "dataset"

    def __post_init__(self) -> None:
        if len(set(self.classes)) != len(self.classes):
            dup = sorted({c for c in self.classes if self.classes.count(c) > 1})
            raise AcnError(f"{self.name}: duplicate class names {dup}")
        self._class_index = {c: i for i, c in enumerate(self.classes)}

    # -- queries -------------------------------------------------------------------------
    def class_index(self, label: str, where: str = "") -> int:
        try:
            return self._class_index[label]
        except KeyError:
            ctx = f" in {where}" if where else ""
            raise AcnError(
                f"unknown class name {label!r}{ctx}; the dataset {self.name!r} has "
                f"{len(self.classes)} classes (e.g. {', '.join(self.classes[:5])})"
            ) from None

    def subset(self, name: str) -> list[Video]:
        """Videos of one subset, sorted by id (deterministic order)."""
        vids = [v for v in self.videos.values() if v.subset == name]
        if not vids:
            have = sorted({v.subset for v in self.videos.values()})
            raise AcnError(f"{self.name}: no video in subset {name!r} (subsets: {have})")
        return sorted(vids, key=lambda v: v.id)

    @property
    def subsets(self) -> list[str]:
        return sorted({v.subset for v in self.videos.values()})

    def __iter__(self) -> Iterator[Video]:
        return iter(self.videos.values())

    def __len__(self) -> int:
        return len(self.videos)

    def restrict(self, ids: Iterable[str]) -> "Annotations":
        keep = set(ids)
        return dataclasses.replace(self, videos={k: v for k, v in self.videos.items() if k in keep})


def infer_splits(subsets: Iterable[str]) -> tuple[str, str]:
    """Guess (train, test) subset names from the subsets present."""
    present = frozenset(subsets)
    for names, split in KNOWN_SPLITS.items():
        if names <= present or present == names:
            return split
    for train, test in KNOWN_SPLITS.values():
        if train in present and test in present:
            return train, test
    if len(present) == 1:
        only = next(iter(present))
        return only, only
    raise AcnError(
        f"cannot tell the training and test subsets apart from {sorted(present)}; "
        "name them with --train-subset/--test-subset"
    )


def clean_segment(start: float, end: float, duration: float, where: str) -> tuple[float, float] | None:
    """Validate one segment against its video; clip what ends past the video (with a warning).

    THUMOS14 video_test_0000270 has segments ending after the video: the official evaluation
    keeps them, so we clip rather than drop. Returns ``None`` for a segment that lies wholly
    past the end of the video -- never: such segments are kept unchanged (see below).
    """
    if not (start == start and end == end):  # NaN
        raise AcnError(f"{where}: segment has a NaN time ({start}, {end})")
    if start < 0 or end < 0:
        raise AcnError(f"{where}: segment [{start}, {end}] has a negative time")
    if end < start:
        raise AcnError(f"{where}: segment end {end} is before its start {start}")
    if duration > 0 and end > duration:
        if start >= duration:
            # Kept as given: the official THUMOS14 evaluation counts these as ground truth
            # (26 such test segments in video_test_0000270), so dropping them would inflate mAP.
            warnings.warn(f"{where}: segment [{start}, {end}] starts after the video ends "
                          f"({duration:.2f} s); kept as ground truth", stacklevel=2)
            return float(start), float(end)
        warnings.warn(f"{where}: segment [{start}, {end}] ends after the video ({duration:.2f} s); "
                      "clipped", stacklevel=2)
        end = duration
    return float(start), float(end)


_CLIPPED = re.compile(r"video (\S+): segment .*(clipped|kept as ground truth)$", re.S)


@contextlib.contextmanager
def aggregate_clip_warnings(where: str) -> Iterator[None]:
    """Collect the per-segment warnings of :func:`clean_segment` into one warning for ``where``.

    Call ``clean_segment(..., where=f"{file}: video {vid}")`` inside the block. Other warnings
    pass through unchanged.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    clipped, dropped, videos, others = 0, 0, set(), []
    for w in caught:
        m = _CLIPPED.search(str(w.message))
        if m is None:
            others.append(w)
            continue
        videos.add(m.group(1))
        if m.group(2) == "clipped":
            clipped += 1
        else:
            dropped += 1
    for w in others:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if clipped or dropped:
        what = [f"{clipped} segment(s) ending after their video were clipped to its duration"
                ] if clipped else []
        what += [f"{dropped} segment(s) starting after their video ends were kept as given "
                 "(the official evaluation counts them)"
                 ] if dropped else []
        warnings.warn(f"{where}: {' and '.join(what)}, in {len(videos)} video(s) "
                      f"(e.g. {', '.join(sorted(videos)[:3])})", stacklevel=3)
