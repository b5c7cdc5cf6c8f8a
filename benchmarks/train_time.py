"""Training time of ``acn train`` with and without the second stage, on the same machine at once.

Issue 17 bounds the second stage's cost: training must stay within 4x of the default on the
``thumos14`` preset. This trains the preset (family member 0, at ``--dim``) as a new user
would, ``acn train`` in fresh processes, once per configuration, both at the same time (one
torch thread each), so both see the same machine load; it prints each wall time and the
ratio, and writes them to ``OUT/train_time.json``::

    python benchmarks/train_time.py --out /tmp/fam --dim 256
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from family import dataset  # noqa: E402

CONFIGS = {"default": [], "second stage (1 round)": ["second_stage.rounds=1"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], help="applied to both")
    args = p.parse_args()
    ds = dataset(args.out, "thumos14", 0, None, args.dim)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs = {}
    for name, sets in CONFIGS.items():
        run = args.out / "train_time" / name.split()[0]
        over = [a for s in [*args.set, *sets, f"seed={args.seed}"] for a in ("--set", s)]
        cmd = [sys.executable, "-m", "acn", "train", "--data", str(ds.root), "--out", str(run),
               "--quiet", *over]
        shutil.rmtree(run, ignore_errors=True)  # a fresh run, not a resumed one
        procs[name] = (subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True), time.perf_counter())
    seconds = {}
    for name, (proc, t0) in procs.items():
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"{name}: acn train failed:\n{err[-2000:]}")
        seconds[name] = round(time.perf_counter() - t0, 1)
    ratio = seconds["second stage (1 round)"] / seconds["default"]
    res = {"dim": args.dim, "seed": args.seed, "seconds": seconds, "ratio": round(ratio, 2),
           "cpus": os.cpu_count(), "set": args.set}
    (args.out / "train_time.json").write_text(json.dumps(res, indent=1))
    for name, s in seconds.items():
        print(f"{name}: {s:.0f} s")
    print(f"ratio: {ratio:.2f}x (issue 17's bound: 4x)")


if __name__ == "__main__":
    main()
