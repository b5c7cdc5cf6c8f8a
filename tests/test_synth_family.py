"""Synthetic dataset family: output-scale knobs, members, roles, errors and the CLI."""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import pytest

from acn.cli.synth import add_arguments, run
from acn.data.canonical import load_canonical
from acn.data.synth import Knobs, summary, synthesize, write_synth
from acn.data.synth_family import FAMILY, Member, member, member_knobs, members
from acn.data.synth_features import make_world
from acn.errors import AcnError

ALL = [(p, m.index) for p, fam in FAMILY.items() for m in fam]
DEFAULTS = {"rgb_gain": 1.0, "flow_gain": 1.0, "rgb_offset": 0.0, "flow_offset": 0.0,
            "signed": 0.0}


def _small(knobs: Knobs | None = None, preset: str = "thumos14", **kw):
    return synthesize(preset, videos=kw.pop("videos", 6), dim=kw.pop("dim", 16),
                      seed=kw.pop("seed", 1), knobs=knobs, **kw)


def _same(a, b) -> bool:
    """Byte-identical features, video by video and stream by stream."""
    return list(a.features) == list(b.features) and all(
        x.tobytes() == y.tobytes()
        for vid in a.features for x, y in zip(a.features[vid], b.features[vid]))


@pytest.fixture(scope="module")
def base():
    return _small()


def test_new_knobs_at_their_defaults_change_nothing(base):
    assert _same(base, _small(Knobs()))
    assert _same(base, _small(Knobs(**DEFAULTS)))
    # member 0 of thumos14 is the preset's defaults; only the width differs, and we override it
    assert _same(base, _small(member=0))
    assert _small(member=0).member == member("thumos14", 0) and base.member is None


@pytest.mark.parametrize("preset,index", ALL)
def test_each_member_is_deterministic(preset, index):
    a = synthesize(preset, videos=6, dim=8, seed=2, member=index)
    b = synthesize(preset, videos=6, dim=8, seed=2, member=index)
    assert _same(a, b) and a.dim == 8 and a.member == member(preset, index)
    assert a.annotations.name == f"synth-{preset}"  # loaders see the preset, not the member
    for r, f in a.features.values():
        assert r.shape[1] == f.shape[1] == 8 and r.dtype == f.dtype == np.float32
        assert np.isfinite(r).all() and np.isfinite(f).all()


def test_member_width_is_the_default_dim():
    m = member("thumos14", 6)
    data = synthesize("thumos14", videos=4, seed=0, member=6)
    assert data.dim == m.dim == 256
    assert all(r.shape[1] == f.shape[1] == 256 for r, f in data.features.values())
    assert "member 6 (selection" in summary(data)


def test_members_0_and_1_differ(base):
    weak = _small(member=1)
    vid = sorted(base.features)[0]
    assert np.array_equal(weak.features[vid][0], base.features[vid][0])  # its knobs are Flow's
    assert not np.array_equal(weak.features[vid][1], base.features[vid][1])
    assert np.mean([f.mean() for _, f in weak.features.values()]) < 0.1


def test_gain_scales_one_stream_exactly():
    knobs = member_knobs(member("thumos14", 1))
    one = _small(replace(knobs, flow_gain=1.0, flow_offset=0.0))
    g = _small(replace(knobs, flow_offset=0.0))
    for vid, (r, f) in one.features.items():
        r2, f2 = g.features[vid]
        assert r2.tobytes() == r.tobytes()
        assert f2.tobytes() == (f * np.float32(knobs.flow_gain)).tobytes()
    big = _small(Knobs(rgb_gain=40.0))
    one = _small(Knobs())
    for vid, (r, f) in one.features.items():
        assert big.features[vid][0].tobytes() == (r * np.float32(40.0)).tobytes()
        assert big.features[vid][1].tobytes() == f.tobytes()


def test_offsets_shift_after_the_gain(base):
    off = _small(Knobs(rgb_offset=3.0, flow_offset=-1.5, flow_gain=2.0))
    for vid, (r, f) in base.features.items():
        r2, f2 = off.features[vid]
        assert r2.tobytes() == (r + np.float32(3.0)).tobytes()
        assert f2.tobytes() == (f * np.float32(2.0) + np.float32(-1.5)).tobytes()
        assert r2.min() >= 3.0 and f2.min() >= -1.5


def test_signed_features_skip_the_relu_and_the_bias(base):
    signed = _small(Knobs(signed=1))
    for vid, (r, f) in base.features.items():
        assert r.min() >= 0 and f.min() >= 0
    x = np.concatenate([np.concatenate(v) for v in signed.features.values()])
    assert (x < 0).mean() > 0.3 and abs(x.mean()) < 0.2 * x.std()  # roughly zero-mean
    # ReLU features are the signed ones plus the channel bias (times the channel scale), clipped
    ann = base.annotations
    world = make_world(ann.classes, 16, 1, Knobs())
    for vid, feats in base.features.items():
        for s, name in enumerate(("rgb", "flow")):
            w = world.streams[name]
            expect = np.maximum(signed.features[vid][s] + w.bias * w.scale, 0)
            np.testing.assert_allclose(feats[s], expect, atol=1e-5)


def test_half_of_each_family_is_held_out():
    assert {p: len(f) for p, f in FAMILY.items()} == {"thumos14": 8, "activitynet12": 4}
    for preset, fam in FAMILY.items():
        assert [m.index for m in fam] == list(range(len(fam)))
        assert all(m.preset == preset and m.note for m in fam)
        sel, held = members(preset, "selection"), members(preset, "heldout")
        assert len(sel) == len(held) == len(fam) // 2 and members(preset) == fam
        assert fam[0].knobs == {} and fam[0].role == "selection"
        for m in fam:
            member_knobs(m)  # every member's overrides are valid knobs
    assert [m.dim for m in FAMILY["thumos14"]] == [1024, 1024, 768, 512, 512, 2048, 256, 1024]
    assert [m.dim for m in FAMILY["activitynet12"]] == [512, 1024, 256, 768]
    assert member("thumos14", 2).knobs["signed"] == 1
    assert hash(member("thumos14", 1)) == hash(member("thumos14", 1))


@pytest.mark.parametrize("call,message", [
    (lambda: member("thumos14", 8), r"no family member 8; choose 0-7"),
    (lambda: member("thumos14", -1), r"choose 0-7"),
    (lambda: member("activitynet12", 4), r"'activitynet12' has no family member 4; choose 0-3"),
    (lambda: member("thumos14", True), r"no family member"),
    (lambda: member("long", 0), r"'long' has no family.*thumos14, activitynet12"),
    (lambda: members("thumos14", "test"), r"unknown family member role"),
    (lambda: synthesize("thumos14-sampled", videos=4, dim=8, member=0), r"has no family"),
    (lambda: synthesize("thumos15", videos=4, dim=8, member=0), r"unknown synthetic preset"),
    (lambda: synthesize("thumos14", videos=4, dim=8, member=1, knobs=Knobs()), r"not both"),
    (lambda: Member("thumos14", 0, 8, {}, "test", ""), r"role 'test'"),
])
def test_member_errors(call, message):
    with pytest.raises(AcnError, match=message):
        call()


@pytest.mark.parametrize("knob", [{"rgb_gain": 0.0}, {"flow_gain": -1.0}, {"signed": 0.5},
                                  {"signed": 2}, {"rgb_offset": float("inf")}])
def test_bad_output_knobs(knob):
    with pytest.raises(AcnError, match="synthetic knob"):
        Knobs(**knob)


def test_offsets_may_be_negative():
    assert Knobs(rgb_offset=-2.0, flow_offset=-0.5, bias=-0.8).rgb_offset == -2.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser


def test_cli_member(tmp_path, capsys):
    args = _parser().parse_args(["--out", str(tmp_path / "m"), "--member", "4", "--videos", "4",
                                 "--dim", "8", "--seed", "2"])
    assert run(args) == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and "thumos14 member 4 (selection" in line and "D=8" in line
    ds = load_canonical(tmp_path / "m")
    assert ds.feature_dim() == 8 and ds.annotations.name == "synth-thumos14"
    ref = synthesize("thumos14", videos=4, dim=8, seed=2, member=4)
    vid = sorted(ref.features)[0]
    r, f = ds.features(vid)
    assert np.array_equal(r, ref.features[vid][0]) and np.array_equal(f, ref.features[vid][1])
    # without --dim the width is the member's
    args = _parser().parse_args(["--out", str(tmp_path / "w"), "--member", "6", "--videos", "4"])
    assert run(args) == 0
    assert load_canonical(tmp_path / "w").feature_dim() == member("thumos14", 6).dim


def test_cli_list_members_needs_no_out(capsys):
    args = _parser().parse_args(["--list-members"])
    assert run(args) == 0
    lines = capsys.readouterr().out.strip().split("\n")
    assert len(lines) == 12
    for line, (preset, index) in zip(lines, ALL):
        m = member(preset, index)
        assert line.split()[:4] == [preset, str(index), m.role, f"D={m.dim}"]
        assert line.endswith(m.note)
    with pytest.raises(AcnError, match="--out"):
        run(_parser().parse_args(["--member", "1"]))


def test_write_synth_member_and_dim_default(tmp_path):
    data = write_synth(tmp_path / "a", "activitynet12", videos=4, dim=8, member=2)
    assert data.member == member("activitynet12", 2) and data.dim == 8
    assert min(r.min() for r, _ in data.features.values()) < 0  # member 2 is signed
    plain = synthesize("thumos14", videos=2, dim=None, seed=0)
    assert plain.dim == 1024 and plain.member is None
    assert all(r.shape[1] == 1024 for r, _ in plain.features.values())
