"""One writer per run folder: a second `acn train` (or `--resume`) on a folder a live process
holds fails at once naming that process; the lock of a killed process blocks nothing."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from acn.errors import AcnError
from acn.runlock import LOCK_NAME, RunLock

from faults.harness import env, run, train_argv

HOLD = ("import sys; from acn.runlock import RunLock; l = RunLock(); l.acquire(sys.argv[1]); "
        "print('held', flush=True); sys.stdin.read()")


def _holder(folder: Path) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_lock_is_exclusive_and_dies_with_its_process(tmp_path):
    p = _holder(tmp_path)
    try:
        with pytest.raises(AcnError, match=rf"{tmp_path}: another acn process \(pid {p.pid}\) "
                                           "is writing to this run folder"):
            RunLock().acquire(tmp_path)
    finally:
        p.kill()
        p.wait()
    assert (tmp_path / LOCK_NAME).is_file()  # left behind by the killed holder ...
    with RunLock() as lock:  # ... and no obstacle
        lock.acquire(tmp_path)
        lock.acquire(tmp_path)  # again: a no-op
    with RunLock() as lock:  # released at the end of the block
        lock.acquire(tmp_path)


@pytest.mark.parametrize("resume", [False, True])
def test_second_train_on_a_held_folder_fails_at_once(tmp_path, capsys, resume):
    from acn.cli import main

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text('{"data": "nowhere"}')
    p = _holder(run_dir)
    try:
        t0 = time.monotonic()
        argv = (["train", "--resume", str(run_dir)] if resume else
                ["train", "--data", str(tmp_path / "no-data"), "--out", str(run_dir)])
        assert main(argv) == 2
        assert time.monotonic() - t0 < 5
    finally:
        p.kill()
        p.wait()
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"acn: error: {run_dir}: another acn process (pid {p.pid}) is writing to "
                   "this run folder; wait for it to end (or stop it), then try again"]


@pytest.mark.slow
def test_two_real_trains_on_one_folder(tmp_path, world, trained):
    """Two `acn train` processes on one run folder: the second fails at once, the first is
    not disturbed and ends with the weights of an uninterrupted run."""
    from faults.test_kills import same_run

    root, data = world
    out = tmp_path / "run"
    argv = train_argv(data)
    first = subprocess.Popen(argv(out, False), env=env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, start_new_session=True)
    try:
        t0 = time.monotonic()
        while not (out / "run.json").is_file():  # it holds the lock from then on
            assert first.poll() is None and time.monotonic() - t0 < 120
            time.sleep(0.05)
        first.send_signal(signal.SIGSTOP)  # paused, still holding the lock: no race with its end
        try:
            for again in (False, True):
                r = run(argv(out, again))
                assert r.rc == 2 and f"another acn process (pid {first.pid})" in r.stderr, \
                    r.stderr
                assert r.seconds < 30
        finally:
            first.send_signal(signal.SIGCONT)
        _, err = first.communicate(timeout=300)
        assert first.returncode == 0, err
    finally:
        if first.poll() is None:
            first.send_signal(signal.SIGKILL)
            first.wait()
    same_run(out, trained[0])
