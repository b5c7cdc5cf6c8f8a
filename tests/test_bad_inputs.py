"""Every input acn reads, broken on purpose: one clear line on stderr, exit 2, no partial output.

Each test drives the real CLI (``acn.cli.main``) in-process on small folders built in tmp_path.
The table of these cases, with the messages, is docs/errors.md.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from acn.cli import main
from acn.data.canonical import save_canonical
from acn.data.wtalc import save_wtalc
from acn.evaluate import save_results
from acn.errors import AcnError

from conftest import FAST_SET, tiny_dataset

QUICK = FAST_SET + ["base.epochs=2", "train.epochs=1"]
SETS = sum((["--set", s] for s in QUICK), [])


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # A shared 2-core machine: torch's default threads fight each other and make training 4x
    # slower. One thread is plenty for these tiny models.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---------------------------------------------------------------------------------- helpers
def fail(capsys, argv: list[str], *needles: str, code: int = 2) -> str:
    """Run the CLI, expect exit ``code`` and exactly one ``acn: error:`` line holding needles."""
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == code, err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln and not ln.startswith("acn: warning:")]
    assert len(lines) == 1 and lines[0].startswith("acn: error: "), err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def ok(capsys, argv: list[str]) -> str:
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "Traceback" not in err and "acn: error" not in err, err
    return err


def make_data(root: Path, n_train: int = 4, n_test: int = 2, dim: int = 16, seed: int = 0,
              classes=("Jump", "Run", "Throw")) -> tuple[Path, object, dict]:
    ann, feats = tiny_dataset(n_train=n_train, n_test=n_test, dim=dim, seed=seed, classes=classes)
    save_canonical(root, ann, feats)
    return root, ann, feats


def feature_file(root: Path, vid: str, stream: str = "rgb") -> Path:
    return root / "features" / f"{vid}_{stream}.npy"


def first_test_video(ann) -> str:
    return sorted(v.id for v in ann.videos.values() if v.subset == "test")[0]


def write_index(root: Path, mutate) -> Path:
    """Edit a canonical index.json through ``mutate(obj)``."""
    p = root / "index.json"
    obj = json.loads(p.read_text())
    mutate(obj)
    p.write_text(json.dumps(obj))
    return p


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run (D = 16, classes Jump/Run/Throw) trained through the CLI, reused by all."""
    base = tmp_path_factory.mktemp("bad_inputs")
    data, ann, feats = make_data(base / "data", n_train=10, n_test=4)
    run = base / "run"
    assert main(["train", "--data", str(data), "--out", str(run), "--quiet", *SETS]) == 0
    return run, ann, feats


def test_trained_fixture_localizes(trained, tmp_path, capsys):
    run, ann, feats = trained
    data = save_canonical(tmp_path / "d", ann, feats)
    ok(capsys, ["localize", "--run", run, "--data", data, "--out", tmp_path / "p.json"])
    assert (tmp_path / "p.json").is_file()


def localize_fails(capsys, run: Path, data: Path, tmp_path: Path, *needles: str,
                   extra: tuple[str, ...] = ()) -> str:
    out = tmp_path / "pred.json"
    line = fail(capsys, ["localize", "--run", run, "--data", data, "--out", out, *extra], *needles)
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".pred.json")]
    return line


def train_fails(capsys, data: Path, tmp_path: Path, *needles: str, extra=()) -> str:
    run = tmp_path / "run"
    line = fail(capsys, ["train", "--data", data, "--out", run, "--quiet", *SETS, *extra],
                *needles)
    assert not run.exists(), sorted(run.rglob("*"))  # nothing written before the data is checked
    return line


# ---------------------------------------------------------------------------------- features
def test_missing_feature_file(tmp_path, capsys, trained):
    data, ann, _ = make_data(tmp_path / "data")
    vid = first_test_video(ann)
    feature_file(data, vid, "flow").unlink()
    msg = f"{feature_file(data, vid, 'flow')}: feature file missing for listed video {vid!r}"
    assert train_fails(capsys, data, tmp_path) == f"acn: error: {msg}"
    assert localize_fails(capsys, trained[0], data, tmp_path) == f"acn: error: {msg}"


def test_rgb_and_flow_differ_in_length(tmp_path, capsys, trained):
    data, ann, feats = make_data(tmp_path / "data")
    vid = first_test_video(ann)
    np.save(feature_file(data, vid, "flow"), feats[vid][1][:-3])
    T = len(feats[vid][0])
    train_fails(capsys, data, tmp_path, f"{vid}_rgb.npy", f"RGB has {T} snippets but Flow has "
                f"{T - 3}")
    localize_fails(capsys, trained[0], data, tmp_path, f"{vid}_rgb.npy", "Flow has")


def test_zero_snippets(tmp_path, capsys, trained):
    data, ann, _ = make_data(tmp_path / "data")
    vid = first_test_video(ann)
    for s in ("rgb", "flow"):
        np.save(feature_file(data, vid, s), np.zeros((0, 16), np.float32))
    train_fails(capsys, data, tmp_path, f"{vid}_rgb.npy", "0 snippets")
    localize_fails(capsys, trained[0], data, tmp_path, f"{vid}_rgb.npy", "0 snippets")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_features(tmp_path, capsys, bad):
    data, ann, feats = make_data(tmp_path / "data")
    vid = sorted(ann.videos)[-1]
    flow = feats[vid][1].copy()
    flow[5, 3] = bad
    np.save(feature_file(data, vid, "flow"), flow)
    train_fails(capsys, data, tmp_path, vid, "Flow features contain NaN or Inf",
                "snippet 5, column 3")


def test_wrong_feature_dimension_for_checkpoint(tmp_path, capsys, trained):
    data, _, _ = make_data(tmp_path / "data", dim=8)
    localize_fails(capsys, trained[0], data, tmp_path, "_rgb.npy", "8-d", "expects 16-d")


def test_features_of_different_widths_in_one_dataset(tmp_path, capsys):
    data, ann, feats = make_data(tmp_path / "data")
    vid = sorted(ann.videos)[-1]
    for s, a in zip(("rgb", "flow"), feats[vid]):
        np.save(feature_file(data, vid, s), a[:, :8])
    train_fails(capsys, data, tmp_path, f"{vid}_rgb.npy", "8-d", "16-d")


@pytest.mark.parametrize("how", ["truncated", "not_npy", "pickled"])
def test_corrupt_npy(tmp_path, capsys, trained, how):
    data, ann, _ = make_data(tmp_path / "data")
    vid = first_test_video(ann)
    f = feature_file(data, vid, "rgb")
    if how == "truncated":
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    elif how == "not_npy":
        f.write_text("this is not a numpy file\n")
    else:
        np.save(f, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    want = {"truncated": "truncated .npy file", "not_npy": "not a .npy file",
            "pickled": "holds pickled objects"}[how]
    train_fails(capsys, data, tmp_path, f"{vid}_rgb.npy", want)
    localize_fails(capsys, trained[0], data, tmp_path, f"{vid}_rgb.npy", want)


def _short_video_data(root: Path, trained) -> tuple[Path, str]:
    """The test videos of the trained data, one of them cut to 1 snippet (< anchor 2)."""
    _, ann, feats = trained
    vid = first_test_video(ann)
    feats = dict(feats)
    feats[vid] = (feats[vid][0][:1], feats[vid][1][:1])
    videos = dict(ann.videos)
    videos[vid] = dataclasses.replace(videos[vid], duration=16 / 25, segments=[])
    save_canonical(root, dataclasses.replace(ann, videos=videos), feats)
    return root, vid


def test_short_video_warns_and_is_one_proposal(tmp_path, capsys, trained):
    data, vid = _short_video_data(tmp_path / "data", trained)
    out = tmp_path / "pred.json"
    err = ok(capsys, ["localize", "--run", trained[0], "--data", data, "--out", out,
                      "--stream", "flow"])
    assert "acn: warning:" in err and "shorter than the smallest anchor" in err and vid in err
    res = json.loads(out.read_text())["results"]
    assert all(0 <= d["segment"][0] <= d["segment"][1] <= 16 / 25 + 1e-9 for d in res[vid])


def test_short_video_is_an_error_when_asked(tmp_path, capsys, trained):
    data, vid = _short_video_data(tmp_path / "data", trained)
    localize_fails(capsys, trained[0], data, tmp_path, vid, "shorter than the smallest anchor",
                   extra=("--set", "localize.short_videos=error"))


# ---------------------------------------------------------------------------------- ground truth
def _gt_json(tmp_path: Path, seg, label: str = "Jump", name: str = "gt.json") -> Path:
    db = {"v1": {"subset": "test", "duration": 20.0,
                 "annotations": [{"segment": seg, "label": label}]},
          "v2": {"subset": "test", "duration": 20.0,
                 "annotations": [{"segment": [1.0, 4.0], "label": "Run"}]}}
    p = tmp_path / name
    p.write_text(json.dumps({"classes": ["Jump", "Run"], "database": db}))
    return p


def _pred(tmp_path: Path, dets=None) -> Path:
    p = tmp_path / "pred.json"
    save_results(p, dets or {"v1": [(2.0, 5.0, "Jump", 0.9)], "v2": [(1.0, 4.0, "Run", 0.5)]})
    return p


def evaluate_fails(capsys, gt: Path, pred: Path, tmp_path: Path, *needles: str) -> str:
    out = tmp_path / "map.json"
    line = fail(capsys, ["evaluate", "--gt", gt, "--pred", pred, "--json", out], *needles)
    assert not out.exists()
    return line


@pytest.mark.parametrize("seg,needle", [([5.0, 2.0], "end 2.0 is before its start 5.0"),
                                        ([-1.0, 2.0], "negative time"),
                                        (["a", 2.0], "is not a number")])
def test_bad_segment_in_activitynet_gt(tmp_path, capsys, seg, needle):
    evaluate_fails(capsys, _gt_json(tmp_path, seg), _pred(tmp_path), tmp_path, "gt.json", "v1",
                   needle)


@pytest.mark.parametrize("seg,needle", [([5.0, 2.0], "before its start"),
                                        ([-1.0, 2.0], "negative time")])
def test_bad_segment_in_canonical_index(tmp_path, capsys, seg, needle):
    data, ann, _ = make_data(tmp_path / "data")
    vid = sorted(ann.videos)[0]
    write_index(data, lambda o: o["database"][vid]["annotations"][0].__setitem__("segment", seg))
    train_fails(capsys, data, tmp_path, "index.json", vid, needle)


def test_segment_past_the_end_is_clipped_with_a_warning(tmp_path, capsys):
    gt = _gt_json(tmp_path, [15.0, 25.0])
    out = tmp_path / "map.json"
    err = ok(capsys, ["evaluate", "--gt", gt, "--pred", _pred(tmp_path), "--json", out])
    assert "acn: warning:" in err and "gt.json" in err and "clipped" in err
    assert out.is_file()


def test_unknown_class_in_ground_truth(tmp_path, capsys):
    data, ann, _ = make_data(tmp_path / "data")
    vid = sorted(ann.videos)[0]
    write_index(data, lambda o: o["database"][vid]["annotations"][0].__setitem__("label", "Swim"))
    train_fails(capsys, data, tmp_path, "index.json", vid, "unknown class name 'Swim'")
    gt = _gt_json(tmp_path, [1.0, 2.0], label="Swim")  # classes listed: Swim is not one
    evaluate_fails(capsys, gt, _pred(tmp_path), tmp_path, "gt.json", "'Swim'")


def test_unknown_class_in_predictions(tmp_path, capsys):
    gt = _gt_json(tmp_path, [1.0, 2.0])
    pred = _pred(tmp_path, {"v1": [(1.0, 2.0, "Swim", 0.9)], "v2": []})
    evaluate_fails(capsys, gt, pred, tmp_path, "pred.json", "not classes of", "Swim")


def test_empty_prediction_file(tmp_path, capsys):
    gt = _gt_json(tmp_path, [1.0, 2.0])
    pred = tmp_path / "pred.json"
    pred.write_text("")
    evaluate_fails(capsys, gt, pred, tmp_path, "pred.json", "empty")


def test_prediction_file_without_detections_warns(tmp_path, capsys):
    gt = _gt_json(tmp_path, [1.0, 2.0])
    pred = tmp_path / "pred.json"
    pred.write_text('{"results": {}}')
    err = ok(capsys, ["evaluate", "--gt", gt, "--pred", pred])
    assert "acn: warning:" in err and "holds no detection" in err


@pytest.mark.parametrize("text,needle", [
    ('[{"label": "Jump"}]', "expected a JSON object"),
    ('{"database": {}}', 'no "results" key'),
    ('{"results": [1, 2]}', '"results" must map video ids'),
    ('{"results": {"v1": [{"label": "Jump", "score": 1}]}}', "missing key(s) ['segment']"),
    ('{"results": {"v1": [{"label": "Jump", "score": 1, "segment": [3, 1]}]}}',
     "before its start"),
    ('{"results": {"v1": [{"label": "Jump", "score": "high", "segment": [1, 3]}]}}',
     "score must be a number"),
    ('{"results": {"v1": [', "not valid JSON"),
])
def test_prediction_json_not_in_activitynet_shape(tmp_path, capsys, text, needle):
    gt = _gt_json(tmp_path, [1.0, 2.0])
    pred = tmp_path / "pred.json"
    pred.write_text(text)
    evaluate_fails(capsys, gt, pred, tmp_path, "pred.json", needle)


# ---------------------------------------------------------------------------------- duplicates
def test_duplicate_video_id_in_activitynet_gt(tmp_path, capsys):
    entry = '"v1": {"subset": "test", "duration": 9, "annotations": []}'
    gt = tmp_path / "gt.json"
    gt.write_text('{"database": {%s, %s}}' % (entry, entry))
    evaluate_fails(capsys, gt, _pred(tmp_path), tmp_path, "gt.json", "'v1' appears twice")


def test_duplicate_video_id_in_canonical_index(tmp_path, capsys):
    data, ann, _ = make_data(tmp_path / "data")
    text = (data / "index.json").read_text()
    vid = sorted(ann.videos)[0]
    obj = json.loads(text)
    entry = json.dumps({vid: obj["database"][vid]})[1:-1]
    (data / "index.json").write_text(text.replace('"database": {', '"database": {' + entry + ",",
                                                  1))
    train_fails(capsys, data, tmp_path, "index.json", f"{vid!r} appears twice")


def test_duplicate_video_id_in_predictions(tmp_path, capsys):
    gt = _gt_json(tmp_path, [1.0, 2.0])
    det = '[{"label": "Jump", "score": 0.5, "segment": [1, 2]}]'
    pred = tmp_path / "pred.json"
    pred.write_text('{"results": {"v1": %s, "v2": [], "v1": %s}}' % (det, det))
    evaluate_fails(capsys, gt, pred, tmp_path, "pred.json", "'v1' appears twice")


def test_duplicate_video_id_in_wtalc(tmp_path, capsys):
    ann, feats = tiny_dataset(n_train=3, n_test=2)
    save_wtalc(tmp_path / "w", "Tiny", ann, feats)
    names = np.load(tmp_path / "w/Tiny-Annotations/videoname.npy")
    names[1] = names[0]
    np.save(tmp_path / "w/Tiny-Annotations/videoname.npy", names)
    train_fails(capsys, tmp_path / "w", tmp_path, "videoname.npy", "duplicate video ids",
                extra=("--allow-pickle",))


# ---------------------------------------------------------------------------------- W-TALC pickles
def test_wtalc_pickle_needs_trust_opt_in(tmp_path, capsys):
    ann, feats = tiny_dataset(n_train=3, n_test=2)
    save_wtalc(tmp_path / "w", "Tiny", ann, feats)
    line = train_fails(capsys, tmp_path / "w", tmp_path, "Tiny-Annotations", "pickle",
                       "--allow-pickle")
    assert ".npy" in line
    evaluate_fails(capsys, tmp_path / "w", _pred(tmp_path), tmp_path, "pickle", "--allow-pickle")


# ---------------------------------------------------------------------------------- checkpoints
def test_checkpoint_from_another_class_list(tmp_path, capsys, trained):
    data, _, _ = make_data(tmp_path / "data", classes=("Jump", "Run", "Swim"))
    localize_fails(capsys, trained[0], data, tmp_path, "class list differs", "Swim")
    line = fail(capsys, ["baseline", "--run", trained[0], "--data", data, "--out",
                         tmp_path / "b.json"], "class list differs")
    assert str(data) in line and not (tmp_path / "b.json").exists()


@pytest.mark.parametrize("what", ["truncated", "missing", "foreign"])
def test_unreadable_checkpoint(tmp_path, capsys, trained, what):
    run = tmp_path / "run"
    shutil.copytree(trained[0], run)
    ck = run / "checkpoints" / "flow_regression.pt"
    if what == "truncated":
        ck.write_bytes(ck.read_bytes()[:200])
    elif what == "missing":
        ck.unlink()
    else:
        torch.save({"state_dict": {}, "kwargs": {"in_dim": 3}, "classes": ["Jump", "Run",
                                                                          "Throw"]}, ck)
    data = save_canonical(tmp_path / "d", *trained[1:])
    localize_fails(capsys, run, data, tmp_path, "flow_regression.pt")


def test_run_folder_from_another_class_list(tmp_path, capsys, trained):
    """rgb and flow checkpoints of one run must agree (a hand-assembled run folder)."""
    run = tmp_path / "run"
    shutil.copytree(trained[0], run)
    ck = run / "checkpoints" / "flow_regression.pt"
    blob = torch.load(ck, weights_only=True)
    blob["classes"] = ["A", "B", "C"]
    from acn.train.stages import save_checkpoint

    save_checkpoint(ck, blob)  # as acn writes it (with its checksum): only the classes differ
    data = save_canonical(tmp_path / "d", *trained[1:])
    localize_fails(capsys, run, data, tmp_path, "flow_regression.pt", "different class list")


# ---------------------------------------------------------------------------------- configs
@pytest.mark.parametrize("text,needles", [
    ("acn:\n  alphaa: 0.5\n", ("unknown config key 'acn.alphaa'",)),
    ("train:\n  epochs: three\n", ("train.epochs must be an int", "'three'")),
    ("localize: fast\n", ("localize must be a section",)),
    ("acn: [1, 2\n", ("not valid YAML",)),
    ("- 1\n- 2\n", ("must be a mapping",)),
])
def test_bad_yaml_config(tmp_path, capsys, text, needles):
    data, _, _ = make_data(tmp_path / "data")
    cfg = tmp_path / "my.yaml"
    cfg.write_text(text)
    line = train_fails(capsys, data, tmp_path, "my.yaml", *needles, extra=("--config", cfg))
    assert "\n" not in line


@pytest.mark.parametrize("item,needle", [
    ("train.epochs=1.5", "train.epochs must be an int"),
    ("localize.short_videos=eror", "localize.short_videos must be one of"),
    ("nope=1", "unknown config key 'nope'"),
    ("acn.alpha", "expected key=value"),
])
def test_bad_set_override(tmp_path, capsys, item, needle):
    data, _, _ = make_data(tmp_path / "data")
    train_fails(capsys, data, tmp_path, "--set", needle, extra=("--set", item))


def test_resume_of_a_folder_that_is_no_run(tmp_path, capsys):
    fail(capsys, ["train", "--resume", tmp_path], "run.json", "not found")
    (tmp_path / "run.json").write_text(json.dumps({"data": str(tmp_path), "format": None}))
    fail(capsys, ["train", "--resume", tmp_path], "config.yaml", "not found")
    (tmp_path / "config.yaml").write_text("train: {epochs: [\n")
    fail(capsys, ["train", "--resume", tmp_path], "config.yaml", "not valid YAML")
    (tmp_path / "run.json").write_text("[1, 2]")
    fail(capsys, ["train", "--resume", tmp_path], "run.json", "not an acn run description")


# ---------------------------------------------------------------------------------- outputs
def test_output_folder_not_writable(tmp_path, capsys, trained):
    blocker = tmp_path / "file"
    blocker.write_text("a regular file, not a folder\n")
    data, _, _ = make_data(tmp_path / "data")
    fail(capsys, ["train", "--data", data, "--out", blocker / "run", *SETS], str(blocker),
         "cannot create output folder")
    data2 = save_canonical(tmp_path / "d", *trained[1:])
    fail(capsys, ["localize", "--run", trained[0], "--data", data2, "--out",
                  blocker / "sub" / "p.json"], str(blocker), "cannot create output folder")
    fail(capsys, ["evaluate", "--gt", _gt_json(tmp_path, [1.0, 2.0]), "--pred", _pred(tmp_path),
                  "--json", blocker / "map.json"], f"{blocker}: cannot create output folder "
         f"({blocker} is not a folder)")
    assert blocker.read_text() == "a regular file, not a folder\n"


def test_missing_inputs_are_named(tmp_path, capsys, trained):
    fail(capsys, ["train", "--data", tmp_path / "nodata", "--out", tmp_path / "r"], "nodata",
         "not found")
    assert not (tmp_path / "r").exists()
    fail(capsys, ["localize", "--run", tmp_path / "norun", "--data", tmp_path, "--out",
                  tmp_path / "p.json"], "norun")
    fail(capsys, ["evaluate", "--gt", tmp_path / "nogt", "--pred", tmp_path / "p.json"], "nogt")


# ---------------------------------------------------------------------------------- extract
@pytest.mark.skipif(importlib.util.find_spec("acn.cli.extract") is None
                    or importlib.util.find_spec("av") is None
                    or importlib.util.find_spec("cv2") is None,
                    reason="acn extract or its video dependencies (av, cv2) are missing")
def test_extract_of_a_file_that_is_no_video(tmp_path, capsys):
    bad = tmp_path / "clip.mp4"
    bad.write_text("not a video at all\n")
    out = tmp_path / "feats"
    rc = main(["extract", str(bad), str(tmp_path / "gone.mp4"), "--out", str(out),
               "--random-weights", "--flow", "dis", "--no-progress"])
    err = capsys.readouterr().err
    assert rc != 0 and "Traceback" not in err
    assert f"{bad}: not a readable video" in err and "gone.mp4: no such file" in err
    assert not list((out / "features").glob("clip*")) if (out / "features").exists() else True


# ---------------------------------------------------------------------------------- CLI contract
def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(AcnError, match="nodata"):
        main(["--debug", "train", "--data", str(tmp_path / "nodata"), "--out", str(tmp_path)])


def test_ctrl_c_exits_130(monkeypatch, tmp_path, capsys):
    import acn.cli.evaluate as ce

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(ce, "run", interrupted)
    assert main(["evaluate", "--gt", str(tmp_path), "--pred", str(tmp_path)]) == 130
    assert capsys.readouterr().err.strip() == "acn: interrupted"


def test_system_errors_are_one_line(monkeypatch, tmp_path, capsys):
    import errno

    import acn.cli.evaluate as ce

    def disk_full(args):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "map.json"))

    monkeypatch.setattr(ce, "run", disk_full)
    fail(capsys, ["evaluate", "--gt", tmp_path, "--pred", tmp_path],
         f"{tmp_path / 'map.json'}: No space left on device")
