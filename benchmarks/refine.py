"""What ``acn refine`` adds to the CAS of each in-harness base model, per family member.

For each trained run of ``benchmarks/family.py`` (``OUT/runs/{tag}_{preset}{k}_s{seed}``),
the CAS of its base models (RGB, Flow, and their mean: three base models' outputs) on the
training and test videos go through

- CAS thresholding (:func:`acn.baselines.cas_detections`, the in-harness baseline), and
- ``acn refine`` (:class:`acn.refine.Refiner`: regression nets trained on the training
  videos' CAS, -L scoring; with and without the regression nets, and as shipped: the
  choices on carved training videos, as ``acn train`` makes them, and the regression check
  picks one of the two),

and the test-split mAP@0.5 / average mAP of each is written to
``OUT/refine/{tag}_{preset}{k}_s{seed}.json``; ``--table`` prints them as Markdown::

    python benchmarks/refine.py --preset thumos14 --members 0 2 4 6 --out /tmp/fam --tag v8
    python benchmarks/refine.py --out /tmp/fam --table

Another base model: ``--base-set KEY=VALUE`` trains only the base models (``acn train``'s base
stage, as a new user would: defaults plus these overrides) into ``OUT/runs/{tag}_...`` when
that run does not exist yet, e.g. the UntrimmedNet-style head of ``configs/paper.yaml``::

    python benchmarks/refine.py --members 6 --out /tmp/fam --tag v8u --base-set base.head=untrimmednet
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from family import dataset  # noqa: E402

from acn.ablation import choose_protocol  # noqa: E402
from acn.baselines import cas_detections  # noqa: E402
from acn.config import merge, parse_set, resolve  # noqa: E402
from acn.evaluate import evaluate  # noqa: E402
from acn.fileio import write_json  # noqa: E402
from acn.pipeline import ACN  # noqa: E402
from acn.refine import Refiner  # noqa: E402
from acn.selection import default_tious_for  # noqa: E402
from acn.train.base import load_base_checkpoint, predict_base  # noqa: E402
from acn.train.outputs import mean_outputs  # noqa: E402

SOURCES = ("rgb", "flow", "both")
COLUMNS = ("CAS thresholding", "refine (as shipped)", "refine", "refine, no regression")


def run_one(args, k: int, seed: int) -> dict:
    suffix = (f"_v{args.videos}" if args.videos else "") + (f"_d{args.dim}" if args.dim else "")
    name = f"{args.tag}_{args.preset}{k}{suffix}_s{seed}"
    target = args.out / "refine" / f"{name}.json"
    if target.is_file():
        return json.loads(target.read_text())
    run = args.out / "runs" / name
    ds = dataset(args.out, args.preset, k, args.videos, args.dim)
    ckpt = {s: run / "checkpoints" / f"{s}_base.pt" for s in ("rgb", "flow")}
    base_s = None
    if not all(p.is_file() for p in ckpt.values()):
        if not args.base_set:
            raise SystemExit(f"{run}: no trained run (run benchmarks/family.py, or pass "
                             "--base-set to train base models here)")
        t0 = time.perf_counter()
        ACN(resolve(None, [*args.base_set, f"seed={seed}"])).fit(ds, run, progress=False,
                                                                  stage="base")
        base_s = round(time.perf_counter() - t0, 1)
    ann = ds.annotations
    train = [v.id for v in ds.subset(ann.train_subset)]
    test = [v.id for v in ds.subset(ann.test_subset)]
    protocol, tious = choose_protocol(ds, ann.test_subset), default_tious_for(ds)
    outs = {s: predict_base(load_base_checkpoint(p)[0], ds, train + test, s)
            for s, p in ckpt.items()}
    run_cfg = resolve(run / "config.yaml")
    # the refiner starts from defaults, as `acn refine` does, plus the run's seed
    # (every key the run chose on its carved split is null again: the attention weight too,
    # which `acn refine` leaves off unless set, and the Lc source)
    cfg = merge(run_cfg, parse_set(["acn.anchors=null", "acn.regression=true",
                                      "localize.whole_video=null", "localize.nms_iou=null",
                                      "localize.rgb_weight=null", "acn.alpha=null",
                                      "localize.attention_weight=null", "acn.lc_features=null",
                                      "select.regression_check=true", *args.set]), "benchmark")
    res: dict = {}
    for src in SOURCES:
        cas = outs[src] if src != "both" else {v: mean_outputs(outs, v) for v in train + test}
        cas_train = {v: cas[v] for v in train}
        t0 = time.perf_counter()
        shipped = Refiner(merge(cfg, {}, ""))  # as `acn refine` runs: choices, then the check
        shipped.fit(ds, cas_train, progress=False)
        fit_s = time.perf_counter() - t0
        forced = Refiner(merge(cfg, parse_set(["select.regression_check=false"]), ""))
        forced.fit(ds, cas_train, progress=False)
        runs = {"CAS thresholding": cas_detections({v: cas[v] for v in test}, ds),
                "refine (as shipped)": shipped.localize(ds, cas, test, progress=False),
                "refine": forced.localize(ds, cas, test, progress=False)}
        forced.cfg["acn"]["regression"] = False
        runs["refine, no regression"] = forced.localize(ds, cas, test, progress=False)
        res[src] = {"fit_seconds": round(fit_s, 1),
                    "regression_check": shipped.log.get("regression_check") or {},
                    "chosen": shipped.log.get("scoring", {}).get("chosen")}
        for m, d in runs.items():
            r = evaluate(ann, d, ann.test_subset, protocol, tious=tious)
            key05 = min(r.tious, key=lambda t: abs(t - 0.5))
            res[src][m] = {"map05": 100 * r.map[key05], "avg": 100 * r.average}
        print(f"{name} {src}: " + ", ".join(
            f"{m} {v['map05']:.1f}/{v['avg']:.1f}" for m, v in res[src].items()
            if isinstance(v, dict) and "map05" in v), flush=True)
    out = {"tag": args.tag, "preset": args.preset, "member": k, "seed": seed,
           "protocol": protocol, "results": res, "set": args.set,
           "base_head": run_cfg["base"]["head"], "base_set": args.base_set,
           "base_train_seconds": base_s}
    write_json(target, out)
    return out


def table(out: Path) -> str:
    lines = ["| run (base head) | CAS of | " + " | ".join(COLUMNS) + " | as shipped - CAS | chosen: Lc "
             "weight, alpha, whole video, NMS; regression (bootstrap support) |",
             "|---|---|" + "---|" * (len(COLUMNS) + 2)]
    for p in sorted((out / "refine").glob("*.json")):
        r = json.loads(p.read_text())
        for src in SOURCES:
            v = r["results"][src]
            c, check = v.get("chosen") or {}, v.get("regression_check") or {}
            d05 = v["refine (as shipped)"]["map05"] - v["CAS thresholding"]["map05"]
            davg = v["refine (as shipped)"]["avg"] - v["CAS thresholding"]["avg"]
            lines.append(f"| {p.stem} ({r.get('base_head', 'topk_mil')}) | {src} | " + " | ".join(
                f"{v[m]['map05']:.1f} / {v[m]['avg']:.1f}" for m in COLUMNS)
                + f" | {d05:+.1f} / {davg:+.1f} | {c.get('rgb_weight')}, {c.get('alpha')}, "
                f"{c.get('whole_video')}, {c.get('nms_iou')}; {check.get('regression')} "
                f"({check.get('bootstrap_support', 0):.2f}) |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="thumos14")
    p.add_argument("--members", type=int, nargs="*", default=[0, 2, 4, 6])
    p.add_argument("--seeds", type=int, nargs="*", default=[0])
    p.add_argument("--out", type=Path, required=True, help="benchmarks/family.py's --out")
    p.add_argument("--tag", default="v8")
    p.add_argument("--set", action="append", default=[], help="refiner config override")
    p.add_argument("--base-set", action="append", default=[],
                   help="train base models with this override where OUT/runs has no run")
    p.add_argument("--videos", type=int, default=None)
    p.add_argument("--dim", type=int, default=None)
    p.add_argument("--table", action="store_true")
    args = p.parse_args()
    if args.table:
        print(table(args.out))
        return
    for k in args.members:
        for seed in args.seeds:
            run_one(args, k, seed)


if __name__ == "__main__":
    main()
