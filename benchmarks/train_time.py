"""Training time of ``acn train`` in two configurations, on the same machine at once.

Issue 17 bounds the cost of what it adds: training must stay within 4x of the default before
it on the ``thumos14`` preset. This trains the preset (family member 0, at ``--dim``) as a
new user would, ``acn train`` in fresh processes, once per configuration of the comparison
``--compare``, both at the same time (one torch thread each), so both see the same machine
load; it prints each wall time and the ratio (second / first), and writes them to
``OUT/train_time_{compare}.json``:

- ``second-stage``: the default, and the default with one second-stage round;
- ``background``: the default before the background class was chosen per dataset
  (``base.background=false``: one base-model variant trained on the carved split), and the
  default (both variants trained there);
- ``attention``: the default before the attention term (``select.attention_weights=[0.0]``:
  the carved grid without it), and the default (its weight chosen in that grid);
- ``before``: the default of another source tree (``--before-src``, e.g. a worktree of the
  commit before issue 17's work: the bound's reference), and this tree's default::

    python benchmarks/train_time.py --out /tmp/fam --dim 256 --compare background
    git worktree add /tmp/before 52f2e99^
    python benchmarks/train_time.py --out /tmp/fam --dim 256 --compare before --before-src /tmp/before
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

#: ``{comparison: {label: overrides}}``: the ratio is the second label's time over the first's.
COMPARISONS = {
    "second-stage": {"default": [], "second stage (1 round)": ["second_stage.rounds=1"]},
    "background": {"no background choice (before)": ["base.background=false"],
                   "default (background chosen)": []},
    "attention": {"no attention term (before)": ["select.attention_weights=[0.0]"],
                  "default (attention weight chosen)": []},
    "before": {"default of --before-src": [], "default": []},
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], help="applied to both")
    p.add_argument("--compare", choices=sorted(COMPARISONS), default="second-stage")
    p.add_argument("--before-src", type=Path, default=None,
                   help="--compare before: the source tree whose src/ trains the first")
    args = p.parse_args()
    configs = COMPARISONS[args.compare]
    if (args.compare == "before") != (args.before_src is not None):
        p.error("--before-src goes with --compare before (and it needs one)")
    if args.before_src is not None and not (args.before_src / "src" / "acn").is_dir():
        p.error(f"--before-src {args.before_src}: no src/acn there")
    ds = dataset(args.out, "thumos14", 0, None, args.dim)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs = {}
    for i, (name, sets) in enumerate(configs.items()):
        run = args.out / "train_time" / f"{args.compare}_{i}"
        over = [a for s in [*args.set, *sets, f"seed={args.seed}"] for a in ("--set", s)]
        cmd = [sys.executable, "-m", "acn", "train", "--data", str(ds.root), "--out", str(run),
               "--quiet", *over]
        shutil.rmtree(run, ignore_errors=True)  # a fresh run, not a resumed one
        env_i = ({**env, "PYTHONPATH": str((args.before_src / "src").resolve())}
                 if args.before_src is not None and i == 0 else env)
        procs[name] = (subprocess.Popen(cmd, env=env_i, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True), time.perf_counter())
    seconds = {}
    for name, (proc, t0) in procs.items():
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"{name}: acn train failed:\n{err[-2000:]}")
        seconds[name] = round(time.perf_counter() - t0, 1)
    first, second = configs
    ratio = seconds[second] / seconds[first]
    res = {"compare": args.compare, "dim": args.dim, "seed": args.seed, "seconds": seconds,
           "ratio": round(ratio, 2), "cpus": os.cpu_count(), "set": args.set,
           "before_src": str(args.before_src) if args.before_src else None}
    (args.out / f"train_time_{args.compare}.json").write_text(json.dumps(res, indent=1))
    for name, s in seconds.items():
        print(f"{name}: {s:.0f} s")
    print(f"ratio: {ratio:.2f}x (issue 17's bound: 4x)")


if __name__ == "__main__":
    main()
