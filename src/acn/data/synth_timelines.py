"""Timelines (videos, durations, labelled segments, all in seconds) for the synthetic presets.

``thumos14`` lays the data on the real THUMOS14-reduced annotations packaged with acn; the
other presets sample timelines from summary statistics of a real dataset (see
:data:`SAMPLED`). Every timeline is a deterministic function of the seed; a sampled video
depends only on ``(seed, subset, index)``, so asking for fewer videos keeps the ones asked for.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from acn.data.annotations import Annotations, Segment, Video
from acn.errors import AcnError

FPS = 25.0
FRAMES_PER_SNIPPET = 16

THUMOS14_CLASSES = [
    "BaseballPitch", "BasketballDunk", "Billiards", "CleanAndJerk", "CliffDiving",
    "CricketBowling", "CricketShot", "Diving", "FrisbeeCatch", "GolfSwing", "HammerThrow",
    "HighJump", "JavelinThrow", "LongJump", "PoleVault", "Shotput", "SoccerPenalty",
    "TennisSwing", "ThrowDiscus", "VolleyballSpiking",
]


def num_snippets(duration: float, fps: float = FPS,
                 frames_per_snippet: int = FRAMES_PER_SNIPPET) -> int:
    """Snippets ``T`` of ``duration`` seconds: ``max(1, round(duration * fps / frames))``."""
    return max(1, int(round(duration * fps / frames_per_snippet)))


def thumos14_folder() -> Path:
    """The packaged THUMOS14-reduced W-TALC annotation folder (MIT, licence file beside it)."""
    return Path(str(resources.files("acn") / "resources" / "thumos14"
                    / "Thumos14reduced-Annotations"))


def thumos14_real() -> Annotations:
    """The real THUMOS14-reduced timelines (412 videos, 20 classes, ambiguous segments).

    The packaged files are our own trusted package data, so their pickles are loaded; the
    warnings about their documented defects (clipped segments, relabelled videos) are silenced.
    """
    from acn.data.wtalc import load_wtalc_annotations

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ann = load_wtalc_annotations(thumos14_folder(), allow_pickle=True)
    ann.name = "synth-thumos14"
    return ann


# -- sampled timelines ---------------------------------------------------------------------------
@dataclass(frozen=True)
class TimelineStats:
    """Summary statistics a sampled preset draws its timelines from (seconds)."""

    classes: tuple[str, ...]
    subsets: tuple[tuple[str, int], ...]      # (name, number of videos); first = training
    # ("lognormal", median, sigma, lo, hi) or ("uniform", lo, hi, 0, 0)
    duration: tuple[str, float, float, float, float]
    coverage: tuple[float, float]             # Beta(a, b): fraction of the video inside actions
    segment_count: str                        # "coverage": add THUMOS-like segments until covered;
    #                                           "few": ActivityNet-like 1 (75%), 2 (15%), 3+ (10%)
    segment_length: tuple[float, float, float]  # lognormal (median, sigma, min) for "coverage"
    classes_per_video: tuple[float, ...]      # P(1 class), P(2 classes), ...
    second_class_share: float = 0.35          # fraction of segments of the other class(es)


SAMPLED: dict[str, TimelineStats] = {
    # /work/shared/data/README.md: median video ~150-162 s (241 snippets), actions median ~3 s,
    # ~8-9 segments/video, ~25% of each video inside actions, 200 + 212 videos.
    "thumos14-sampled": TimelineStats(
        classes=tuple(THUMOS14_CLASSES), subsets=(("validation", 200), ("test", 212)),
        duration=("lognormal", 155.0, 0.7, 15.0, 1600.0), coverage=(2.2, 6.0),
        segment_count="coverage", segment_length=(3.0, 0.7, 0.4),
        classes_per_video=(0.87, 0.13)),
    # ActivityNet v1.2: 100 classes, videos 2-239 s (about uniform), ~1.5 segments/video of
    # median 29 s, median 0.7 of each video inside actions, 4819 training + 2383 validation.
    "activitynet12": TimelineStats(
        classes=tuple(f"Activity{i:03d}" for i in range(100)),
        subsets=(("training", 4819), ("validation", 2383)),
        duration=("uniform", 2.0, 239.0, 0.0, 0.0), coverage=(1.5, 0.7),
        segment_count="few", segment_length=(29.0, 0.9, 1.0), classes_per_video=(1.0,)),
    # Hour-long broadcasts with THUMOS-like actions, for scaling benchmarks.
    "long": TimelineStats(
        classes=tuple(THUMOS14_CLASSES), subsets=(("validation", 4), ("test", 4)),
        duration=("uniform", 3000.0, 4200.0, 0.0, 0.0), coverage=(2.2, 6.0),
        segment_count="coverage", segment_length=(3.0, 0.7, 0.4),
        classes_per_video=(0.4, 0.35, 0.25)),
}


def _duration(st: TimelineStats, rng: np.random.Generator) -> float:
    kind, a, b, lo, hi = st.duration
    if kind == "uniform":
        return float(rng.uniform(a, b))
    return float(np.clip(a * np.exp(b * rng.standard_normal()), lo, hi))


def _segment_lengths(st: TimelineStats, duration: float, rng: np.random.Generator) -> np.ndarray:
    cover = float(np.clip(rng.beta(*st.coverage), 0.02, 0.97)) * duration
    if st.segment_count == "few":
        r = rng.random()
        n = 1 if r < 0.75 else 2 if r < 0.9 else 2 + int(rng.geometric(0.3))
        return cover * rng.dirichlet(np.full(n, 2.0))
    median, sigma, low = st.segment_length
    n_draw = int(3 * cover / median) + 8  # more than enough to reach the cover
    draw = np.maximum(low, median * np.exp(sigma * rng.standard_normal(n_draw)))
    n = int(np.searchsorted(np.cumsum(draw), cover)) + 1
    return draw[: min(n, len(draw))]


def _place(lengths: np.ndarray, duration: float, rng: np.random.Generator) -> np.ndarray:
    """Non-overlapping ``(n, 2)`` [start, end] seconds, random gaps, 0.1 s precision."""
    total = lengths.sum()
    if total > 0.97 * duration:  # keep some background between and around the actions
        lengths = lengths * (0.97 * duration / total)
    gaps = rng.dirichlet(np.ones(len(lengths) + 1)) * (duration - lengths.sum())
    starts = np.cumsum(gaps[:-1]) + np.concatenate([[0.0], np.cumsum(lengths)[:-1]])
    seg = np.round(np.stack([starts, starts + lengths], axis=1), 1)
    seg[:, 1] = np.minimum(np.maximum(seg[:, 1], seg[:, 0] + 0.1), duration)
    return seg


def sampled_video(st: TimelineStats, vid: str, subset: str, seed: int,
                  key: tuple[int, int]) -> Video:
    """One video drawn from ``st``; depends only on ``seed`` and ``key`` = (subset, index)."""
    rng = np.random.default_rng([seed, 1, *key])
    duration = round(_duration(st, rng), 2)
    seg = _place(_segment_lengths(st, duration, rng), duration, rng)
    k = int(rng.choice(len(st.classes_per_video), p=st.classes_per_video)) + 1
    cls = rng.choice(len(st.classes), size=k, replace=False)
    which = np.where(rng.random(len(seg)) < st.second_class_share,
                     rng.integers(1, k, size=len(seg)) if k > 1 else 0, 0)
    which[0] = 0  # the main class always occurs
    labels = [st.classes[cls[w]] for w in which]
    segments = [Segment(float(s), float(e), lab) for (s, e), lab in zip(seg.tolist(), labels)]
    return Video(id=vid, subset=subset, duration=duration, labels=tuple(sorted(set(labels))),
                 segments=segments, fps=FPS, frames_per_snippet=FRAMES_PER_SNIPPET)


def per_subset_counts(have: list[tuple[str, int]], videos: int | None, where: str,
                      at_most: bool = False) -> list[int]:
    """Split ``videos`` over the subsets in proportion to ``have``, at least one each.

    With ``at_most`` (real timelines) asking for more videos than ``have`` is an error;
    sampled presets can make any number.
    """
    full = [n for _, n in have]
    if videos is None:
        return full
    if videos < len(have):
        raise AcnError(f"{where}: --videos {videos} is too few; need at least {len(have)} "
                       f"to keep every subset ({', '.join(s for s, _ in have)})")
    if at_most and videos > sum(full):
        raise AcnError(f"{where}: --videos {videos} is more than the {sum(full)} videos of its "
                       "real timelines; use a sampled preset for more")
    if videos == sum(full):
        return full
    counts = [max(1, int(round(videos * n / sum(full)))) for n in full]
    counts[0] += videos - sum(counts)  # rounding remainder goes to the training subset
    return counts


def sampled(preset: str, seed: int, videos: int | None) -> Annotations:
    """Timelines of a sampled preset (``videos`` in total, split like the real dataset)."""
    st = SAMPLED[preset]
    counts = per_subset_counts(list(st.subsets), videos, f"preset {preset!r}")
    vids: dict[str, Video] = {}
    for si, ((subset, _), n) in enumerate(zip(st.subsets, counts)):
        for i in range(n):
            vid = f"synth_{subset}_{i:05d}"
            vids[vid] = sampled_video(st, vid, subset, seed, (si, i))
    return Annotations(classes=list(st.classes), videos=vids, train_subset=st.subsets[0][0],
                       test_subset=st.subsets[1][0], name=f"synth-{preset}")


def subsample(ann: Annotations, videos: int | None, seed: int) -> Annotations:
    """Keep ``videos`` videos, split over the subsets in proportion, chosen by the seed."""
    if videos is None:
        return ann
    names = [ann.train_subset, ann.test_subset]
    have = [(s, len(ann.subset(s))) for s in names]
    counts = per_subset_counts(have, videos, f"preset {ann.name.removeprefix('synth-')!r}",
                               at_most=True)
    keep: list[str] = []
    rng = np.random.default_rng([seed, 3])
    for s, n in zip(names, counts):
        ids = [v.id for v in ann.subset(s)]
        keep += [ids[i] for i in np.sort(rng.permutation(len(ids))[:n])]
    return ann.restrict(keep)
