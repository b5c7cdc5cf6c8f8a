"""Shared fixtures of the fault suite (a 1024-d dataset, a run trained on it, short videos),
and the kill counts printed at the end of the session (CI's log keeps them)."""

from __future__ import annotations

import pytest

from faults.harness import REPORT, reference, train_argv


def pytest_terminal_summary(terminalreporter):
    if REPORT:
        terminalreporter.section("faults: kills survived per command")
        for line in REPORT:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """A dataset of 1024-d features (I3D's width, so `acn localize --video` works on a run
    trained on it): 12 training and 4 test videos, canonical layout."""
    from acn.data.canonical import save_canonical

    from conftest import tiny_dataset

    root = tmp_path_factory.mktemp("faults")
    ann, feats = tiny_dataset(n_train=12, n_test=4, dim=1024, seed=1)
    data = save_canonical(root / "data", ann, feats)
    return root, data


@pytest.fixture(scope="session")
def many_videos(world):
    """A second, larger feature folder (48 videos) for `acn batch localize --ray`: its tasks
    take ~0.1 s on a warm worker, and 16 of them could end before the worker kills landed."""
    from acn.data.canonical import save_canonical

    from conftest import tiny_dataset

    ann, feats = tiny_dataset(n_train=8, n_test=40, dim=1024, seed=2)
    return save_canonical(world[0] / "data-many", ann, feats)


@pytest.fixture(scope="session")
def trained(world):
    """``(run, Reference)``: an uninterrupted `acn train` (measured: seconds, fault points)."""
    root, data = world
    return reference(root, "train", train_argv(data))


@pytest.fixture(scope="session")
def videos(world):
    """Three short videos (1.4, 2.0, 1.0 s) in one folder; ``ROOT/videos.txt`` lists it."""
    pytest.importorskip("av")
    pytest.importorskip("cv2")
    from test_extract import make_video

    d = world[0] / "videos"
    d.mkdir()
    for i, seconds in enumerate((1.4, 2.0, 1.0)):
        make_video(d / f"clip{i}.mp4", fps=25, seconds=seconds)
    (world[0] / "videos.txt").write_text(f"{d}\n")
    return d


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """``(address, pid)``: a local Ray cluster (2 CPUs) that `acn batch --ray ADDRESS` drivers
    join, started by a helper process that shuts it down when its stdin closes."""
    import subprocess
    import sys

    from faults.harness import env, reap_group

    pytest.importorskip("ray")
    code = ("import sys, ray\n"
            "ctx = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, "
            "configure_logging=False)\n"
            "print(ctx.address_info['gcs_address'], flush=True)\n"
            "sys.stdin.read()\n"
            "ray.shutdown()\n")
    p = subprocess.Popen([sys.executable, "-c", code], env=env(), stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         start_new_session=True)
    address = p.stdout.readline().strip()
    if not address:
        p.kill()
        pytest.skip("could not start a local Ray cluster")
    yield address, p.pid
    p.stdin.close()
    try:
        p.wait(timeout=60)
    finally:
        reap_group(p.pid)
