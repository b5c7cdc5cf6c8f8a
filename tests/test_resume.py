"""Nothing lost on a crash: ``acn train`` SIGKILLed mid-way and resumed with ``--resume RUN``
ends with exactly the weights of an uninterrupted run with the same seed.

The regression stage resumes from its per-epoch state (weights, optimiser, epoch; the video
order of an epoch depends only on (seed, epoch)); a base model killed mid-training is trained
again from the start, which gives the same weights because its training is seeded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from acn.data.canonical import save_canonical

from conftest import FAST_SET, tiny_dataset

pytestmark = pytest.mark.slow

# Six regression epochs at a constant, large-ish learning rate, and no zero-initialised output
# layer: every epoch moves every weight, so a resume that replayed an epoch wrongly (order,
# optimiser state, learning rate) could not end on the same weights.
# select.regression_check off: on this tiny data the carved check may switch regression off,
# and the regression stage must train for the resume to be tested
SETS = FAST_SET + ["base.epochs=10", "train.epochs=6", "train.lr=0.01", "train.lr_decay=1.0",
                   "acn.zero_init=false", "select.regression_check=false"]
STREAMS = ("rgb", "flow")


def _env() -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    return env


def _train_argv(data: Path, run: Path) -> list[str]:
    sets = sum((["--set", s] for s in SETS), [])
    return [sys.executable, "-m", "acn", "train", "--data", str(data), "--out", str(run),
            "--seed", "3", "--quiet", *sets]


def _run(argv: list[str]) -> None:
    p = subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr


def _kill_when(argv: list[str], ready, timeout: float = 300) -> None:
    """Start ``argv``; SIGKILL it as soon as ``ready()`` holds (polled every 5 ms)."""
    p = subprocess.Popen(argv, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = time.monotonic()
    try:
        while not ready():
            if p.poll() is not None:
                pytest.fail(f"training ended (rc {p.returncode}) before the kill point: "
                            f"{p.stderr.read().decode()[-2000:]}")
            if time.monotonic() - t0 > timeout:
                pytest.fail("kill point never reached")
            time.sleep(0.005)
        os.kill(p.pid, signal.SIGKILL)
    finally:
        p.wait()
        p.stderr.close()
    assert p.returncode == -signal.SIGKILL


def _weights(run: Path) -> dict[str, dict[str, torch.Tensor]]:
    out = {}
    for s in STREAMS:
        out[f"{s}_base"] = torch.load(run / "checkpoints" / f"{s}_base.pt",
                                      weights_only=True)["state_dict"]
        out[f"{s}_regression"] = torch.load(run / "checkpoints" / f"{s}_regression.pt",
                                            weights_only=True)["state_dict"]
    return out


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    for part in wa:
        assert wa[part].keys() == wb[part].keys(), part
        for k in wa[part]:
            assert torch.equal(wa[part][k], wb[part][k]), f"{part}.{k} differs"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    ann, feats = tiny_dataset(n_train=24, n_test=6, seed=1)
    data = save_canonical(root / "data", ann, feats)
    reference = root / "reference"
    _run(_train_argv(data, reference))
    return root, data, reference


def test_kill_mid_regression_then_resume_gives_the_same_weights(setup):
    root, data, reference = setup
    run = root / "killed_in_regression"
    state = run / "checkpoints" / "flow_regression_state.pt"
    _kill_when(_train_argv(data, run), state.is_file)
    ck = run / "checkpoints"
    assert not (ck / "flow_regression.pt").exists(), "killed too late: flow regression finished"
    assert (ck / "rgb_regression.pt").is_file() and (ck / "flow_base.pt").is_file()
    saved = torch.load(state, weights_only=True)
    assert 1 <= saved["epoch"] < 6
    # no temporary file of an interrupted atomic write is ever taken for the real thing
    assert all(not p.name.endswith(".tmp") or p.name.startswith(".") for p in ck.iterdir())

    _run([sys.executable, "-m", "acn", "train", "--resume", str(run), "--quiet"])
    _assert_same_weights(run, reference)
    # the resumed epochs really trained: the weights moved after the kill
    final = torch.load(ck / "flow_regression.pt", weights_only=True)
    assert any(not torch.equal(saved["nets"][k], final["state_dict"][k]) for k in saved["nets"])
    log = json.loads((run / "train_log.json").read_text())
    assert [h["epoch"] for h in log["flow_regression"]["history"]] == [1, 2, 3, 4, 5, 6]
    ref_log = json.loads((reference / "train_log.json").read_text())
    assert log["flow_regression"]["history"] == ref_log["flow_regression"]["history"]

    # and the two runs localize identically
    preds = []
    for r in (reference, run):
        out = r / "pred.json"
        _run([sys.executable, "-m", "acn", "localize", "--run", str(r), "--data", str(data),
              "--out", str(out), "--quiet"])
        preds.append(json.loads(out.read_text())["results"])
    assert preds[0] == preds[1]


def test_kill_mid_base_training_then_resume_gives_the_same_weights(setup):
    """The base stage is not resumable mid-training: the stream restarts, deterministically."""
    root, data, reference = setup
    run = root / "killed_in_base"
    # Both base models train before the regression stage: right after the RGB base model is
    # saved, the Flow one is training.
    _kill_when(_train_argv(data, run), (run / "checkpoints" / "rgb_base.pt").is_file)
    ck = run / "checkpoints"
    assert not (ck / "flow_base.pt").exists(), "killed too late: flow base model finished"
    _run([sys.executable, "-m", "acn", "train", "--resume", str(run), "--quiet"])
    _assert_same_weights(run, reference)
