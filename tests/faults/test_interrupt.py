"""Ctrl-C (SIGINT) exits cleanly: exit code 130, one line (`acn: interrupted`), no partial
output and no temporary file left (the interrupted write removes its own)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest

from faults.harness import (
    EXTRACT,
    SEED,
    acn,
    check_no_partial,
    measure,
    run,
    train_argv,
)

pytestmark = pytest.mark.slow


def _interrupted_cleanly(r, out: Path) -> bool:
    """True if ``r`` was interrupted (and did so cleanly); False if it had finished first:
    exit 0, or killed by the SIGINT without a word while the interpreter shuts down (Python
    restores the default SIGINT action then), its work done."""
    lines = [ln for ln in r.stderr.splitlines() if not ln.startswith(("acn: warning",
                                                                       "acn extract: warning",
                                                                       "acn batch"))]
    check_no_partial(out, temporaries_allowed=False)
    if r.rc == 0 or (r.rc == -signal.SIGINT and not lines):
        return False
    assert r.rc == 130 and lines == ["acn: interrupted"], (r.rc, r.stderr)
    return True


def test_ctrl_c_during_localize(tmp_path, world, trained):
    """SIGINT at seeded random moments and inside the results file's write."""
    root, data = world
    run_dir, _ = trained

    def argv(out: Path) -> list[str]:
        return acn("localize", "--run", run_dir, "--data", data, "--out", out / "pred.json",
                   "--quiet")
    seconds, points, _ = measure(argv(tmp_path / "ref"), tmp_path / "trace.txt")
    ref = json.loads((tmp_path / "ref" / "pred.json").read_text())
    rng = np.random.default_rng([SEED, 130])
    interrupted = 0
    for i in range(6):
        out = tmp_path / f"i{i}"
        if i % 2:
            r = run(argv(out), {"ACN_FAULT_AT": f"{int(rng.integers(1, points + 1))}:SIGINT"})
        else:  # after Python is up: a SIGINT in its first instants is Python's own business
            r = run(argv(out), signal_after=float(rng.uniform(0.3, seconds)),
                    sig=signal.SIGINT)
        if _interrupted_cleanly(r, out):
            interrupted += 1
        else:
            assert (out / "pred.json").is_file(), r.stderr
        if (out / "pred.json").exists():  # interrupted after the rename, or finished
            assert json.loads((out / "pred.json").read_text()) == ref
    assert interrupted >= 4


@pytest.mark.parametrize("command", ["train", "extract", "batch localize"])
def test_ctrl_c_inside_a_write(tmp_path, world, trained, videos, command):
    """Each long command, interrupted half-way through one of its files."""
    root, data = world
    run_dir, _ = trained
    out = tmp_path / "out"
    manifest = tmp_path / "m.txt"
    manifest.write_text(f"{data}\n")
    argv = {
        "train": train_argv(data)(out, False),
        "extract": acn("extract", videos, "--out", out, *EXTRACT, "--no-progress"),
        "batch localize": acn("batch", "localize", "--manifest", manifest, "--run", run_dir,
                              "--out", out, "--local", "--no-progress"),
    }[command]
    # the 5th fault point: half-way through the 2nd file (or its checksum)
    r = run(argv, {"ACN_FAULT_AT": "5:SIGINT"})
    assert _interrupted_cleanly(r, out), r.stderr
