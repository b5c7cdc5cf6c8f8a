"""Synthetic two-stream (RGB + Flow) snippet features that are hard the way I3D features are.

No real video features ship with acn, so demos, tests and benchmarks run on this generator.
It lays features on a timeline of labelled segments (seconds): either the real THUMOS14
timelines packaged with acn, or timelines sampled from a real dataset's statistics.

Presets (``--preset``):

* ``thumos14`` (default): the 412 real THUMOS14-reduced videos (200 ``validation`` = train,
  212 ``test``), their durations, segments, labels and ambiguous segments.
* ``thumos14-sampled``: 200 + 212 videos sampled from THUMOS14 statistics (median ~155 s,
  actions median 3 s, ~25% of each video inside actions, one class per video, 13% two).
* ``activitynet12``: 4819 ``training`` + 2383 ``validation`` videos (use ``videos=`` for
  fewer), 100 classes, 2-239 s, ~1.5 long segments per video covering ~70% of it.
* ``long``: 4 + 4 videos of 50-70 minutes with THUMOS-like actions, for scaling benchmarks.

Snippets: 16 frames at 25 fps, ``T = max(1, round(duration * 25 / 16))``.

The model (per snippet, per stream; ``K``-dim latent ``h``, features
``relu(h @ W + b + e) * s``, so non-negative and sparse-ish with mean ~0.4 like pooled CNN
outputs; ``W`` is ``(K, D)``, ``e`` channel noise). Difficulty knobs (:class:`Knobs`, defaults):

Context and shots
  * ``context_prob=0.9``: chance a video is shot at its class's venue (else a random venue):
    the background predicts the class, as in real data. THUMOS14 classes share venues by name
    (the 7 athletics field events share one stadium, cricket bowl/shot share the ground).
  * ``venue_share=0.6``: share of a shot's scene variance that is the venue's (rest per shot).
  * ``generic_shot_prob=0.2``: shots of crowd / close-up / studio, alike for every class.
  * ``shot_median_s=5.0``: median shot length (lognormal); cuts move the RGB scene, not the
    actions. ``video_style=0.4``: per-video look (lighting, camera) added to every snippet.
Per-stream levels (std of each latent part; the static parts are normalised to unit scale)
  * ``rgb_scene=1.0``, ``flow_scene=0.35``: the scene dominates RGB, Flow sees little of it.
  * ``rgb_camera=0.15``, ``flow_camera=0.6``: camera motion per shot (gamma amplitude, smooth
    in time) is Flow noise; ``camera_follow=0.5``: the camera moves more during actions.
  * ``flow_cut=1.5``: Flow spike on the snippet of each shot cut.
  * ``rgb_action=0.8``, ``flow_action=0.6``: class-specific action signal;
    ``rgb_weak_frac=0.3`` of the classes have it scaled by ``rgb_weak_factor=0.3`` in RGB
    (Flow carries them; THUMOS14: CricketShot, Billiards, TennisSwing, GolfSwing,
    SoccerPenalty, FrisbeeCatch). ``rgb_actionness=0.25``, ``flow_actionness=0.4``: what all
    actions share.
  * ``family_share=0.5``: variance share of a class vector that its confusable family shares
    (THUMOS14: dive, cricket, spin-throw, run-up, jump-hit, swing; otherwise 60% of the classes
    in random pairs).
Shape of an action instance
  * ``boundary_level=0.3``, ``ramp_frac=0.2``: the shared actionness starts at 0.3 of full at
    the annotated boundary and reaches full after 20% of the segment; ``middle_frac=0.4``: the
    class-specific part rises from 0 at the boundaries to full at 40% in (middle discriminative).
  * ``instance_sigma=0.3``: lognormal amplitude per instance; ``style_level=0.4``: per-instance
    random direction (each instance performed a little differently).
  * ``fragment=0.5``, ``fragment_decay=0.8``: the class evidence inside an instance comes and
    goes (key poses vs. transitions): it is scaled by ``max(0, 1 + 0.5 n_t)``, ``n`` smooth
    unit noise (correlation ~0.8 per snippet) drawn for each stream apart (poses peak in RGB
    when motion does not in Flow), so weak supervision finds only parts of an instance.
  * ``pre_prob=0.6``, ``pre_level=0.4``, ``pre_max_s=4.0``: a preparation stretch (0.5-1.5x the
    action, at most 4 s) before 60% of the instances, rising to 0.4 of a class-specific
    preparation pattern (plus actionness at half that level).
  * ``ambiguous_level=0.5``: THUMOS14 ambiguous segments carry a half-strength action.
Non-action motion and noise
  * ``distractor_every_s=60.0``, ``distractor_level=0.5``, ``distractor_class=0.35``: ~3 s
    bursts of background motion (half actionness-like) once a minute on average, with a 0.35
    echo of the video's class (replays, practice).
  * ``latent_noise=0.35``, ``noise_decay=0.7``: latent noise correlated over snippets
    (correlation ~0.7 per snippet); ``channel_noise=0.5``, ``channel_corr=0.5``: per-channel
    noise, correlated between neighbouring snippets. ``bias=-0.1``: mean channel bias
    (sets sparsity: ~half the values are 0). ``latent_dim=64``: ``K``.
Output scale and sign (applied last, per stream; at the defaults nothing is computed, so the
features are exactly those of the model above)
  * ``rgb_gain=1.0``, ``flow_gain=1.0`` (> 0): multiply the stream's features (real feature
    sets differ in scale, and one stream can be much larger than the other).
  * ``rgb_offset=0.0``, ``flow_offset=0.0`` (any sign): added to the stream's features.
  * ``signed=0.0`` (0 or 1): 1 = no ReLU and no channel bias ``b``, i.e. ``(h @ W + e) * s``:
    roughly zero-mean signed features like CLIP embeddings or pre-activation pooled features
    (``bias`` then has no effect).

Family (:mod:`acn.data.synth_family`): ``thumos14`` and ``activitynet12`` each have numbered
members, knob settings and widths that differ the way real features differ (I3D-like,
CLIP-like signed small-scale, weak or 40x Flow, offsets, scene-dominated RGB, ...); pass
``member=K`` (``acn synth --member K``). Choose defaults on the ``selection`` members (mean and
worst case); report the ``heldout`` members only at the end.

Calibration (default preset, D=1024, test subset, THUMOS14 protocol): a top-k MIL linear
snippet classifier (k = T/8, 30 epochs) with multi-threshold CAS segments scored by
outer-inner contrast reaches mAP@0.5 of about 23 (RGB), 31 (Flow) and 32 (average of the two
CAS), 20-37 over seeds, and video classification mAP 78-90; real I3D W-TALC-style baselines
sit in the same range. No knob was set to favour a particular method.

Determinism: the same ``(preset, videos, dim, seed)`` and knobs (or member) give
byte-identical features. Which classes share venues and families and which are RGB-weak is
fixed by the class list; class, venue and projection vectors come from the seed; each video's
draws from the seed and its id.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from acn.data.annotations import Annotations
from acn.data.features import Dataset, MemoryStore
from acn.data.synth_family import Member, member_knobs
from acn.data.synth_family import member as family_member
from acn.data.synth_features import Knobs, World, knob_defaults, make_world, video_features
from acn.data.synth_timelines import num_snippets, sampled, subsample, thumos14_real
from acn.errors import AcnError

__all__ = ["FORMATS", "PRESETS", "WTALC_NAMES", "Knobs", "SynthData", "knob_defaults",
           "summary", "synth_annotations", "synthesize", "to_dataset", "write_synth"]

PRESETS = ("thumos14", "thumos14-sampled", "activitynet12", "long")
FORMATS = ("canonical", "wtalc")
WTALC_NAMES = {"thumos14": "Thumos14reduced", "thumos14-sampled": "Thumos14reduced",
               "activitynet12": "ActivityNet1.2", "long": "LongSynth"}


@dataclass
class SynthData:
    """A synthetic dataset: annotations (seconds) and ``{video: (rgb, flow)}``, each ``(T, D)``
    float32 on the 16-frame / 25 fps snippet grid; ``member`` is the family member it is, if
    any (:mod:`acn.data.synth_family`)."""

    annotations: Annotations
    features: Mapping[str, tuple[np.ndarray, np.ndarray]]
    preset: str
    dim: int
    seed: int
    member: Member | None = None


class LazyFeatures(Mapping[str, tuple[np.ndarray, np.ndarray]]):
    """Generates a video's features when asked (not kept), so writers can stream to disk."""

    def __init__(self, world: World, ann: Annotations) -> None:
        self.world, self.ann = world, ann

    def __getitem__(self, vid: str) -> tuple[np.ndarray, np.ndarray]:
        v = self.ann.videos[vid]
        return video_features(self.world, v, num_snippets(v.duration, v.fps, v.frames_per_snippet))

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.ann.videos))

    def __len__(self) -> int:
        return len(self.ann.videos)


def _check(preset: str, videos: int | None, dim: int, seed: int) -> None:
    if preset not in PRESETS:
        raise AcnError(f"unknown synthetic preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise AcnError(f"synthetic feature width must be a positive integer, got {dim!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise AcnError(f"synthetic seed must be a non-negative integer, got {seed!r}")
    if videos is not None and (isinstance(videos, bool)
                               or not isinstance(videos, (int, np.integer))):
        raise AcnError(f"number of synthetic videos must be an integer, got {videos!r}")


def synth_annotations(preset: str = "thumos14", videos: int | None = None,
                      seed: int = 0) -> Annotations:
    """The timelines of a preset (``videos`` in total over both subsets; ``None`` = all)."""
    _check(preset, videos, 1, seed)
    if preset == "thumos14":
        return subsample(thumos14_real(), videos, seed)
    return sampled(preset, seed, videos)


def _lazy(preset: str, videos: int | None, dim: int | None, seed: int, knobs: Knobs | None,
          member: int | None) -> SynthData:
    fam: Member | None = None
    if member is not None:
        if preset not in PRESETS:
            _check(preset, videos, 1, seed)  # "unknown preset" before "no family"
        if knobs is not None:
            raise AcnError("pass either knobs or a family member, not both (a member brings "
                           "its own knobs)")
        fam = family_member(preset, member)
        knobs = member_knobs(fam)
        dim = fam.dim if dim is None else dim
    dim = 1024 if dim is None else dim
    _check(preset, videos, dim, seed)
    ann = synth_annotations(preset, videos, seed)
    # the annotation name stays the preset's, so loaders and protocol choice treat a member
    # like its preset
    world = make_world(ann.classes, int(dim), int(seed), knobs or Knobs())
    return SynthData(ann, LazyFeatures(world, ann), preset, int(dim), int(seed), fam)


def synthesize(preset: str = "thumos14", videos: int | None = None, dim: int | None = None,
               seed: int = 0, knobs: Knobs | None = None, *,
               member: int | None = None) -> SynthData:
    """Generate a synthetic dataset in memory.

    Args:
        preset: one of :data:`PRESETS`.
        videos: total number of videos (split over the two subsets like the real dataset,
            at least one each); ``None`` for the preset's full size.
        dim: per-stream feature width ``D``; ``None`` = the member's width, else 1024.
        seed: non-negative; equal arguments give byte-identical features.
        knobs: difficulty knobs (defaults in the module docstring); not with ``member``.
        member: index of a family member of ``preset`` (:mod:`acn.data.synth_family`), whose
            knobs and width to use.

    Returns:
        :class:`SynthData` whose ``features`` is a dict ``{video: (rgb, flow)}``, each
        ``(T, D)`` float32 with ``T = max(1, round(duration * 25 / 16))`` snippets (>= 0
        unless the knobs make them signed or offset them below 0).
    """
    data = _lazy(preset, videos, dim, seed, knobs, member)
    data.features = {vid: data.features[vid] for vid in data.features}
    return data


def to_dataset(synth: SynthData) -> Dataset:
    """An in-memory :class:`~acn.data.features.Dataset` (``MemoryStore``) of ``synth``."""
    return Dataset(synth.annotations, MemoryStore(dict(synth.features)))


def write_synth(out: Path, preset: str = "thumos14", videos: int | None = None,
                dim: int | None = None, seed: int = 0, format: str = "canonical",
                knobs: Knobs | None = None, *, member: int | None = None) -> SynthData:
    """Generate a preset and write it to ``out`` in the canonical or the W-TALC layout.

    Canonical: ``out/index.json`` + ``out/features/{video}_{rgb,flow}.npy`` (written one video
    at a time, so memory stays small). W-TALC: ``out/<Name>-Annotations/`` and
    ``out/<Name>-I3D-JOINTFeatures.npy`` with ``<Name>`` from :data:`WTALC_NAMES` (held in
    memory whole, as the format is one file). ``dim``, ``knobs`` and ``member`` as in
    :func:`synthesize`. Returns the data (features generated lazily).
    """
    if format not in FORMATS:
        raise AcnError(f"unknown output format {format!r}; choose one of {', '.join(FORMATS)}")
    data = _lazy(preset, videos, dim, seed, knobs, member)
    if format == "canonical":
        from acn.data.canonical import save_canonical

        save_canonical(Path(out), data.annotations, data.features)  # type: ignore[arg-type]
    else:
        from acn.data.wtalc import save_wtalc

        save_wtalc(Path(out), WTALC_NAMES[preset], data.annotations,
                   data.features)  # type: ignore[arg-type]
    return data


def summary(data: SynthData) -> str:
    """One line: preset (and member), videos per subset, T statistics (snippets), classes,
    width, seed."""
    ann = data.annotations
    T = np.array([num_snippets(v.duration, v.fps, v.frames_per_snippet) for v in ann])
    subsets = ", ".join(f"{s} {len(ann.subset(s))}" for s in (ann.train_subset, ann.test_subset))
    m = data.member
    name = data.preset if m is None else f"{data.preset} member {m.index} ({m.role}: {m.note})"
    return (f"{name}: {len(ann)} videos ({subsets}), T min/median/max "
            f"{T.min()}/{int(np.median(T))}/{T.max()} snippets, {len(ann.classes)} classes, "
            f"D={data.dim} per stream, seed {data.seed}")

