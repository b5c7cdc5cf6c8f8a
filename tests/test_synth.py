"""Synthetic two-stream features: determinism, shapes, real timelines, difficulty, writers."""

from __future__ import annotations

import argparse
import warnings
from dataclasses import fields

import numpy as np
import pytest

import acn.data.synth as synth_mod
from acn.cli.synth import add_arguments, run
from acn.data.canonical import load_canonical
from acn.data.synth import (Knobs, knob_defaults, synth_annotations, synthesize, to_dataset,
                            write_synth)
from acn.data.synth_features import THUMOS14_RGB_WEAK
from acn.data.synth_timelines import num_snippets, thumos14_folder
from acn.data.wtalc import load_wtalc_annotations, open_wtalc
from acn.errors import AcnError


@pytest.fixture(scope="module")
def small():
    return synthesize("thumos14", videos=8, dim=32, seed=3)


@pytest.fixture(scope="module")
def medium():
    # enough snippets inside and outside actions for stable statistics
    return synthesize("thumos14", videos=40, dim=64, seed=0)


def test_deterministic_and_seed_dependent(small):
    again = synthesize("thumos14", videos=8, dim=32, seed=3)
    assert list(again.features) == list(small.features)
    for vid, (r, f) in small.features.items():
        r2, f2 = again.features[vid]
        assert r.tobytes() == r2.tobytes() and f.tobytes() == f2.tobytes()
    other = synthesize("thumos14", videos=8, dim=32, seed=4)
    common = set(other.features) & set(small.features)
    diff = [vid for vid in common
            if not np.array_equal(other.features[vid][0], small.features[vid][0])]
    assert len(diff) == len(common)


def test_a_video_does_not_depend_on_the_others(small):
    more = synthesize("thumos14", videos=16, dim=32, seed=3)
    assert set(small.features) < set(more.features)  # the subsample grows, keeping its videos
    for vid, (r, f) in small.features.items():
        assert np.array_equal(more.features[vid][0], r) and np.array_equal(more.features[vid][1], f)


def test_shapes_dtypes_nonnegative(small):
    ann = small.annotations
    assert {v.subset for v in ann} == {"validation", "test"}
    for v in ann:
        r, f = small.features[v.id]
        T = max(1, round(v.duration * 25 / 16))
        assert r.shape == f.shape == (T, 32)
        assert r.dtype == f.dtype == np.float32
        assert np.isfinite(r).all() and np.isfinite(f).all()
        assert r.min() >= 0 and f.min() >= 0


def test_magnitudes_like_pooled_cnn_features(medium):
    for s in (0, 1):
        x = np.concatenate([feat[s] for feat in medium.features.values()])
        assert 0.25 < x.mean() < 0.7
        assert 0.3 < (x < 0.05).mean() < 0.75  # sparse-ish: many values near 0
        assert np.percentile(x, 99) < 10


def test_snippets_are_correlated_in_time(medium):
    r, f = medium.features[sorted(medium.features)[0]]
    for x in (r, f):
        x = x - x.mean(0)
        norm = np.linalg.norm(x, axis=1)
        cos = (x[1:] * x[:-1]).sum(1) / (norm[1:] * norm[:-1])
        rnd = np.random.default_rng(0).permutation(len(x))
        cos_rnd = (x * x[rnd]).sum(1) / (norm * norm[rnd])
        assert np.median(cos) > np.median(cos_rnd) + 0.1


def _inside(v, T: int) -> np.ndarray:
    centre = (np.arange(T) + 0.5) * v.frames_per_snippet / v.fps
    mask = np.zeros(T, bool)
    for s in v.segments:
        mask |= (centre >= s.start) & (centre < s.end)
    return mask


def test_actions_detectable_but_not_trivially(medium):
    """The mean feature inside actions differs from background by a bounded margin (relative
    to the spread of background snippets); for the RGB-weak classes Flow shows it more."""
    weak_classes = set(THUMOS14_RGB_WEAK[:6])
    margin: dict[tuple[str, bool], list[float]] = {}
    for s, name in ((0, "rgb"), (1, "flow")):
        for v in medium.annotations:
            x = medium.features[v.id][s]
            m = _inside(v, len(x))
            if m.sum() < 3 or (~m).sum() < 3:
                continue
            d = np.linalg.norm(x[m].mean(0) - x[~m].mean(0))
            spread = np.sqrt(((x[~m] - x[~m].mean(0)) ** 2).sum(1).mean())
            margin.setdefault((name, set(v.labels) <= weak_classes), []).append(d / spread)
    med = {k: float(np.median(v)) for k, v in margin.items()}
    assert len(margin[("rgb", True)]) >= 5, med
    for value in med.values():
        assert 0.2 < value < 1.5, med  # visible, far from separable
    assert med[("rgb", True)] < med[("flow", True)], med
    assert med[("rgb", True)] < med[("rgb", False)], med


def test_timelines_are_the_real_thumos14_ones():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        real = load_wtalc_annotations(thumos14_folder(), allow_pickle=True)
    ann = synth_annotations("thumos14")
    assert ann.classes == real.classes and len(ann) == 412
    assert len(ann.subset("validation")) == 200 and len(ann.subset("test")) == 212
    assert (ann.train_subset, ann.test_subset) == ("validation", "test")
    for vid, v in real.videos.items():
        s = ann.videos[vid]
        assert (s.subset, s.duration, s.labels, s.segments, s.ambiguous) == \
            (v.subset, v.duration, v.labels, v.segments, v.ambiguous)
    # 99 ambiguous segments, 3 of them on video_test_0001292, which has no annotation
    lines = (thumos14_folder() / "Ambiguous_test.txt").read_text().split("\n")
    listed = [ln for ln in lines if ln.split() and ln.split()[0] in ann.videos]
    assert len(lines) >= 99 and sum(len(v.ambiguous) for v in ann) == len(listed) == 96


def test_subsample_keeps_both_subsets_and_real_videos(small):
    ann = small.annotations
    assert len(ann) == 8
    assert len(ann.subset("validation")) == 4 and len(ann.subset("test")) == 4
    full = synth_annotations("thumos14")
    for v in ann:
        assert full.videos[v.id].segments == v.segments


@pytest.mark.parametrize("preset,subsets,classes", [
    ("thumos14-sampled", ("validation", "test"), 20),
    ("activitynet12", ("training", "validation"), 100),
])
def test_sampled_timelines_are_valid(preset, subsets, classes):
    ann = synth_annotations(preset, videos=300, seed=1)
    assert len(ann) == 300 and len(ann.classes) == classes
    assert (ann.train_subset, ann.test_subset) == subsets
    for v in ann:
        seg = np.array([[s.start, s.end] for s in v.segments])
        assert len(seg) >= 1 and (seg[:, 1] > seg[:, 0]).all()
        assert seg.min() >= 0 and seg.max() <= v.duration
        assert (seg[1:, 0] >= seg[:-1, 1]).all()  # sorted, no overlap
        assert set(v.labels) == {s.label for s in v.segments}


def _stats(ann):
    dur = np.array([v.duration for v in ann])
    nseg = np.array([len(v.segments) for v in ann])
    cover = np.array([sum(s.end - s.start for s in v.segments) / v.duration for v in ann])
    length = np.array([s.end - s.start for v in ann for s in v.segments])
    return np.median(dur), np.median(nseg), np.mean(nseg), np.median(cover), np.median(length)


def test_sampled_statistics_follow_the_real_datasets():
    # real THUMOS14: median video 150-162 s, 8-9 segments (mean 15), 25% inside actions, 3 s
    dur, nseg, mean_seg, cover, length = _stats(synth_annotations("thumos14-sampled", seed=0))
    assert 110 < dur < 200 and 5 <= nseg <= 12 and 0.15 < cover < 0.35 and 2 < length < 4.5
    # real ActivityNet v1.2: median video 111 s, 1.5 segments, 70% inside actions, 29 s
    dur, nseg, mean_seg, cover, length = _stats(synth_annotations("activitynet12", videos=600))
    assert 90 < dur < 140 and 1.2 < mean_seg < 1.9 and 0.55 < cover < 0.85 and 20 < length < 50


def test_sampled_presets_make_any_number_of_videos():
    ann = synth_annotations("long", videos=11)
    assert len(ann.subset("validation")) + len(ann.subset("test")) == 11


def test_long_preset_timelines():
    ann = synth_annotations("long", seed=0)
    assert len(ann.subset("validation")) == 4 and len(ann.subset("test")) == 4
    assert min(v.duration for v in ann) >= 3000
    assert min(num_snippets(v.duration) for v in ann) > 4500
    data = synthesize("long", videos=2, dim=8)
    for v in data.annotations:
        assert data.features[v.id][0].shape == (num_snippets(v.duration), 8)


def test_sampled_preset_features(small):
    data = synthesize("activitynet12", videos=4, dim=16, seed=0)
    assert len(data.features) == 4
    for v in data.annotations:
        assert data.features[v.id][1].shape == (num_snippets(v.duration), 16)


def test_to_dataset(small):
    ds = to_dataset(small)
    vid = sorted(small.features)[0]
    r, f = ds.features(vid, expected_dim=32)
    assert np.array_equal(r, small.features[vid][0]) and ds.feature_dim() == 32


def test_write_canonical_and_read_back(tmp_path, small):
    data = write_synth(tmp_path / "c", "thumos14", videos=8, dim=32, seed=3)
    ds = load_canonical(tmp_path / "c")
    assert ds.annotations.classes == small.annotations.classes
    assert set(ds.annotations.videos) == set(small.features)
    for vid, (r, f) in small.features.items():
        r2, f2 = ds.features(vid)
        assert np.array_equal(r2, r) and np.array_equal(f2, f)
        assert ds.video(vid).segments == small.annotations.videos[vid].segments
        assert ds.video(vid).ambiguous == small.annotations.videos[vid].ambiguous
    assert data.annotations.name == "synth-thumos14"


def test_write_wtalc_and_read_back(tmp_path, small):
    write_synth(tmp_path / "w", "thumos14", videos=8, dim=32, seed=3, format="wtalc")
    assert (tmp_path / "w" / "Thumos14reduced-I3D-JOINTFeatures.npy").is_file()
    ds = open_wtalc(tmp_path / "w", allow_pickle=True)
    assert set(ds.annotations.videos) == set(small.features)
    for vid, (r, f) in small.features.items():
        r2, f2 = ds.features(vid)
        assert np.array_equal(r2, r) and np.array_equal(f2, f)
        assert ds.video(vid).segments == small.annotations.videos[vid].segments


@pytest.mark.parametrize("kwargs,message", [
    ({"preset": "thumos15"}, "unknown synthetic preset"),
    ({"videos": 1}, "too few"),
    ({"videos": 413}, "more than the 412 videos"),
    ({"dim": 0}, "positive integer"),
    ({"seed": -1}, "non-negative"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(AcnError, match=message):
        synthesize(**{"videos": 4, "dim": 8, **kwargs})


@pytest.mark.parametrize("knob", [{"context_prob": 1.5}, {"ramp_frac": 0.0}, {"latent_dim": 0},
                                  {"flow_cut": -1.0}, {"latent_noise": float("nan")}])
def test_bad_knobs(knob):
    with pytest.raises(AcnError, match="synthetic knob"):
        Knobs(**knob)


def test_knobs_change_the_data(small):
    easy = synthesize("thumos14", videos=8, dim=32, seed=3, knobs=Knobs(flow_cut=0.0))
    vid = sorted(small.features)[0]
    assert np.array_equal(easy.features[vid][0], small.features[vid][0])  # RGB has no cut spike
    assert not np.array_equal(easy.features[vid][1], small.features[vid][1])


def test_bad_format(tmp_path):
    with pytest.raises(AcnError, match="unknown output format"):
        write_synth(tmp_path, videos=4, dim=8, format="hdf5")


def test_every_knob_documented_with_its_default():
    doc = synth_mod.__doc__
    for name, default in knob_defaults().items():
        assert f"``{name}={default!r}``" in doc, name
    assert [f.name for f in fields(Knobs)] == list(knob_defaults())


def test_cli(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--out", str(tmp_path / "o"), "--videos", "4", "--dim", "8",
                              "--seed", "2"])
    assert args.preset == "thumos14" and args.format == "canonical"
    assert run(args) == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and "validation 2, test 2" in line and "20 classes" in line
    assert load_canonical(tmp_path / "o").feature_dim() == 8
    with pytest.raises(SystemExit):
        parser.parse_args(["--out", "x", "--preset", "nope"])


@pytest.mark.slow
def test_full_default_preset_statistics():
    data = synthesize(seed=0)
    assert len(data.features) == 412
    x = np.concatenate([f for _, f in data.features.values()][:100])
    assert 0.3 < x.mean() < 0.6
