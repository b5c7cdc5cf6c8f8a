"""SIGKILL every long command at seeded random points, run it again on what it left, and
require nothing lost and nothing corrupt (issue #19):

- after every kill, each file under a final name is complete (and matches its checksum);
  only hidden temporaries and the run lock may be partial or extra;
- the command run again (``acn train --resume``; the others resume by skipping finished
  videos) ends with output identical to an uninterrupted run: every checkpoint tensor
  ``torch.equal``, JSON equal, feature arrays equal.

``ACN_FAULT_KILLS`` (default 10) kills per command; ``ACN_FAULT_SEED`` picks other points.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from faults.harness import (
    EXTRACT,
    KILLS,
    VIDEO,
    Case,
    acn,
    run as run_cmd,
    reference,
    survive_kills,
    REPORT,
    check_no_partial,
    train_argv,
    worker_killer,
)

pytestmark = pytest.mark.slow

# -- what is compared ---------------------------------------------------------------------------
def assert_same(a, b, where: str) -> None:
    import torch

    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys differ"
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def same_run(out: Path, ref: Path) -> None:
    """Every checkpoint (weights, optimiser state, history, config), base output and the
    config of two run folders are identical."""
    import torch

    names = sorted(p.relative_to(ref) for p in ref.rglob("*")
                   if p.suffix in (".pt", ".npz") and not p.name.startswith("."))
    got = sorted(p.relative_to(out) for p in out.rglob("*")
                 if p.suffix in (".pt", ".npz") and not p.name.startswith("."))
    assert got == names, f"{out}: other checkpoint/output files than {ref}"
    for rel in names:
        if rel.suffix == ".pt":
            assert_same(torch.load(out / rel, weights_only=True),
                        torch.load(ref / rel, weights_only=True), str(rel))
        else:
            with np.load(out / rel) as x, np.load(ref / rel) as y:
                assert x.files == y.files
                for k in x.files:
                    assert np.array_equal(x[k], y[k]), f"{rel}[{k}]"
    assert (out / "config.yaml").read_text() == (ref / "config.yaml").read_text()
    log, ref_log = (json.loads((d / "train_log.json").read_text()) for d in (out, ref))
    for s in ("rgb", "flow"):
        assert log[f"{s}_regression"]["history"] == ref_log[f"{s}_regression"]["history"]


def same_json(*names: str):
    def check(out: Path, ref: Path) -> None:
        for n in names:
            assert json.loads((out / n).read_text()) == json.loads((ref / n).read_text()), n
    return check


def same_features(out: Path, ref: Path) -> None:
    """The same feature arrays, per-video JSONs and index."""
    feats = sorted(p.name for p in (ref / "features").iterdir())
    assert sorted(p.name for p in (out / "features").iterdir()) == feats
    for n in feats:
        if n.endswith(".npy"):
            assert np.array_equal(np.load(out / "features" / n), np.load(ref / "features" / n)), n
        elif n.endswith(".json"):
            assert json.loads((out / "features" / n).read_text()) == \
                json.loads((ref / "features" / n).read_text()), n
    assert json.loads((out / "index.json").read_text()) == \
        json.loads((ref / "index.json").read_text())


def same_batch(kind: str, stream_results: bool):
    def check(out: Path, ref: Path) -> None:
        summary = json.loads((out / f"batch-{kind}.json").read_text())
        assert summary["failed"] == [], summary["failed"]
        if stream_results:
            same_json("results.json")(out, ref)
            dets = sorted(p.name for p in (ref / "detections").iterdir())
            assert sorted(p.name for p in (out / "detections").iterdir()) == dets
            same_json(*(f"detections/{n}" for n in dets))(out, ref)
        else:
            same_features(out, ref)
    return check


def _case(name: str, argv, check, started=None, during=None) -> Case:
    kw = {"started": started} if started else {}
    return Case(name, argv, check, written=lambda out: out, during=during, **kw)


def _survive(root: Path, name: str, argv, check, chains: int = 2, **kw) -> dict:
    ref_out, ref = reference(root, name, argv)
    case = _case(name, argv, lambda out: check(out, ref_out), **kw)
    return survive_kills(case, ref, root / name, chains=chains)


# -- the commands -------------------------------------------------------------------------------
def test_train_survives_kills(world, trained):
    root, data = world
    run, ref = trained
    case = _case("acn train (--resume)", train_argv(data), lambda out: same_run(out, run),
                 started=lambda out: (out / "run.json").is_file())
    s = survive_kills(case, ref, root / "train")
    assert s["kills"] >= KILLS


def test_localize_dataset_survives_kills(world, trained):
    root, data = world
    run, _ = trained

    def argv(out: Path, again: bool) -> list[str]:
        return acn("localize", "--run", run, "--data", data, "--out", out / "pred.json",
                   "--quiet")
    assert _survive(root, "acn localize --data", argv, same_json("pred.json"))["kills"] >= KILLS


def test_localize_video_survives_kills(world, trained, videos):
    root, _ = world
    run, _ = trained

    def argv(out: Path, again: bool) -> list[str]:
        return acn("localize", "--run", run, "--video", videos / "clip1.mp4", *VIDEO,
                   "--out", out / "clip1.json", "--plot", out / "clip1.png",
                   "--set", "localize.short_videos=clip", "--quiet")
    assert _survive(root, "acn localize --video", argv, same_json("clip1.json"))["kills"] >= KILLS


def test_extract_survives_kills(world, videos):
    root, _ = world

    def argv(out: Path, again: bool) -> list[str]:
        return acn("extract", videos, "--out", out, *EXTRACT, "--flow-workers", "1",
                   "--no-progress")
    assert _survive(root, "acn extract", argv, same_features)["kills"] >= KILLS


def test_batch_localize_local_survives_kills(world, trained):
    root, data = world
    run, _ = trained
    manifest = root / "features.txt"
    manifest.write_text(f"{data}\n")

    def argv(out: Path, again: bool) -> list[str]:
        return acn("batch", "localize", "--manifest", manifest, "--run", run, "--out", out,
                   "--local", "--no-progress")
    s = _survive(root, "acn batch localize --local", argv, same_batch("localize", True))
    assert s["kills"] >= KILLS


def test_batch_extract_local_survives_kills(world, videos):
    root, _ = world

    def argv(out: Path, again: bool) -> list[str]:
        return acn("batch", "extract", "--manifest", root / "videos.txt", "--out", out,
                   "--local", *EXTRACT, "--no-progress")
    s = _survive(root, "acn batch extract --local", argv, same_batch("extract", False))
    assert s["kills"] >= KILLS


def test_train_killed_right_after_its_run_description_resumes(world, trained):
    """A kill between the first two files of a run (RUN/run.json, which marks the folder as
    resumable, and RUN/config.yaml, which --resume reads) must leave a folder --resume takes."""
    root, data = world
    run, _ = trained
    trace = (root / "trace-train.txt").read_text().splitlines()
    renamed = next(int(line.split()[0]) for line in trace
                   if line.split()[1] == "rename" and line.endswith("/run.json"))
    out = root / "train-early" / "out"
    r = run_cmd(train_argv(data)(out, False), {"ACN_FAULT_AT": str(renamed + 1)})
    assert r.killed and (out / "run.json").is_file()
    r = run_cmd(train_argv(data)(out, True))
    assert r.rc == 0, r.stderr
    same_run(out, run)


# -- on Ray: the driver killed (a preempted node), and Ray workers killed mid-task --------------
# Half of the kills hit the driver (each costs a driver start, ~3 s, plus joining the cluster),
# the other half hit workers busy with a task, one after the other in one run (each costs Ray a
# worker start): Ray retries the task, and the job ends complete and equal. Tasks ask for both
# CPUs of the test's cluster, so one worker runs at a time and the job cannot end before the
# worker kills are done.
def _ray_case(root: Path, ray_cluster, name: str, task: str, argv, check) -> None:
    address, cluster_pid = ray_cluster
    ref_out, ref = reference(root, name, argv)
    driver_kills = (KILLS + 1) // 2
    case = _case(name, argv, lambda out: check(out, ref_out))
    s = survive_kills(case, ref, root / name, kills=driver_kills)
    assert s["kills"] >= driver_kills
    killed: list[int] = []
    out = root / name / "workers" / "out"
    r = run_cmd(argv(out, False), during=worker_killer(cluster_pid, task, KILLS - driver_kills,
                                                       seed=len(name), done=killed))
    assert r.rc == 0, r.stderr
    check(out, ref_out)
    check_no_partial(out, temporaries_allowed=False)  # the killed workers' are swept at the end
    assert len(killed) == KILLS - driver_kills, f"only {len(killed)} workers killed"
    REPORT.append(f"{name}: + {len(killed)} SIGKILLs of Ray workers busy with a task (retried "
                  "by Ray), the job checked equal to the uninterrupted one")


def test_batch_localize_on_ray_survives_kills(world, many_videos, trained, ray_cluster):
    root, _ = world
    manifest = root / "features-ray.txt"
    manifest.write_text(f"{many_videos}\n")

    def argv(out: Path, again: bool) -> list[str]:
        return acn("batch", "localize", "--manifest", manifest, "--run", trained[0], "--out",
                   out, "--ray", ray_cluster[0], "--num-cpus", "2", "--max-retries", "10",
                   "--no-progress")
    _ray_case(root, ray_cluster, "acn batch localize --ray", "acn-localize", argv,
              same_batch("localize", True))


def test_batch_extract_on_ray_survives_kills(world, videos, ray_cluster):
    root, _ = world

    def argv(out: Path, again: bool) -> list[str]:
        return acn("batch", "extract", "--manifest", root / "videos.txt", "--out", out,
                   "--ray", ray_cluster[0], "--num-cpus", "2", "--max-retries", "10",
                   *EXTRACT, "--no-progress")
    _ray_case(root, ray_cluster, "acn batch extract --ray", "acn-extract", argv,
              same_batch("extract", False))
