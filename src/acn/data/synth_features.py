"""The synthetic two-stream feature generator (see :mod:`acn.data.synth` for the model).

Each snippet's features are ``relu(h @ W + b + e) * s``: ``h`` a ``K``-dim latent mixture of
scene, camera, cut, action and noise components (below), ``W`` a random ``(K, D)`` projection
per stream, ``b``/``s`` per-channel bias and scale, ``e`` temporally correlated channel noise;
then ``g * x + o`` with a per-stream gain ``g`` and offset ``o`` (``signed`` features skip
``b`` and the ReLU).
Global parameters (class, venue, camera vectors; projections) come from the seed alone; each
video's draws come from ``(seed, crc32(video id))``, so a video's features do not depend on
which other videos are generated.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, fields

import numpy as np
import torch

from acn.data.annotations import Video
from acn.errors import AcnError

STREAMS = ("rgb", "flow")
# knobs that may be negative (the others are levels, probabilities, lengths or gains)
SIGNED_KNOBS = ("bias", "rgb_offset", "flow_offset")


@dataclass(frozen=True)
class Knobs:
    """Difficulty knobs; every default is listed in :mod:`acn.data.synth`'s docstring."""

    latent_dim: int = 64
    # context: venues correlated with classes, shot structure
    context_prob: float = 0.9
    venue_share: float = 0.6
    generic_shot_prob: float = 0.2
    shot_median_s: float = 5.0
    video_style: float = 0.4
    # per-stream latent levels (std of the component before normalisation)
    rgb_scene: float = 1.0
    flow_scene: float = 0.35
    rgb_camera: float = 0.15
    flow_camera: float = 0.6
    flow_cut: float = 1.5
    camera_follow: float = 0.5
    rgb_action: float = 0.8
    flow_action: float = 0.6
    rgb_weak_frac: float = 0.3
    rgb_weak_factor: float = 0.3
    rgb_actionness: float = 0.25
    flow_actionness: float = 0.4
    family_share: float = 0.5
    # shape of an action instance
    boundary_level: float = 0.3
    ramp_frac: float = 0.2
    middle_frac: float = 0.4
    instance_sigma: float = 0.3
    fragment: float = 0.5
    fragment_decay: float = 0.8
    style_level: float = 0.4
    pre_prob: float = 0.6
    pre_level: float = 0.4
    pre_max_s: float = 4.0
    ambiguous_level: float = 0.5
    # background motion that is not an action
    distractor_every_s: float = 60.0
    distractor_level: float = 0.5
    distractor_class: float = 0.35
    # noise
    latent_noise: float = 0.35
    noise_decay: float = 0.7
    channel_noise: float = 0.5
    channel_corr: float = 0.5
    bias: float = -0.1
    # output scale and sign, per stream (real feature sets differ in all three)
    rgb_gain: float = 1.0
    flow_gain: float = 1.0
    rgb_offset: float = 0.0
    flow_offset: float = 0.0
    signed: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
                raise AcnError(f"synthetic knob {f.name}={v!r}: not a finite number")
            if f.name not in SIGNED_KNOBS and v < 0:
                raise AcnError(f"synthetic knob {f.name}={v!r}: must not be negative")
        if not isinstance(self.latent_dim, int) or self.latent_dim < 1:
            raise AcnError(f"synthetic knob latent_dim={self.latent_dim!r}: must be a positive "
                           "integer")
        for name in ("context_prob", "venue_share", "generic_shot_prob", "rgb_weak_frac",
                     "family_share", "boundary_level", "pre_prob", "noise_decay", "fragment_decay"):
            if getattr(self, name) > 1:
                raise AcnError(f"synthetic knob {name}={getattr(self, name)!r}: must lie in [0, 1]")
        for name in ("ramp_frac", "middle_frac"):
            if not 0 < getattr(self, name) <= 0.5:
                raise AcnError(f"synthetic knob {name}={getattr(self, name)!r}: must lie in "
                               "(0, 0.5]")
        for name in ("shot_median_s", "distractor_every_s", "rgb_gain", "flow_gain"):
            if getattr(self, name) <= 0:
                raise AcnError(f"synthetic knob {name}={getattr(self, name)!r}: must be positive")
        if self.signed not in (0, 1):
            raise AcnError(f"synthetic knob signed={self.signed!r}: must be 0 (ReLU features) "
                           "or 1 (signed features)")


def knob_defaults() -> dict[str, float | int]:
    return {f.name: f.default for f in fields(Knobs)}  # type: ignore[misc]


# THUMOS14 classes grouped the way the real videos are: athletics field events share the
# stadium, cricket shots and bowls share the ground; families share motion components.
THUMOS14_VENUES = {
    "BaseballPitch": "baseball", "BasketballDunk": "court", "Billiards": "billiards",
    "CleanAndJerk": "weightlifting", "CliffDiving": "cliff", "CricketBowling": "cricket",
    "CricketShot": "cricket", "Diving": "pool", "FrisbeeCatch": "park", "GolfSwing": "golf",
    "HammerThrow": "stadium", "HighJump": "stadium", "JavelinThrow": "stadium",
    "LongJump": "stadium", "PoleVault": "stadium", "Shotput": "stadium",
    "SoccerPenalty": "soccer", "TennisSwing": "tennis", "ThrowDiscus": "stadium",
    "VolleyballSpiking": "court",
}
THUMOS14_FAMILIES = {
    "CliffDiving": "dive", "Diving": "dive", "CricketBowling": "cricket", "CricketShot": "cricket",
    "HammerThrow": "spin-throw", "ThrowDiscus": "spin-throw", "Shotput": "spin-throw",
    "HighJump": "run-up", "PoleVault": "run-up", "LongJump": "run-up", "JavelinThrow": "run-up",
    "BasketballDunk": "jump-hit", "VolleyballSpiking": "jump-hit",
    "TennisSwing": "swing", "GolfSwing": "swing", "BaseballPitch": "swing",
}


# Classes whose look barely changes when the action happens (same players, same place), in
# the order they become RGB-weak as ``rgb_weak_frac`` grows.
THUMOS14_RGB_WEAK = [
    "CricketShot", "Billiards", "TennisSwing", "GolfSwing", "SoccerPenalty", "FrisbeeCatch",
    "BaseballPitch", "CricketBowling", "Shotput", "VolleyballSpiking",
]


def class_structure(classes: list[str],
                    rgb_weak_frac: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(venue, family, rgb_weak)`` of each class: THUMOS14's by name, otherwise random pairs.

    A property of the class list, not of the seed: seeds redraw vectors and videos of the
    same dataset, so results over seeds measure a method, not a different class structure.
    """
    c = len(classes)
    n_weak = int(round(rgb_weak_frac * c))
    rng = np.random.default_rng(20140)
    if set(classes) <= set(THUMOS14_VENUES):
        ven = [THUMOS14_VENUES[x] for x in classes]
        fam = [THUMOS14_FAMILIES.get(x, x) for x in classes]
        rest = [x for x in classes if x not in THUMOS14_RGB_WEAK]
        order = [x for x in THUMOS14_RGB_WEAK if x in classes] + rest
        weak = np.isin(classes, order[:n_weak])
        return (np.unique(ven, return_inverse=True)[1].astype(np.int64),
                np.unique(fam, return_inverse=True)[1].astype(np.int64), weak)
    venue = np.empty(c, np.int64)
    venue[rng.permutation(c)] = np.arange(c) // 2  # two classes per venue
    family = np.arange(c)
    perm = rng.permutation(c)
    m = (int(0.6 * c) // 2) * 2  # 60% of the classes come in confusable pairs
    family[perm[1:m:2]] = perm[0:m:2]
    weak = np.zeros(c, bool)
    weak[rng.permutation(c)[:n_weak]] = True
    return venue, np.unique(family, return_inverse=True)[1].astype(np.int64), weak


def _unit(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """Standard normal vectors rescaled to exactly unit variance per entry (norm sqrt(K))."""
    v = rng.standard_normal(shape)
    return v * np.sqrt(shape[-1]) / np.linalg.norm(v, axis=-1, keepdims=True)


def _mix(a: np.ndarray, b: np.ndarray, share: float) -> np.ndarray:
    return np.sqrt(share) * a + np.sqrt(1.0 - share) * b


@dataclass
class StreamWorld:
    """One stream's concept vectors (``K``-dim latent) and projection to ``D`` channels."""

    level: dict[str, float]
    cls: np.ndarray        # (C, K) class motion/appearance
    prep: np.ndarray       # (C, K) pre-action (preparation) appearance
    venue: np.ndarray      # (V, K)
    generic: np.ndarray    # (G, K) crowd / close-up / studio shots, shared by all classes
    actionness: np.ndarray  # (K,) what every action has in common
    bgmotion: np.ndarray   # (K,) non-action motion (people walking, players repositioning)
    camera: np.ndarray     # (M, K) camera-motion patterns (pan, tilt, zoom, shake)
    cut: np.ndarray        # (K,) shot-cut transient
    proj: np.ndarray       # (K, D) float32
    bias: np.ndarray       # (D,) float32
    scale: np.ndarray      # (D,) float32
    norm: float            # latent std of the static part, so pre-activations are ~unit


@dataclass
class World:
    """Everything shared by the videos of one synthetic dataset."""

    classes: list[str]
    index: dict[str, int]
    venue_of: np.ndarray    # (C,) venue index of each class
    rgb_weak: np.ndarray    # (C,) bool: the RGB signal of this class is weak
    knobs: Knobs
    dim: int
    seed: int
    streams: dict[str, StreamWorld]


def make_world(classes: list[str], dim: int, seed: int, knobs: Knobs = Knobs()) -> World:
    rng = np.random.default_rng([seed, 0])
    k = knobs
    K, C = k.latent_dim, len(classes)
    venue_of, family, rgb_weak = class_structure(classes, k.rgb_weak_frac)
    streams = {}
    for s in STREAMS:
        fam = _unit(rng, family.max() + 1, K)
        cls = _unit(rng, C, K)
        cls = _mix(fam[family], cls, k.family_share)
        prep = _mix(cls, _unit(rng, C, K), 0.4)
        level = {n: getattr(k, f"{s}_{n}", 0.0)
                 for n in ("scene", "camera", "cut", "action", "actionness")}
        norm = float(np.sqrt(level["scene"] ** 2 + k.video_style ** 2 + 1.5 * level["camera"] ** 2
                             + k.latent_noise ** 2))
        proj = (rng.standard_normal((K, dim)) / np.sqrt(K)).astype(np.float32)
        streams[s] = StreamWorld(
            level=level, cls=cls, prep=prep, venue=_unit(rng, venue_of.max() + 1, K),
            generic=_unit(rng, 8, K), actionness=_unit(rng, K)[0], bgmotion=_unit(rng, K)[0],
            camera=_unit(rng, 6, K), cut=_unit(rng, K)[0], proj=proj,
            bias=(k.bias + 0.3 * rng.standard_normal(dim)).astype(np.float32),
            # channels differ in magnitude like real CNN channels (lognormal)
            scale=np.exp(0.35 * rng.standard_normal(dim) - 0.06).astype(np.float32),
            norm=norm)
    return World(list(classes), {c: i for i, c in enumerate(classes)}, venue_of, rgb_weak, knobs,
                 dim, seed, streams)


# -- per-video pieces ------------------------------------------------------------------------------
def _ramp(u: np.ndarray, frac: float) -> np.ndarray:
    """0 at the ends of [0, 1], rising linearly to 1 at ``frac`` from either end."""
    return np.clip(np.minimum(u, 1.0 - u) / frac, 0.0, 1.0)


def _profiles(start: np.ndarray, end: np.ndarray, T: int,
              spf: float) -> tuple[np.ndarray, np.ndarray]:
    """``(coverage, u)``, each ``(n, T)``: how much of snippet t lies in interval i, and where
    (0 = start, 1 = end) the covered part's middle lies in the interval."""
    t0 = np.arange(T) * spf
    lo = np.maximum(start[:, None], t0)
    hi = np.minimum(end[:, None], t0 + spf)
    cov = np.clip(hi - lo, 0.0, None) / spf
    length = np.maximum(end - start, 1e-6)[:, None]
    u = np.clip((0.5 * (lo + hi) - start[:, None]) / length, 0.0, 1.0)
    return cov, u


def _smooth_noise(rng: np.random.Generator, T: int, n: int, decay: float,
                  taps: int = 8) -> np.ndarray:
    """``(T, n)`` unit-variance noise correlated over time (exponential FIR, corr ~decay^lag)."""
    w = decay ** np.arange(taps)
    w /= np.linalg.norm(w)
    z = rng.standard_normal((T + taps - 1, n))
    return sum(w[j] * z[taps - 1 - j: taps - 1 - j + T] for j in range(taps))


def _mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` through torch (see :func:`single_thread`); numpy's OpenBLAS cannot be held to
    one thread without another dependency and its spinning threads slow a busy machine ~5x."""
    ta, tb = torch.from_numpy(np.ascontiguousarray(a)), torch.from_numpy(np.ascontiguousarray(b))
    return (ta @ tb).numpy()


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch single-threaded inside the block: one video's products are too small to gain
    from threads, and threads that wait for busy cores make them several times slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def video_features(world: World, video: Video, T: int) -> tuple[np.ndarray, np.ndarray]:
    """``(rgb, flow)``, each ``(T, D)`` float32, for one video laid on its segments; >= 0
    unless the knobs ``signed`` or a negative ``*_offset`` say otherwise."""
    with single_thread():
        return _video_features(world, video, T)


def _video_features(world: World, video: Video, T: int) -> tuple[np.ndarray, np.ndarray]:
    k = world.knobs
    rng = np.random.default_rng([world.seed, 2, zlib.crc32(video.id.encode())])
    spf = video.frames_per_snippet / video.fps  # seconds per snippet
    K = k.latent_dim
    ix = world.index

    # ---- actions: per-class intensity tracks -------------------------------------------------
    seg = np.array([[s.start, s.end] for s in video.segments], dtype=np.float64).reshape(-1, 2)
    lab = np.array([ix[s.label] for s in video.segments], dtype=np.int64)
    if len(lab):
        main = int(lab[0])
    else:
        main = ix[video.labels[0]] if video.labels else int(rng.integers(len(ix)))
    # ambiguous stretches carry a partial action of the video's class
    amb = np.array(video.ambiguous, dtype=np.float64).reshape(-1, 2)
    all_seg = np.concatenate([seg, amb])
    all_lab = np.concatenate([lab, np.full(len(amb), main, np.int64)])
    n = len(all_seg)
    amp = np.exp(k.instance_sigma * rng.standard_normal(n))
    amp[len(seg):] *= k.ambiguous_level
    present, cls_row = np.unique(all_lab, return_inverse=True)
    cov, u = _profiles(all_seg[:, 0], all_seg[:, 1], T, spf)
    gen = amp[:, None] * cov * (k.boundary_level + (1 - k.boundary_level) * _ramp(u, k.ramp_frac))
    mid = amp[:, None] * cov * _ramp(u, k.middle_frac)  # the discriminative middle
    a_gen = gen.max(axis=0) if n else np.zeros(T)
    # pre-action: a preparation stretch before some instances, rising to pre_level
    plen = np.minimum(rng.uniform(0.5, 1.5, n) * (all_seg[:, 1] - all_seg[:, 0]), k.pre_max_s)
    pcov, pu = _profiles(all_seg[:, 0] - plen, all_seg[:, 0], T, spf)
    pre = (rng.random(n) < k.pre_prob)[:, None] * amp[:, None] * pcov * pu * k.pre_level
    a_pre = np.zeros((len(present), T))
    np.maximum.at(a_pre, cls_row, pre)
    a_gen = np.maximum(a_gen, 0.5 * pre.max(axis=0) if n else 0.0)

    # ---- shots ---------------------------------------------------------------------------------
    med = k.shot_median_s / spf
    lens = np.maximum(1.0, med * np.exp(0.8 * rng.standard_normal(int(3 * T / med) + 8)))
    cuts = np.unique(np.floor(np.cumsum(lens)).astype(np.int64))
    cuts = cuts[(cuts > 0) & (cuts < T)]
    shot = np.searchsorted(cuts, np.arange(T), side="right")
    n_shots = len(cuts) + 1
    generic_shot = rng.random(n_shots) < k.generic_shot_prob
    generic_idx = rng.integers(8, size=n_shots)
    n_venues = len(world.streams["rgb"].venue)
    venue = world.venue_of[main] if rng.random() < k.context_prob else int(rng.integers(n_venues))
    cam_amp = rng.gamma(2.0, 0.5, n_shots)  # mean 1
    cam_mix = rng.standard_normal((n_shots, 6))
    cam_mod = np.abs(1.0 + 0.5 * _smooth_noise(rng, T, 1, 0.9)[:, 0]) + k.camera_follow * a_gen
    cam_t = cam_amp[shot] * cam_mod

    # ---- distractors: non-action motion bursts -------------------------------------------------
    dur = T * spf
    nd = int(rng.poisson(dur / k.distractor_every_s))
    dstart = rng.uniform(0, dur, nd)
    dend = dstart + 3.0 * np.exp(0.6 * rng.standard_normal(nd))
    dcov, du = _profiles(dstart, dend, T, spf)
    dprof = np.exp(0.3 * rng.standard_normal(nd))[:, None] * dcov * _ramp(du, 0.3)

    out = []
    for s in STREAMS:
        w = world.streams[s]
        lv = w.level
        act_amp = lv["action"] * np.where(world.rgb_weak[present], k.rgb_weak_factor, 1.0) \
            if s == "rgb" else np.full(len(present), lv["action"])
        # scene: venue (or generic) look + shot-specific look; a snippet straddling a cut mixes both
        base = np.where(generic_shot[:, None], w.generic[generic_idx], w.venue[venue])
        shot_vec = _mix(base, _unit(rng, n_shots, K), k.venue_share)
        scene = shot_vec[shot]
        scene[cuts] = 0.5 * (shot_vec[shot[cuts] - 1] + shot_vec[shot[cuts]])
        h = lv["scene"] * scene + k.video_style * _unit(rng, K)
        cam_dir = _mm(cam_mix, w.camera) / np.sqrt(6.0)
        h += lv["camera"] * cam_t[:, None] * cam_dir[shot]
        if lv["cut"]:
            h[cuts] += lv["cut"] * np.exp(0.3 * rng.standard_normal(len(cuts)))[:, None] * \
                _mix(w.cut, _unit(rng, len(cuts), K), 0.7)
        # the class evidence comes and goes within an instance, at different moments in the
        # two streams (key poses in RGB, fast movement in Flow)
        frag = np.clip(1.0 + k.fragment * _smooth_noise(rng, T, 1, k.fragment_decay)[:, 0], 0, None)
        mid_s = mid * frag
        a_cls = np.zeros((len(present), T))
        np.maximum.at(a_cls, cls_row, mid_s)
        h += _mm(a_cls.T, act_amp[:, None] * w.cls[present])
        h += _mm(a_pre.T, w.prep[present]) * lv["action"]
        h += lv["actionness"] * a_gen[:, None] * w.actionness
        # each instance is performed a little differently
        h += _mm(mid_s.T, _unit(rng, max(n, 1), K)[:n]) * (k.style_level * lv["action"])
        dvec = _mix(_mix(w.actionness, w.bgmotion, 0.5), _unit(rng, max(nd, 1), K)[:nd], 0.6)
        dvec = dvec + k.distractor_class * w.cls[main]
        h += k.distractor_level * (lv["actionness"] + lv["action"]) * _mm(dprof.T, dvec)
        h += k.latent_noise * _smooth_noise(rng, T, K, k.noise_decay)
        h /= w.norm
        z = _mm(h.astype(np.float32), w.proj)
        if not k.signed:
            # signed features go without the bias (the same as subtracting it again before
            # scaling, but exact): roughly zero-mean per channel, like pre-activation features
            z += w.bias
        # channel noise: uniform (5x cheaper to draw than normal), unit variance, MA(1) in time
        e = rng.random((T + 1, world.dim), dtype=np.float32)
        e -= np.float32(0.5)
        c = k.channel_corr
        e *= np.float32(k.channel_noise * np.sqrt(12.0 / (1 + c * c)))
        z += e[1:]
        e[:-1] *= np.float32(c)
        z += e[:-1]
        if not k.signed:
            np.maximum(z, 0.0, out=z)
        z *= w.scale
        # scale and offset of the whole stream; skipped at the defaults so that default
        # features stay byte-identical to those made before these knobs existed
        gain, offset = getattr(k, f"{s}_gain"), getattr(k, f"{s}_offset")
        if gain != 1.0:
            z *= np.float32(gain)
        if offset != 0.0:
            z += np.float32(offset)
        out.append(z)
    return out[0], out[1]
