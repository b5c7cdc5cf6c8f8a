"""Corpus-scale jobs (acn.scale, ``acn batch``): manifests, per-video idempotent outputs,
retries, failure summaries, shards, and the same work as Ray tasks (skipped without Ray)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from acn.errors import AcnError
from acn.extract import ExtractConfig
from acn.scale import (JobSpec, detections_path, finish, localize_item, read_manifest,
                       run_local)

from conftest import FAST_SET, tiny_dataset

XCFG = ExtractConfig(resize=40, crop=32, flow="dis", random_weights=True, batch_size=2,
                     flow_workers=1)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A small trained run and its dataset in the canonical layout (a feature folder)."""
    from acn.config import resolve
    from acn.data.canonical import save_canonical
    from acn.data.open import open_dataset
    from acn.pipeline import ACN

    root = tmp_path_factory.mktemp("scale")
    ann, feats = tiny_dataset(n_train=12, n_test=6)
    save_canonical(root / "data", ann, feats)
    ds = open_dataset(root / "data")
    cfg = resolve(overrides=[*FAST_SET, "base.epochs=4", "train.epochs=1"])
    ACN(cfg).fit(ds, root / "run", progress=False)
    return root / "run", root / "data", ds


def _cli(argv: list[str]) -> int:
    from acn.cli import batch as cli_scale

    p = argparse.ArgumentParser(prog="acn batch")
    cli_scale.add_arguments(p)
    return cli_scale.run(p.parse_args(argv))


# -- manifests ----------------------------------------------------------------------------------
def test_manifest_entries_shards_and_duplicates(tmp_path):
    (tmp_path / "vids").mkdir()
    for name in ("b.mp4", "a.avi", "notes.txt"):
        (tmp_path / "vids" / name).write_bytes(b"x")
    m = tmp_path / "m.txt"
    m.write_text("# videos\nvids\n\nfile:///data/c.mp4\ns3://bucket/x/d.mkv?v=1\nvids/a.avi\n")
    items = read_manifest(m, "extract")
    assert [i.id for i in items] == ["a", "b", "c", "d"]
    assert items[2].source == "/data/c.mp4" and items[3].source.startswith("s3://")
    shards = [read_manifest(m, "extract", (i, 2)) for i in range(2)]
    assert sorted(i.id for s in shards for i in s) == ["a", "b", "c", "d"]
    assert not {i.id for i in shards[0]} & {i.id for i in shards[1]}
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "a.mp4").write_bytes(b"x")
    m.write_text("vids\nother/a.mp4\n")
    with pytest.raises(AcnError, match="the video id 'a'"):
        read_manifest(m, "extract")
    m.write_text("\n# nothing\n")
    with pytest.raises(AcnError, match="no entry"):
        read_manifest(m, "extract")
    m.write_text("vids\n")
    with pytest.raises(AcnError, match="_rgb.npy"):
        read_manifest(m, "localize")


# -- localize, locally ----------------------------------------------------------------------------
def test_batch_localize_matches_acn_localize_and_is_idempotent(tiny_run, tmp_path):
    from acn.evaluate import load_results
    from acn.pipeline import ACN

    run, data, ds = tiny_run
    manifest = tmp_path / "features.txt"
    manifest.write_text(f"{data}\n")
    out = tmp_path / "out"
    assert _cli(["localize", "--manifest", str(manifest), "--run", str(run), "--out", str(out),
                 "--local", "--stream", "flow"]) == 0
    ids = sorted(ds.annotations.videos)
    ref = ACN.load(run).localize(ds, ids, ["flow"], progress=False)["flow"]
    got = load_results(out / "results.json").to_dict()
    assert sorted(got) == ids
    for vid in ids:
        assert len(got[vid]) == len(ref[vid])
        for g, r in zip(got[vid], ref[vid]):
            # batches of other videos change float32 GEMM blocking: scores agree to ~1e-5
            assert g[2] == r[2] and np.allclose(g[:2], r[:2])
            assert g[3] == pytest.approx(r[3], rel=1e-4, abs=1e-6)
    rec = json.loads(detections_path(out, ids[0]).read_text())
    assert set(rec["streams"]) == {"rgb", "flow", "fused"} and rec["fps"] == 25.0
    summary = json.loads((out / "batch-localize.json").read_text())
    assert len(summary["done"]) == len(ids) and summary["failed"] == []
    # rerun: every video skipped, outputs untouched
    before = detections_path(out, ids[0]).stat().st_mtime_ns
    assert _cli(["localize", "--manifest", str(manifest), "--run", str(run), "--out",
                 str(out)]) == 0
    assert json.loads((out / "batch-localize.json").read_text())["skipped"] == ids
    assert detections_path(out, ids[0]).stat().st_mtime_ns == before
    # other inference settings into the same folder: refused per video, not mixed
    assert _cli(["localize", "--manifest", str(manifest), "--run", str(run), "--out", str(out),
                 "--set", "localize.nms_iou=0.5", "--shard", "0/9"]) == 1


def test_broken_videos_are_summarised_and_listed_for_retry(tiny_run, tmp_path, capsys):
    run, data, ds = tiny_run
    feats = tmp_path / "feats"
    feats.mkdir()
    vid = sorted(ds.annotations.videos)[0]
    for s in ("rgb", "flow"):
        (feats / f"{vid}_{s}.npy").write_bytes((data / "features" / f"{vid}_{s}.npy").read_bytes())
    (feats / "bad_rgb.npy").write_bytes(b"not numpy")
    (feats / "bad_flow.npy").write_bytes(b"not numpy")
    (feats / "lonely_rgb.npy").write_bytes((data / "features" / f"{vid}_rgb.npy").read_bytes())
    manifest = tmp_path / "m.txt"
    manifest.write_text("feats\n")
    out = tmp_path / "out"
    assert _cli(["localize", "--manifest", str(manifest), "--run", str(run), "--out",
                 str(out)]) == 1
    err = capsys.readouterr().err
    assert "2 video(s) failed" in err and "bad_rgb.npy" in err and "lonely_flow.npy" in err
    s = json.loads((out / "batch-localize.json").read_text())
    assert s["done"] == [vid] and {f["video"] for f in s["failed"]} == {"bad", "lonely"}
    retry = (out / "failed-localize.txt").read_text().split()
    assert sorted(Path(p).name for p in retry) == ["bad_rgb.npy", "lonely_rgb.npy"]
    assert list(json.loads((out / "results.json").read_text())["results"]) == [vid]


def flaky_localize(item, spec):
    """Fails with a transient error on the first try of each video (marker file: works
    across processes)."""
    marker = Path(spec.out) / f".tried-{item.id}"
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("1")
        raise ConnectionError("storage hiccup")
    return localize_item(item, spec)


def always_oserror(item, spec):
    raise OSError("disk went away")


def test_transient_errors_are_retried_then_reported(tiny_run, tmp_path):
    run, data, ds = tiny_run
    items = read_manifest(_manifest(tmp_path, data), "localize")[:3]
    spec = JobSpec("localize", str(tmp_path / "out"), run=str(run))
    s = run_local(items, spec, max_retries=1, progress=False, log=lambda m: None,
                  work=flaky_localize)
    assert s.ok and len(s.done) == 3 and s.retries == 3
    s = run_local(items, spec, max_retries=2, progress=False, log=lambda m: None,
                  work=always_oserror)
    assert len(s.failed) == 3 and s.retries == 6 and "disk went away" in s.failed[0][1]
    # an acn input error is not retried
    bad = JobSpec("localize", str(tmp_path / "out2"), run=str(tmp_path / "no-run"))
    s = run_local(items[:1], bad, max_retries=2, progress=False, log=lambda m: None)
    assert s.retries == 0 and "run folder not found" in s.failed[0][1]


def _manifest(tmp_path: Path, *entries) -> Path:
    m = tmp_path / "manifest.txt"
    m.write_text("".join(f"{e}\n" for e in entries))
    return m


# -- extraction, locally --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    pytest.importorskip("av")
    from test_extract import make_video

    d = tmp_path_factory.mktemp("videos")
    good = [make_video(d / "v1.mp4", fps=30, seconds=1.4), make_video(d / "v2.mp4", fps=25,
                                                                      seconds=1.4)]
    (d / "broken.mp4").write_text("not a video\n")
    return d, good


def test_batch_extract_local_per_video_idempotent(videos, tmp_path):
    from acn.data.canonical import load_canonical

    d, good = videos
    out = tmp_path / "out"
    items = read_manifest(_manifest(tmp_path, d, f"file://{d}/missing.mp4"), "extract")
    assert [i.id for i in items] == ["broken", "missing", "v1", "v2"]
    spec = JobSpec("extract", str(out), extract=XCFG, threads=1)
    s = run_local(items, spec, progress=False, log=lambda m: None)
    finish(s, spec, items)
    assert s.done == ["v1", "v2"] and {v for v, _ in s.failed} == {"broken", "missing"}
    assert s.retries == 0  # broken and missing files are not worth retrying
    ds = load_canonical(out)
    assert sorted(ds.annotations.videos) == ["v1", "v2"]
    assert ds.store.load("v1")[0].shape == (3, 1024)  # 1.4 s = 35 frames at 25 fps
    assert (out / "failed-extract.txt").read_text().count("\n") == 2
    s2 = run_local(items[2:], spec, progress=False)
    assert s2.skipped == ["v1", "v2"] and not s2.done


# -- Ray ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    # this test module is not importable on the workers: ship its functions by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_localize_and_extract_same_outputs_as_local(ray_local, tiny_run, videos, tmp_path):
    from acn.scale import run_ray

    run, data, ds = tiny_run
    items = read_manifest(_manifest(tmp_path, data), "localize")[:6]
    local = JobSpec("localize", str(tmp_path / "local"), run=str(run), threads=1)
    remote = JobSpec("localize", str(tmp_path / "ray"), run=str(run), threads=1)
    run_local(items, local, progress=False)
    s = run_ray(items, remote, num_cpus=1, max_retries=1, progress=False, log=lambda m: None,
                work=flaky_localize)  # every video fails once: Ray retries it
    assert s.ok and sorted(s.done) == [i.id for i in items]
    for it in items:
        a = json.loads(detections_path(local.out, it.id).read_text())["streams"]
        b = json.loads(detections_path(remote.out, it.id).read_text())["streams"]
        assert a == b
    s = run_ray(items, remote, num_cpus=1, progress=False)
    assert sorted(s.skipped) == [i.id for i in items]
    s = run_ray(items[:2], JobSpec("localize", str(tmp_path / "x"), run=str(run)),
                max_retries=1, progress=False, log=lambda m: None, work=always_oserror)
    assert len(s.failed) == 2 and "disk went away" in s.failed[0][1]
    # extraction: same per-video function as Ray tasks; a broken video is reported
    d, good = videos
    xitems = read_manifest(_manifest(tmp_path, d), "extract")
    spec = JobSpec("extract", str(tmp_path / "feats"), extract=XCFG, threads=1)
    s = run_ray(xitems, spec, num_cpus=1, progress=False, log=lambda m: None)
    finish(s, spec, xitems)
    assert sorted(s.done) == ["v1", "v2"] and [v for v, _ in s.failed] == ["broken"]
    assert (tmp_path / "feats" / "index.json").is_file()


@pytest.mark.slow
def test_process_pool_gives_the_same_outputs(tiny_run, tmp_path):
    run, data, ds = tiny_run
    items = read_manifest(_manifest(tmp_path, data), "localize")
    one = JobSpec("localize", str(tmp_path / "one"), run=str(run), threads=1)
    two = JobSpec("localize", str(tmp_path / "two"), run=str(run), threads=1)
    assert run_local(items, one, progress=False).ok
    s = run_local(items, two, workers=2, progress=False)
    assert s.ok and s.backend == "local x2" and len(s.done) == len(items)
    for it in items:
        assert json.loads(detections_path(one.out, it.id).read_text())["streams"] == \
            json.loads(detections_path(two.out, it.id).read_text())["streams"]
