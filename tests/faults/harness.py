"""The fault harness: run ``acn`` commands as subprocesses, kill them at seeded random points,
and check what they leave behind.

A kill point is either a moment (uniform over the uninterrupted run's measured duration) or a
write: ``ACN_FAULT_AT=k`` makes the command SIGKILL itself at its k-th fault point inside
:func:`acn.fileio.write_bytes` (before a file, half-way through its data, before and after the
rename), k uniform over the points an uninterrupted run passes (``ACN_FAULT_TRACE``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

KILLS = int(os.environ.get("ACN_FAULT_KILLS", "10"))  # kills per command
SEED = int(os.environ.get("ACN_FAULT_SEED", "0"))
# What each kill loop did, printed at the end of the session (tests/faults/conftest.py).
REPORT: list[str] = []
_REPORT_LOCK = threading.Lock()

# The files acn writes and how to read each one completely.
PNG_END = b"IEND\xaeB`\x82"


def env(**extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items()
         if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT",
                      "ACN_FAULT_AT", "ACN_FAULT_TRACE", "RAY_ADDRESS")}
    e.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0",
             RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    e.update(extra)
    return e


def acn(*args) -> list[str]:
    return [sys.executable, "-m", "acn", *map(str, args)]


@dataclass
class Result:
    rc: int
    stderr: str
    seconds: float

    @property
    def killed(self) -> bool:
        return self.rc == -signal.SIGKILL


def _group_members(pgid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid:  # fields after "(comm)": state, ppid, pgrp, ...
            out.append(int(d.name))
    return out


def reap_group(pgid: int) -> None:
    """SIGKILL what is left of a command's process group (it was started as a new session,
    so the group holds only its own children: a pool worker, Ray processes)."""
    for pid in _group_members(pgid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def default_sigint() -> None:
    """``preexec_fn`` for a child that must answer Ctrl-C: a shell starts background jobs
    (``cmd &``, so also a CI script run that way) with SIGINT ignored, the child would inherit
    that, and Python then installs no KeyboardInterrupt handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run(argv: list[str], extra_env: dict | None = None, signal_after: float | None = None,
        sig: int = signal.SIGKILL, timeout: float = 300,
        during: Callable[[subprocess.Popen], None] | None = None) -> Result:
    """Run ``argv``; with ``signal_after`` send it ``sig`` after that many seconds (if it is
    still running). ``during(proc)`` runs in a thread while the command runs."""
    t0 = time.monotonic()
    p = subprocess.Popen(argv, env=env(**(extra_env or {})), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, start_new_session=True,
                         preexec_fn=default_sigint)
    side = None
    if during is not None:
        side = threading.Thread(target=during, args=(p,), daemon=True)
        side.start()
    try:
        try:
            _, err = p.communicate(timeout=timeout if signal_after is None else signal_after)
        except subprocess.TimeoutExpired:
            if signal_after is None:
                p.kill()
                p.communicate()
                raise
            try:
                os.kill(p.pid, sig)
            except ProcessLookupError:
                pass
            _, err = p.communicate(timeout=timeout)
    finally:
        if side is not None:
            side.join(timeout=30)
        reap_group(p.pid)
    return Result(p.returncode, err.decode("utf-8", "replace"), time.monotonic() - t0)


def measure(argv: list[str], trace: Path) -> tuple[float, int, Result]:
    """An uninterrupted run: its duration and how many fault points it passes."""
    trace.unlink(missing_ok=True)
    r = run(argv, {"ACN_FAULT_TRACE": str(trace)})
    assert r.rc == 0, r.stderr
    points = len(trace.read_text().splitlines()) if trace.is_file() else 0
    return r.seconds, points, r


# -- what a kill may leave behind ---------------------------------------------------------------
def read_completely(p: Path) -> None:
    """Read ``p`` as the file type its name says; raises if it is incomplete or corrupt."""
    import torch
    import yaml

    from acn.fileio import CHECKSUM_SUFFIX, recorded_checksums, verify_checksum

    name = p.name
    if name.endswith(CHECKSUM_SUFFIX):
        assert recorded_checksums(p), f"{p}: sidecar without a digest"
        return
    verify_checksum(p)
    if name.endswith(".json"):
        json.loads(p.read_text(encoding="utf-8"))
    elif name.endswith(".yaml"):
        yaml.safe_load(p.read_text(encoding="utf-8"))
    elif name.endswith(".npy"):
        np.load(p, allow_pickle=False)
    elif name.endswith(".npz"):
        with np.load(p, allow_pickle=False) as z:
            for k in z.files:
                z[k]
    elif name.endswith(".pt"):
        torch.load(p, map_location="cpu", weights_only=True)
    elif name.endswith(".png"):
        data = p.read_bytes()
        assert data[:4] == b"\x89PNG" and data.endswith(PNG_END), f"{p}: partial PNG"
    elif name.endswith(".txt"):
        p.read_text(encoding="utf-8")
    else:
        raise AssertionError(f"{p}: a file acn does not write")


def check_no_partial(root: Path, temporaries_allowed: bool = True) -> int:
    """Every file under ``root`` with a final name is complete (and matches its checksum);
    hidden names are only the run lock and temporaries (none at all without
    ``temporaries_allowed``). Returns how many files were read."""
    n = 0
    if not root.exists():
        return 0
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        hidden = [part for part in rel.parts if part.startswith(".")]
        if hidden:
            ok = hidden == [".acn.lock"] or (temporaries_allowed and hidden[0].endswith(".tmp"))
            assert ok, f"{p}: unexpected hidden file (a temporary left behind?)"
            continue
        if p.is_file():
            read_completely(p)
            n += 1
    return n


# -- the kill loop ------------------------------------------------------------------------------
@dataclass
class Reference:
    seconds: float
    points: int


@dataclass
class Case:
    """One command under test. ``argv(out, again)`` is its command line into ``out`` (``again``:
    the rerun after a kill, e.g. ``--resume``); ``check(out)`` compares a finished ``out`` with
    the uninterrupted run; ``written(out)`` is the folder whose files are checked after a kill."""

    name: str
    argv: Callable[[Path, bool], list[str]]
    check: Callable[[Path], None]
    written: Callable[[Path], Path]
    started: Callable[[Path], bool] = lambda out: out.exists()
    during: Callable[[subprocess.Popen], None] | None = None
    stats: dict = field(default_factory=lambda: {"kills": 0, "at_write": 0, "timed": 0,
                                                 "finished": 0})


def kill_chain(case: Case, ref: Reference, root: Path, kills: int, rng: np.random.Generator,
               max_attempts: int | None = None) -> None:
    """Kill ``case`` ``kills`` times at random points, each time running it again on what the
    killed run left (resuming); whenever a run gets to its end before its kill point, its
    output is checked and the next attempt starts afresh. After the last kill the command runs
    to the end and its output must equal the uninterrupted run's."""
    k = 0
    out = root / "c0" / "out"
    max_attempts = max_attempts or 4 * kills + 8
    for attempt in range(max_attempts):
        if k >= kills:
            break
        again = case.started(out)
        if rng.random() < 0.5 and ref.points:
            at = int(rng.integers(1, ref.points + 1))
            r = run(case.argv(out, again), {"ACN_FAULT_AT": str(at)}, during=case.during)
            how = f"at fault point {at}"
        else:
            delay = float(rng.uniform(0.0, ref.seconds))
            r = run(case.argv(out, again), signal_after=delay, during=case.during)
            how = f"after {delay:.2f} s"
        if r.killed:
            k += 1
            with _REPORT_LOCK:
                case.stats["kills"] += 1
                case.stats["at_write" if how.startswith("at") else "timed"] += 1
            try:
                check_no_partial(case.written(out))
            except AssertionError as e:
                raise AssertionError(f"{case.name}: after the kill {how}: {e}") from None
            continue
        assert r.rc == 0, f"{case.name}: the run after a kill failed (rc {r.rc}): {r.stderr}"
        case.check(out)
        with _REPORT_LOCK:
            case.stats["finished"] += 1
        out = root / f"c{attempt + 1}" / "out"  # the next kills start from scratch
    assert k >= kills, f"{case.name}: only {k} of {kills} kills landed in {max_attempts} tries"
    r = run(case.argv(out, case.started(out)))
    assert r.rc == 0, f"{case.name}: the final run after the kills failed: {r.stderr}"
    case.check(out)
    # and the temporaries the killed runs left are gone (removed by the runs after them)
    check_no_partial(case.written(out), temporaries_allowed=False)
    with _REPORT_LOCK:
        case.stats["finished"] += 1


def survive_kills(case: Case, ref: Reference, root: Path, kills: int = KILLS,
                  chains: int = 2, seed: int = SEED) -> dict:
    """:func:`kill_chain` in ``chains`` parallel chains (the commands are single-threaded;
    CI has 2 cores) sharing ``kills`` between them; reports the counts."""
    share = [kills // chains + (i < kills % chains) for i in range(chains)]
    errors: list[BaseException] = []

    def one(i: int) -> None:
        rng = np.random.default_rng([seed, i, sum(map(ord, case.name))])
        try:
            kill_chain(case, ref, root / f"chain{i}", share[i], rng)
        except BaseException as e:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(chains) if share[i]]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    s = case.stats
    with _REPORT_LOCK:
        REPORT.append(f"{case.name}: {s['kills']} SIGKILLs survived ({s['at_write']} inside "
                      f"writes, {s['timed']} at random moments), {s['finished']} runs checked "
                      f"equal to the uninterrupted one, {time.monotonic() - t0:.0f} s")
    return s


# -- the commands' settings ---------------------------------------------------------------------
# Every regression epoch moves every weight (constant learning rate, no zero-initialised
# output layer), so a resume that replayed an epoch wrongly could not end on the same weights.
TRAIN_SETS = ["base.epochs=6", "base.hidden=32", "base.batch_size=4", "base.dropout=0.2",
              "acn.anchors=[2, 4, 8]", "acn.filters=16", "acn.alpha=0.8",
              "train.optimizer=adam", "train.epochs=3", "train.lr=0.01", "train.lr_decay=1.0",
              "acn.zero_init=false", "select.regression_check=false"]
# I3D with random weights on 32x32 crops, fast flow (the features are meaningless but
# deterministic, which is what resuming needs)
VIDEO = ["--random-weights", "--flow", "dis", "--resize", "40", "--crop", "32"]
EXTRACT = VIDEO + ["--batch-size", "2"]


def train_argv(data: Path):
    sets = sum((["--set", s] for s in TRAIN_SETS), [])

    def argv(out: Path, again: bool) -> list[str]:
        if again:
            return acn("train", "--resume", out, "--quiet")
        return acn("train", "--data", data, "--out", out, "--seed", "3", "--quiet", *sets)
    return argv


def reference(root: Path, name: str, argv) -> tuple[Path, Reference]:
    """An uninterrupted run of ``argv`` into ``root/ref-NAME/out``, measured."""
    out = root / f"ref-{name}" / "out"
    seconds, points, _ = measure(argv(out, False), root / f"trace-{name}.txt")
    return out, Reference(seconds, points)


# -- Ray ------------------------------------------------------------------------------------------
def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, command line) of every process."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        out[int(d.name)] = (int(stat.rsplit(")", 1)[1].split()[1]), cmd.strip())
    return out


def busy_workers(cluster_pid: int, task: str) -> list[int]:
    """The Ray worker processes of the test's own cluster (descendants of ``cluster_pid``)
    running a task named ``task`` right now (Ray sets their title to ``ray::TASK``)."""
    procs = _processes()

    def ours(pid: int) -> bool:
        for _ in range(64):
            if pid == cluster_pid:
                return True
            if pid not in procs or pid <= 1:
                return False
            pid = procs[pid][0]
        return False

    return sorted(pid for pid, (_, cmd) in procs.items()
                  if cmd.startswith(f"ray::{task}") and ours(pid))


def worker_killer(cluster_pid: int, task: str, kills: int, seed: int, done: list):
    """A ``during`` hook: SIGKILL up to ``kills`` Ray workers, one after the other, each a
    seeded random moment (0-0.3 s) after it was seen busy with ``task``; Ray retries the task
    on a new worker. Appends the pid of each killed worker to ``done``. A task that ends before
    its kill halves the next range (tasks on a warm worker are short, and the job must not end
    before all kills landed)."""
    rng = np.random.default_rng([seed, 7])

    def during(p: subprocess.Popen) -> None:
        misses = 0
        while p.poll() is None and len(done) < kills:
            pids = busy_workers(cluster_pid, task)
            if not pids:
                time.sleep(0.005)
                continue
            time.sleep(float(rng.uniform(0.0, 0.3)) * 0.5 ** misses)
            if pids[0] not in busy_workers(cluster_pid, task):
                misses += 1
                continue
            try:
                os.kill(pids[0], signal.SIGKILL)
                done.append(pids[0])
                misses = 0
            except ProcessLookupError:
                misses += 1
    return during
