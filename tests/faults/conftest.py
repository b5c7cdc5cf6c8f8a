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
