"""Loaders of every dataset layout and ground-truth format, on real annotations and tiny data."""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from acn.cli import convert as cli_convert
from acn.data.activitynet_json import load_activitynet_json
from acn.data.annotations import Annotations, Segment, Video
from acn.data.canonical import INDEX
from acn.data.open import convert_to_canonical, detect_format, load_ground_truth, open_dataset
from acn.data.thumos_txt import load_thumos_txt
from acn.data.wtalc import load_wtalc_annotations, open_wtalc, save_wtalc
from acn.errors import AcnError

# the `shared` folder beside the repository folder (tests/ -> repo -> its parent)
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TH14 = SHARED / "thumos14"
REDUCED = TH14 / "Thumos14reduced-Annotations"


def shared(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real annotation data not available ({path})")
    return path


def quiet(fn, *args, **kwargs):
    """Call a loader whose (tested elsewhere) warnings about the real data are expected."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def seg_counts(ann: Annotations) -> dict[str, int]:
    return {s: sum(len(v.segments) for v in ann.subset(s)) for s in ann.subsets}


# -- real annotations ------------------------------------------------------------------------------
def test_wtalc_thumos14_reduced_counts_and_known_defects():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ann = load_wtalc_annotations(shared(REDUCED), allow_pickle=True)
    assert len(ann) == 412 and len(ann.classes) == 20
    assert (ann.train_subset, ann.test_subset) == ("validation", "test")
    assert len(ann.subset("validation")) == 200 and len(ann.subset("test")) == 212
    raw = np.load(REDUCED / "segments.npy", allow_pickle=True)
    subset = np.load(REDUCED / "subset.npy")
    assert sum(len(s) for s, b in zip(raw, subset) if b == b"validation") == 3007
    assert sum(len(s) for s, b in zip(raw, subset) if b == b"test") == 3358
    # the 30 segments past their video's end all start after it: dropped, with ONE warning
    assert seg_counts(ann) == {"validation": 3007, "test": 3358}
    clip = [str(w.message) for w in caught if "segment(s)" in str(w.message)]
    assert len(clip) == 1 and "30 segment(s)" in clip[0] and "video_test_0000270" in clip[0]
    v270, v1496 = ann.videos["video_test_0000270"], ann.videos["video_test_0001496"]
    assert v270.labels == ("HammerThrow",)  # empty labels_all: labels from its segments
    # segments wholly past the end are kept (the official evaluation counts them)
    assert len(v270.segments) == 29
    assert sum(s.start >= v270.duration for s in v270.segments) == 22
    assert v1496.labels == ("CricketShot", "FrisbeeCatch")  # union of labels_all and segments
    assert "video_test_0001292" not in ann.videos
    assert (v270.fps, v270.frames_per_snippet) == (25.0, 16)
    assert isinstance(v270.duration, float) and v270.duration == pytest.approx(176.2453514)
    amb = [v for v in ann.subset("test") if v.ambiguous]
    assert sum(len(v.ambiguous) for v in amb) == 96 and len(amb) == 36  # 1292's 3 left out
    # CliffDiving instances are also Diving instances (THUMOS convention), kept as given
    cliff = [(v.id, s.start, s.end) for v in ann for s in v.segments if s.label == "CliffDiving"]
    diving = {(v.id, s.start, s.end) for v in ann for s in v.segments if s.label == "Diving"}
    assert cliff and set(cliff) <= diving


def test_wtalc_refuses_pickles_without_opt_in():
    with pytest.raises(AcnError) as e:
        load_wtalc_annotations(shared(REDUCED), allow_pickle=False)
    msg = str(e.value)
    for part in ("segments.npy", "pickle", "--allow-pickle", "allow_pickle=True", "acn convert"):
        assert part in msg


@pytest.mark.parametrize("folder, n, classes, splits", [
    (TH14 / "Thumos14-Annotations", 2584, 101, ("validation", "test")),
    (SHARED / "activitynet12" / "ActivityNet1.2-Annotations", 7202, 100,
     ("training", "validation")),
])
def test_wtalc_other_real_folders(folder, n, classes, splits):
    ann = quiet(load_wtalc_annotations, shared(folder), True)
    assert (len(ann), len(ann.classes), (ann.train_subset, ann.test_subset)) == (n, classes, splits)
    if "ActivityNet" in folder.name:
        assert len(ann.subset("training")) == 4819 and len(ann.subset("validation")) == 2383


def test_activitynet12_json():
    ann = quiet(load_activitynet_json,
                shared(SHARED / "activitynet12/cmcs/activity_net.v1-2.min-missing-removed.json"))
    assert len(ann.classes) == 100 and ann.classes == sorted(ann.classes)
    assert (ann.train_subset, ann.test_subset) == ("training", "validation")
    assert {s: len(ann.subset(s)) for s in ann.subsets} == \
        {"training": 4441, "validation": 2198, "testing": 2268}
    assert seg_counts(ann)["testing"] == 0


def test_thumos14_json_variants():
    off = shared(TH14 / "official")
    bas = quiet(load_ground_truth, off / "basnet-gt")  # times as strings, no durations
    assert len(bas) == 410 and (bas.train_subset, bas.test_subset) == ("train", "test")
    v = bas.videos["video_test_0000896"]
    assert v.segments[0] == Segment(18.6, 24.8, "HighJump")
    assert v.duration == max(s.end for s in v.segments)
    with pytest.warns(UserWarning, match="410 video.*no duration"):
        load_activitynet_json(off / "basnet-gt" / "gt.json")
    acm = quiet(load_ground_truth, off / "acmnet-gt" / "gt.json")
    assert len(acm) == 412 and len(acm.classes) == 20
    af = quiet(load_ground_truth, off / "actionformer" / "thumos14.json")
    assert set(af.subsets) == {"validation", "test"}  # "Test"/"Validation" lower-cased
    assert len(af.subset("test")) == 212
    assert sorted({v.fps for v in af}) == pytest.approx([24.0, 25.0, 29.97, 30.0], abs=0.01)


def test_thumos14_txt_matches_wtalc():
    txt = quiet(load_thumos_txt, shared(TH14 / "official"))
    wt = quiet(load_wtalc_annotations, REDUCED, True)
    assert txt.classes == wt.classes and set(txt.videos) == set(wt.videos)
    assert seg_counts(txt) == {"validation": 3007, "test": 3358}
    for vid, v in txt.videos.items():  # durations from the .mat metadata; same segments
        w = wt.videos[vid]
        assert (v.subset, v.duration) == (w.subset, w.duration)
        assert sorted(v.segments, key=str) == sorted(w.segments, key=str)
        assert set(v.labels) <= set(w.labels)
    val = quiet(load_ground_truth, TH14 / "official" / "annotations_val")
    assert val.subsets == ["validation"] and len(val) == 200


def test_thumos_txt_without_metadata_guesses_durations(tmp_path):
    d = tmp_path / "annotations_val"
    d.mkdir()
    (d / "Diving_val.txt").write_text("v1  1.0 2.5\nv1 4.0 9.0\nv2 0.0 1.0\n")
    (d / "Shotput_val.txt").write_text("v2 2.0 3.0\n")
    (d / "Ambiguous_val.txt").write_text("v1 3.0 3.5\nv9 1 2\n")
    with pytest.warns(UserWarning, match="no metadata duration for 2 video"):
        ann = load_thumos_txt(d)
    assert ann.classes == ["Diving", "Shotput"] and ann.subsets == ["validation"]
    assert ann.videos["v1"].duration == 9.0 and ann.videos["v1"].ambiguous == [(3.0, 3.5)]
    assert ann.videos["v2"].labels == ("Diving", "Shotput") and "v9" not in ann.videos


# -- tiny synthetic datasets -----------------------------------------------------------------------
D = 4


@pytest.fixture
def tiny() -> tuple[Annotations, dict[str, tuple[np.ndarray, np.ndarray]]]:
    rng = np.random.default_rng(0)
    videos = {
        "va": Video("va", "validation", 10.0, ("Jump",), [Segment(1.0, 2.5, "Jump")]),
        "vb": Video("vb", "validation", 6.4, ("Jump", "Run"),
                    [Segment(0.0, 1.0, "Run"), Segment(2.0, 3.0, "Jump")]),
        "vc": Video("vc", "test", 8.0, ("Run",), [Segment(4.0, 7.9, "Run")],
                    ambiguous=[(1.0, 1.5)]),
        "vd": Video("vd", "test", 3.2, ("Jump",), [Segment(0.5, 1.0, "Jump"),
                                                   Segment(1.5, 2.0, "Jump")]),
    }
    ann = Annotations(["Jump", "Run"], videos, name="Tiny")
    feats = {k: (rng.standard_normal((t, D)).astype(np.float32),
                 rng.standard_normal((t, D)).astype(np.float32))
             for k, t in zip(videos, (15, 10, 12, 5))}
    return ann, feats


def assert_same_features(ds, feats):
    for vid, (rgb, flow) in feats.items():
        r, f = ds.features(vid)
        np.testing.assert_array_equal(r, rgb)
        np.testing.assert_array_equal(f, flow)


def test_wtalc_round_trip_and_lazy_features(tmp_path, tiny):
    ann, feats = tiny
    save_wtalc(tmp_path, "Tiny", ann, feats)
    assert (tmp_path / "Tiny-I3D-JOINTFeatures.npy").is_file()
    assert (tmp_path / "Tiny-Annotations" / "Ambiguous_test.txt").is_file()
    back = load_wtalc_annotations(tmp_path / "Tiny-Annotations", allow_pickle=True)
    assert back.videos == ann.videos and back.classes == ann.classes and back.name == "Tiny"
    assert detect_format(tmp_path) == "wtalc"
    ds = open_dataset(tmp_path, allow_pickle=True)
    assert ds.store._data is None  # the joint file is not read at open time
    assert_same_features(ds, feats)
    assert ds.store._data is not None and ds.feature_dim() == D


def test_wtalc_non_default_grid_round_trips(tmp_path, tiny):
    ann, feats = tiny
    ann.videos["va"].fps, ann.videos["va"].frames_per_snippet = 30.0, 8
    save_wtalc(tmp_path, "Tiny", ann, None)
    back = load_wtalc_annotations(tmp_path / "Tiny-Annotations", allow_pickle=True)
    assert (back.videos["va"].fps, back.videos["va"].frames_per_snippet) == (30.0, 8)
    assert back.videos["vb"].fps == 25.0
    ds = open_wtalc(tmp_path / "Tiny-Annotations", allow_pickle=True)
    with pytest.raises(AcnError, match="Tiny-I3D-JOINTFeatures.npy.*video 'vb'"):
        ds.features("vb")  # no feature file: reported on access, naming the expected path


def test_wtalc_feature_pickle_needs_opt_in_on_access(tmp_path, tiny):
    ann, feats = tiny
    save_wtalc(tmp_path, "Tiny", ann, feats)
    ann_dir = tmp_path / "Tiny-Annotations"
    ds = open_wtalc(tmp_path, allow_pickle=True)
    ds.store.allow_pickle = False
    with pytest.raises(AcnError, match="JOINTFeatures.npy: is a pickle"):
        ds.features("va")
    joint = np.load(tmp_path / "Tiny-I3D-JOINTFeatures.npy", allow_pickle=True)
    np.save(tmp_path / "Tiny-I3D-JOINTFeatures.npy", joint[:3], allow_pickle=True)
    with pytest.raises(AcnError, match="features of 3 videos but the annotations list 4"):
        open_wtalc(ann_dir, allow_pickle=True).features("va")


def test_wtalc_clipping_is_one_warning(tmp_path, tiny):
    ann, _ = tiny
    v = ann.videos["vd"]
    v.segments = [Segment(0.5, 4.0, "Jump"), Segment(1.0, 5.0, "Jump"), Segment(9.0, 9.5, "Jump")]
    save_wtalc(tmp_path, "Tiny", ann, None)
    with pytest.warns(UserWarning) as rec:
        back = load_wtalc_annotations(tmp_path / "Tiny-Annotations", allow_pickle=True)
    assert len(rec) == 1
    assert "2 segment(s) ending after" in str(rec[0].message) and "1 segment(s) starting" in \
        str(rec[0].message)
    assert [(s.start, s.end) for s in back.videos["vd"].segments] == [(0.5, 3.2), (1.0, 3.2), (9.0, 9.5)]


def test_wtalc_errors(tmp_path, tiny):
    ann, _ = tiny
    save_wtalc(tmp_path, "Tiny", ann, None)
    folder = tmp_path / "Tiny-Annotations"
    np.save(folder / "videoname.npy", np.array([b"va", b"vb", b"va", b"vd"]))
    with pytest.raises(AcnError, match=r"videoname.npy: duplicate video ids \['va'\]"):
        load_wtalc_annotations(folder, True)
    np.save(folder / "videoname.npy", np.array([b"va", b"vb", b"vc", b"vd"]))
    np.save(folder / "classlist.npy", np.array([b"Jump"]))
    with pytest.raises(AcnError, match="unknown class name 'Run'.*video vb"):
        load_wtalc_annotations(folder, True)
    (folder / "segments.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(AcnError, match="segments.npy"):
        load_wtalc_annotations(folder, True)
    (folder / "segments.npy").write_bytes(b"not an array at all")
    with pytest.raises(AcnError, match="segments.npy: not a .npy file"):
        load_wtalc_annotations(folder, False)
    (folder / "labels_all.npy").unlink()
    with pytest.raises(AcnError, match="missing labels_all.npy"):
        load_wtalc_annotations(folder, True)
    with pytest.raises(AcnError, match="annotation folder not found"):
        load_wtalc_annotations(tmp_path / "nope", True)


@pytest.mark.parametrize("layout", ["joint", "rgbflow", "video_features"])
def test_per_video_layouts(tmp_path, tiny, layout):
    ann, feats = tiny
    root = tmp_path / "feats"
    for vid, (rgb, flow) in feats.items():
        sub = root / ("train" if ann.videos[vid].subset == "validation" else "test")
        if layout == "joint":
            sub.mkdir(parents=True, exist_ok=True)
            np.save(sub / f"{vid}.npy", np.concatenate([rgb, flow], axis=1))
        elif layout == "rgbflow":  # BaS-Net: features/{train,test}/{rgb,flow}/{video}.npy
            for stream, a in (("rgb", rgb), ("flow", flow)):
                (sub / stream).mkdir(parents=True, exist_ok=True)
                np.save(sub / stream / f"{vid}.npy", a)
        else:
            root.mkdir(exist_ok=True)
            np.save(root / f"{vid}_rgb.npy", rgb)
            np.save(root / f"{vid}_flow.npy", flow)
    assert detect_format(root) == layout
    with pytest.raises(AcnError, match="without annotations; pass them with --annotations"):
        open_dataset(root)
    ds = open_dataset(root, annotations=ann)
    assert_same_features(ds, feats)
    assert isinstance(ds.store.load("va")[0], np.memmap)  # memory-mapped, not read into RAM
    # ground truth from a sidecar gt.json (BaS-Net keeps it above the feature folder)
    gt = {"database": {v.id: {"subset": v.subset, "duration": v.duration,
                              "annotations": [{"segment": [s.start, s.end], "label": s.label}
                                              for s in v.segments]} for v in ann}}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    ds2 = open_dataset(root, format=layout)
    assert ds2.annotations.videos.keys() == ann.videos.keys() and ds2.classes == ["Jump", "Run"]
    # a listed video without files fails on access, naming the expected path
    ann.videos["ghost"] = Video("ghost", "test", 5.0, ("Run",))
    with pytest.raises(AcnError, match="ghost.*feature file missing for listed video 'ghost'"):
        open_dataset(root, annotations=ann).features("ghost")


def test_corrupt_feature_npy(tmp_path, tiny):
    ann, feats = tiny
    for vid, (rgb, flow) in feats.items():
        np.save(tmp_path / f"{vid}.npy", np.concatenate([rgb, flow], axis=1))
    (tmp_path / "vb.npy").write_bytes((tmp_path / "vb.npy").read_bytes()[:100])
    ds = open_dataset(tmp_path, format="joint", annotations=ann)
    with pytest.raises(AcnError, match="vb.npy"):
        ds.features("vb")


def test_canonical_conversion_and_cli(tmp_path, tiny, capsys):
    ann, feats = tiny
    save_wtalc(tmp_path / "w", "Tiny", ann, feats)
    with pytest.raises(AcnError, match="pickle"):
        convert_to_canonical(open_dataset(tmp_path / "w"), tmp_path / "c")
    out = convert_to_canonical(open_dataset(tmp_path / "w", allow_pickle=True), tmp_path / "c")
    assert detect_format(out) == "canonical" and detect_format(out / INDEX) == "canonical"
    ds = open_dataset(out)
    assert ds.annotations.videos == ann.videos and ds.annotations.test_subset == "test"
    assert_same_features(ds, feats)
    np.load(out / "features" / "va_rgb.npy", allow_pickle=False)  # no pickles left
    assert json.loads((out / INDEX).read_text())["database"]["vd"]["num_snippets"] == 5
    assert load_ground_truth(out).videos == ann.videos
    # the CLI
    parser = argparse.ArgumentParser()
    cli_convert.add_arguments(parser)
    args = parser.parse_args(["--data", str(tmp_path / "w"), "--out", str(tmp_path / "c2"),
                              "--allow-pickle", "--fps", "30", "--test-subset", "validation"])
    assert cli_convert.run(args) == 0 and "4 videos" in capsys.readouterr().out
    back = load_ground_truth(tmp_path / "c2" / INDEX)
    assert back.test_subset == "validation" and {v.fps for v in back} == {30.0}
    with pytest.raises(AcnError, match="no video in subset 'nope'"):
        open_dataset(out, train_subset="nope")
    with pytest.raises(AcnError, match="dataset's own folder"):
        convert_to_canonical(ds, out)


def test_open_errors(tmp_path):
    with pytest.raises(AcnError, match="dataset not found"):
        open_dataset(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(AcnError, match="no dataset layout recognised.*index.json.*W-TALC.*rgb/"):
        open_dataset(tmp_path)
    with pytest.raises(AcnError, match="unknown dataset format 'hdf5'"):
        open_dataset(tmp_path, format="hdf5")
    gt = Annotations(["A"], {"v": Video("v", "test", 3.0, ("A",))})
    with pytest.raises(AcnError, match=r"no rgbflow feature files here \(expected .*rgb/<video>"):
        open_dataset(tmp_path, format="rgbflow", annotations=gt)
    with pytest.raises(AcnError, match="ground truth not found"):
        load_ground_truth(tmp_path / "gt.json")
    with pytest.raises(AcnError, match="no ground truth recognised"):
        load_ground_truth(tmp_path)


def _gt(tmp_path: Path, obj) -> Path:
    p = tmp_path / "gt.json"
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return p


@pytest.mark.parametrize("obj, match", [
    ({"videos": {}}, "not an ActivityNet-style ground truth"),
    ([1, 2], "not an ActivityNet-style ground truth"),
    ({"database": {"v": [1]}}, "video v: entry is a list"),
    ({"database": {"v": {"duration": 5}}}, "video v: has no 'subset'"),
    ({"database": {"v": {"subset": "test", "duration": 5, "annotations": {}}}}, "not a list"),
    ({"database": {"v": {"subset": "test", "duration": 5,
                         "annotations": [{"segment": [1, 2, 3], "label": "A"}]}}}, "not \\[start"),
    ({"database": {"v": {"subset": "test", "duration": 5,
                         "annotations": [{"segment": [1, 2]}]}}}, "needs 'segment' and 'label'"),
    ({"database": {"v": {"subset": "test", "duration": 5,
                         "annotations": [{"segment": [3, 2], "label": "A"}]}}},
     "video v: segment end 2.0 is before its start 3.0"),
    ({"database": {"v": {"subset": "test",
                         "annotations": [{"segment": [-1, 2], "label": "A"}]}}}, "negative time"),
    ({"database": {"v": {"subset": "test", "duration": "long",
                         "annotations": []}}}, "duration 'long' is not a number"),
    ({"database": {"v": {"subset": "test", "duration": 0}}}, "duration 0.0 is not positive"),
    ({"classes": ["A"], "database": {"v": {"subset": "test", "duration": 5,
                                           "annotations": [{"segment": [1, 2], "label": "B"}]}}},
     "unknown class name 'B'"),
    ({"database": {}}, "lists no video"),
    ('{"database": {"v": {"subset": "test", "duration": 5}, "v": {"subset": "test", '
     '"duration": 6}}}', "key 'v' appears twice"),
    ('{"database": ', "not valid JSON"),
])
def test_json_errors(tmp_path, obj, match):
    with pytest.raises(AcnError, match=match) as e:
        load_ground_truth(_gt(tmp_path, obj))
    assert "gt.json" in str(e.value)


def test_txt_errors(tmp_path):
    d = tmp_path / "annotations_test"
    d.mkdir()
    (d / "Diving_test.txt").write_text("v1 3.0 2.0\n")
    with pytest.raises(AcnError, match="Diving_test.txt:1: segment end 2.0 is before its start"):
        load_thumos_txt(d, meta=[])
    (d / "Diving_test.txt").write_text("v1 -1.0 2.0\n")
    with pytest.raises(AcnError, match="Diving_test.txt:1: negative time"):
        load_thumos_txt(d, meta=[])
    (d / "Diving_test.txt").write_text("v1 1.0 2.0\nv1 1.0 two\n")
    with pytest.raises(AcnError, match="Diving_test.txt:2: expected `video start end`"):
        load_thumos_txt(d, meta=[])
    (d / "Diving_test.txt").write_text("v1 1.0 2.0\n")
    (d / "Diving_val.txt").write_text("v1 1.0 2.0\n")
    with pytest.raises(AcnError, match="video v1 is also listed in subset 'test'"):
        load_thumos_txt(d, meta=[])
    (d / "Diving_val.txt").unlink()
    (d / "bad_meta.mat").write_bytes(b"MATLAB 5.0 nonsense")
    with pytest.raises(AcnError, match="bad_meta.mat: cannot read MATLAB metadata"):
        load_thumos_txt(d)


def test_wtalc_plain_numeric_features_need_no_pickle(tmp_path, tiny):
    ann, feats = tiny
    save_wtalc(tmp_path, "Tiny", ann, None)
    # some forks store equal-length videos as one (N, T, 2D) float array: memory-mapped, no pickle
    joint = np.stack([np.concatenate(feats[v], axis=1)[:5] for v in sorted(feats)])
    np.save(tmp_path / "Tiny-I3D-JOINTFeatures.npy", joint)
    ds = open_wtalc(tmp_path, allow_pickle=True)
    ds.store.allow_pickle = False
    rgb, flow = ds.features("vc")
    np.testing.assert_array_equal(rgb, feats["vc"][0][:5])
    np.testing.assert_array_equal(flow, feats["vc"][1][:5])
    assert isinstance(ds.store._data, np.memmap)


@pytest.mark.parametrize("copy", [True, False])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_check_streams_finds_every_non_finite_value(tmp_path, copy, bad):
    from acn.data.features import check_streams, load_npy

    rgb = np.random.default_rng(0).random((30, 8), dtype=np.float32)
    flow = rgb.copy()
    flow[17, 6] = bad
    np.save(tmp_path / "rgb.npy", rgb)
    np.save(tmp_path / "flow.npy", flow)
    with pytest.raises(AcnError, match="Flow features contain NaN or Inf "
                                       r"\(first at snippet 17, column 6\)"):
        check_streams(load_npy(tmp_path / "rgb.npy"), load_npy(tmp_path / "flow.npy"), "v",
                      copy=copy)


def test_check_streams_copy_false_keeps_float32_memory_maps(tmp_path):
    from acn.data.features import check_streams, load_npy

    a = np.random.default_rng(1).random((12, 4), dtype=np.float32)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", a.astype(np.float64))
    mm, mm64 = load_npy(tmp_path / "a.npy"), load_npy(tmp_path / "b.npy")
    rgb, flow = check_streams(mm, mm64, "v", copy=False)
    assert np.shares_memory(rgb, mm) and not rgb.flags.writeable  # not read into RAM
    assert flow.dtype == np.float32 and not np.shares_memory(flow, mm64)  # converted
    r2, f2 = check_streams(mm, mm64, "v")  # default: writable copies in RAM
    assert r2.flags.writeable and not np.shares_memory(r2, mm)
    np.testing.assert_array_equal(rgb, r2)
    np.testing.assert_array_equal(flow, f2)


def test_validated_videos_are_not_scanned_twice(monkeypatch):
    # validate() scans every value once; features() of a video validated at the same width
    # skips the scan (localize reads each video again right after validating it), any other
    # read scans
    import acn.data.features as F
    from conftest import tiny_dataset

    ann, feats = tiny_dataset(n_train=2, n_test=1)
    ds = F.Dataset(ann, F.MemoryStore(feats))
    vid = sorted(ds.annotations.videos)[0]
    dim = ds.features(vid)[0].shape[1]
    scans = []
    real = F.check_streams
    monkeypatch.setattr(F, "check_streams", lambda *a, **k: scans.append(k["scan"]) or real(*a, **k))
    ds.features(vid, dim)
    ds.validate([vid], dim)
    ds.features(vid, dim)
    ds.features(vid, None)
    assert scans == [True, True, False, True]
    rgb, flow = ds.store.features[vid]
    bad = flow.copy()
    bad[0, 0] = np.nan
    ds.store.features["other"] = (rgb, bad)
    with pytest.raises(AcnError, match="NaN or Inf"):
        ds.features("other", dim)  # never validated: scanned
