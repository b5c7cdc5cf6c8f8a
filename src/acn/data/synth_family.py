"""A family of synthetic datasets per preset: members that differ the way real features differ.

One generator setting is one dataset. A default chosen on it (a threshold, a learning rate, a
loss weight) may only fit that setting's scale, sign and difficulty, the way a method tuned
on I3D features can fail on CLIP features. So each preset with a family has several members,
each a set of :class:`~acn.data.synth_features.Knobs` overrides and a feature width ``D``:
ReLU I3D-like features, weak or large-scale Flow, signed small-scale (CLIP-like) features,
offsets, scene-dominated RGB, fast cuts, very sparse wide features, heavy noise.

How to use them: develop (choose defaults) on the ``selection`` members only, judging a choice
by its mean over them AND its worst case; report the ``heldout`` members only at the end, once,
as the estimate of how the choice carries to features nobody tuned on. Half of each preset's
members are held out. ``acn synth --member K`` writes member ``K``; ``acn synth
--list-members`` lists them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from acn.data.synth_features import Knobs
from acn.errors import AcnError

__all__ = ["FAMILY", "ROLES", "Member", "member", "member_knobs", "members"]

ROLES = ("selection", "heldout")


@dataclass(frozen=True)
class Member:
    """One dataset of a preset's family: ``knobs`` overrides the :class:`Knobs` defaults,
    ``dim`` is its per-stream feature width ``D``, ``role`` is ``selection`` or ``heldout``."""

    preset: str
    index: int
    dim: int
    # a dict is not hashable: leave it out of the hash (members stay usable as dict keys)
    knobs: dict[str, float] = field(hash=False)
    role: str
    note: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise AcnError(f"family member {self.preset} {self.index}: role {self.role!r} is "
                           f"not one of {', '.join(ROLES)}")


def _family(preset: str, rows: list[tuple[str, int, dict[str, float], str]]) -> list[Member]:
    return [Member(preset, i, dim, knobs, role, note)
            for i, (role, dim, knobs, note) in enumerate(rows)]


FAMILY: dict[str, list[Member]] = {
    # the real THUMOS14 timelines, 20 classes
    "thumos14": _family("thumos14", [
        ("selection", 1024, {}, "I3D-like ReLU features (the preset's defaults)"),
        ("heldout", 1024,
         {"flow_gain": 0.02, "flow_offset": 0.01, "flow_action": 0.4, "flow_camera": 0.9},
         "weak Flow at 1/50 scale"),
        ("selection", 768,
         {"signed": 1, "rgb_gain": 0.05, "flow_gain": 0.05, "rgb_action": 1.0,
          "rgb_weak_frac": 0.1, "flow_action": 0.45},
         "signed small-scale (CLIP-like), RGB the stronger stream"),
        ("heldout", 512,
         {"rgb_scene": 1.6, "rgb_action": 0.5, "context_prob": 0.97, "flow_action": 0.8},
         "scene-dominated RGB: classifies by context, localizes poorly"),
        ("selection", 512,
         {"flow_gain": 40.0, "rgb_offset": 3.0, "shot_median_s": 2.0, "flow_cut": 2.5},
         "Flow 40x RGB's scale, RGB offset, fast cuts"),
        ("heldout", 2048,
         {"bias": -0.8, "distractor_every_s": 20.0, "distractor_level": 0.8},
         "very sparse 2048-d ReLU, frequent background motion"),
        ("selection", 256,
         {"context_prob": 0.3, "shot_median_s": 2.5, "flow_action": 0.35, "flow_camera": 1.0},
         "little context, fast cuts, weak Flow"),
        ("heldout", 1024,
         {"signed": 1, "rgb_offset": -2.0, "flow_offset": 1.0, "latent_noise": 0.6,
          "channel_noise": 0.8},
         "signed with offsets, noisy"),
    ]),
    # sampled ActivityNet v1.2 timelines, 100 classes
    "activitynet12": _family("activitynet12", [
        ("selection", 512, {}, "defaults"),
        ("heldout", 1024, {"flow_gain": 0.02, "flow_action": 0.4}, "weak Flow at 1/50 scale"),
        ("selection", 256, {"signed": 1, "rgb_action": 0.5, "rgb_scene": 1.5},
         "signed, weak RGB action signal"),
        ("heldout", 768, {"flow_gain": 30.0, "rgb_offset": 2.0, "context_prob": 0.5},
         "large-scale Flow, RGB offset, half the videos out of context"),
    ]),
}


def _family_of(preset: str) -> list[Member]:
    if preset not in FAMILY:
        raise AcnError(f"synthetic preset {preset!r} has no family of datasets; presets with "
                       f"one: {', '.join(FAMILY)}")
    return FAMILY[preset]


def member(preset: str, index: int) -> Member:
    """Member ``index`` (0-based) of ``preset``'s family."""
    fam = _family_of(preset)
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) \
            or not 0 <= index < len(fam):
        raise AcnError(f"synthetic preset {preset!r} has no family member {index!r}; choose "
                       f"0-{len(fam) - 1}")
    return fam[int(index)]


def members(preset: str, role: str | None = None) -> list[Member]:
    """``preset``'s members in index order; only those of ``role`` when given."""
    if role is not None and role not in ROLES:
        raise AcnError(f"unknown family member role {role!r}; choose one of {', '.join(ROLES)}")
    return [m for m in _family_of(preset) if role is None or m.role == role]


def member_knobs(m: Member) -> Knobs:
    """The member's :class:`Knobs`: the defaults with its overrides."""
    return Knobs(**m.knobs)
