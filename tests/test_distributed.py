"""Multi-process training: the acn.distributed helpers, and torchrun with 2 CPU processes
(gloo) against one process on the tiny planted dataset."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from acn.train import distributed as dist

from conftest import FAST_SET, tiny_dataset


def test_helpers_are_noops_in_one_process(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    assert dist.init_from_env() is False
    assert (dist.rank(), dist.world_size(), dist.is_main(), dist.is_distributed()) == \
        (0, 1, True, False)
    assert dist.shard([3, 1, 2]) == [3, 1, 2]
    assert dist.all_reduce([1, 2.5]) == [1.0, 2.5]
    lin = torch.nn.Linear(3, 2)
    lin(torch.ones(1, 3)).sum().backward()
    before = lin.weight.grad.clone()
    assert dist.all_reduce_gradients(lin.parameters(), [4.0]) == [4.0]
    assert torch.equal(lin.weight.grad, before)
    assert dist.all_gather_dict({"a": 1}) == {"a": 1}
    dist.barrier()  # no group: returns at once
    # a launcher's environment with one rank is still "not distributed"
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    assert dist.launched() is False and dist.init_from_env() is False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gradient_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    assert dist.init_from_env(backend="gloo")
    torch.manual_seed(rank)  # different weights on purpose: broadcast must fix them
    net = torch.nn.ModuleDict({"a": torch.nn.Linear(2, 1), "b": torch.nn.Linear(2, 1),
                               "c": torch.nn.Linear(2, 1)})
    dist.broadcast_parameters(net)
    x = torch.full((1, 2), float(rank + 1))
    y = net["a"](x).sum()
    if rank == 1:
        y = y + net["b"](x).sum()  # only rank 1 touches "b"; nobody touches "c"
    y.backward()
    (extra,) = dist.all_reduce_gradients(net.parameters(), [rank + 1.0])
    res = {"extra": extra, "a": net["a"].weight.grad.tolist(),
           "b": net["b"].weight.grad.tolist(), "c": net["c"].weight.grad is None,
           "w": net["a"].weight.tolist(), "shard": dist.shard(list(range(5))),
           "gather": dist.all_gather_dict({f"r{rank}": rank})}
    Path(out, f"{rank}.json").write_text(json.dumps(res))
    dist.cleanup()


def test_gradient_all_reduce_across_two_processes(tmp_path):
    torch.multiprocessing.spawn(_gradient_worker, args=(2, _free_port(), str(tmp_path)),
                                nprocs=2, join=True)
    r0, r1 = (json.loads((tmp_path / f"{r}.json").read_text()) for r in (0, 1))
    assert r0["extra"] == r1["extra"] == 3.0
    assert r0["a"] == r1["a"] == [[3.0, 3.0]]          # x = 1 on rank 0, 2 on rank 1: summed
    assert r0["b"] == r1["b"] == [[2.0, 2.0]]          # zeros from rank 0 + rank 1's gradient
    assert r0["c"] and r1["c"]                         # no rank had one: stays None
    assert r0["w"] == r1["w"]                          # rank 0's initial weights everywhere
    assert (r0["shard"], r1["shard"]) == ([0, 2, 4], [1, 3])
    assert r0["gather"] == r1["gather"] == {"r0": 0, "r1": 1}


# -- torchrun end to end ------------------------------------------------------------------------
# no dropout: exact comparison; one second-stage round: its pseudo-labels and the base models
# trained again on them must match across ranks too
SETTINGS = [*FAST_SET, "base.dropout=0.0", "second_stage.rounds=1"]


def _train(cmd: list[str], data: Path, run: Path) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    sets = [a for s in SETTINGS for a in ("--set", s)]
    p = subprocess.run([*cmd, "train", "--data", str(data), "--out", str(run), *sets, "--quiet"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def _map(run: Path, data: Path) -> dict[float, float]:
    from acn.data.open import open_dataset
    from acn.evaluate import evaluate
    from acn.pipeline import ACN

    ds = open_dataset(data)
    model = ACN.load(run)
    ids = [v.id for v in ds.subset("test")]
    dets = model.localize(ds, ids, ["fused"], progress=False)["fused"]
    return evaluate(ds.annotations, dets, "test", "activitynet", tious=[0.3, 0.5]).map


@pytest.mark.slow
def test_torchrun_two_processes_match_one_process(tmp_path):
    from acn.data.canonical import save_canonical

    ann, feats = tiny_dataset()
    data = tmp_path / "data"
    save_canonical(data, ann, feats)
    one = _train([sys.executable, "-m", "acn"], data, tmp_path / "one")
    two = _train([sys.executable, "-m", "torch.distributed.run", "--standalone",
                  "--nproc_per_node", "2", "-m", "acn"], data, tmp_path / "two")
    assert one.count("trained in") == two.count("trained in") == 1  # rank 0 alone prints
    assert "(2 processes)" in two
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == \
        sorted(p.name for p in (tmp_path / "one").iterdir())
    assert not list((tmp_path / "two").rglob("*.tmp"))
    a, b = (json.loads((tmp_path / r / "train_log.json").read_text()) for r in ("one", "two"))
    assert b["rgb_base"]["processes"] == 2
    assert b["second_stage"]["round_1"] == a["second_stage"]["round_1"]
    assert (tmp_path / "two" / "checkpoints" / "rgb_base_round0.pt").is_file()
    for s in ("rgb", "flow"):
        # the same loss curve: same videos in each global batch, averaged gradients
        np.testing.assert_allclose(b[f"{s}_base"]["losses"], a[f"{s}_base"]["losses"],
                                   rtol=1e-4, atol=1e-5)
        ha, hb = a[f"{s}_regression"]["history"], b[f"{s}_regression"]["history"]
        assert [h["batches_with_proposals"] for h in hb] == \
            [h["batches_with_proposals"] for h in ha]
        np.testing.assert_allclose([h["loss"] for h in hb], [h["loss"] for h in ha],
                                   rtol=1e-3, atol=1e-4)
    m1, m2 = _map(tmp_path / "one", data), _map(tmp_path / "two", data)
    assert m1[0.3] > 0.25  # the planted actions are found: the comparison is not of zeros
    for t in (0.3, 0.5):
        assert abs(m1[t] - m2[t]) <= 0.005, (t, m1, m2)
