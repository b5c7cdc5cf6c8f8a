"""Accuracy over the family of synthetic datasets (``acn synth --preset P --member K``).

One generator setting is one dataset, and a default tuned on one failed on held-out features.
This script trains and evaluates a configuration on several members and seeds, the way a new
user runs acn (train on the training subset, localize the test subset), beside the in-harness
baselines of the same base models:

* ACN fused / Flow / RGB (``localize.stream``);
* CAS thresholding of the base models' SCP: RGB, Flow, both (equal mean), and both again on
  ACN's own candidates with its sub-snippet boundaries ("CAS both sub", :data:`CONTRAST_ONLY`);
* the whole video as one detection of each predicted class (both streams' video scores).

    python benchmarks/family.py --preset thumos14 --members 0 2 4 6 --seeds 0 1 2 \\
        --out family/ --tag default [--set key=value ...] [--config NAME]

Each (tag, member, seed) writes ``OUT/results/{tag}_{preset}{member}_s{seed}.json`` and is
skipped when that file exists (rerun to resume); datasets are generated once under
``OUT/data``. ``--table`` prints the collected results as Markdown (mean over seeds, per
member, then mean and worst member). Reads the test subset for the final figures only: use
the selection members to choose, the held-out ones to report.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np

from acn.ablation import choose_protocol
from acn.baselines import cas_detections, whole_video_detections
from acn.config import resolve
from acn.data.open import open_dataset
from acn.data.synth import write_synth
from acn.data.synth_family import member
from acn.evaluate import evaluate
from acn.fileio import write_json
from acn.pipeline import ACN, mean_outputs
from acn.selection import default_tious_for

ROWS = ("ACN fused", "ACN flow", "ACN rgb", "CAS both", "CAS both sub", "CAS both sub +att",
        "CAS flow", "CAS rgb", "whole video")
BASELINES = ("CAS both", "CAS both sub", "CAS both sub +att", "CAS flow", "CAS rgb",
             "whole video")

#: "CAS both sub": CAS thresholding on the very candidates ACN scores (its levels, boundaries
#: inside snippets, ``acn.cas_subsnippet``) of the equal-mean CAS, ranked by the outer-inner
#: contrast alone (alpha 1, no video-score or attention term, no SCP filter, no regression,
#: NMS 0.4, as "CAS both"): the in-harness baseline with ACN's boundaries, so that what ACN's
#: -L scoring adds is measured apart from what the sub-snippet boundaries add (ACN's valley
#: term is off there too). "CAS both sub
#: +att" is that row with the attention term (and its candidates) at the weight ACN chose:
#: what the contrast gains from the attention alone, without the rest of ACN's scoring.
CONTRAST_ONLY = {("acn", "alpha"): 1.0, ("acn", "regression"): False,
                 ("acn", "scp_threshold"): 0.0, ("localize", "video_score_weight"): 0.0,
                 ("localize", "rgb_weight"): 0.5, ("localize", "whole_video"): "off",
                 ("localize", "nms_iou"): 0.4, ("localize", "attention_weight"): 0.0,
                 ("localize", "valley"): "off"}


def contrast_baseline(model: ACN, ds, ids: list[str], attention: bool = False) -> dict:
    """Detections of the "CAS both sub" baseline (see :data:`CONTRAST_ONLY`), in seconds;
    with ``attention``, "CAS both sub +att" (the attention term at the model's weight)."""
    saved = copy.deepcopy(model.cfg)
    try:
        for (sec, key), value in CONTRAST_ONLY.items():
            if not (attention and key == "attention_weight"):
                model.cfg[sec][key] = value
        return model.localize(ds, ids, ["fused"], progress=False)["fused"]
    finally:
        model.cfg = saved


def dataset(out: Path, preset: str, k: int, videos: int | None, dim: int | None):
    m = member(preset, k)
    d = out / "data" / (f"{preset}{k}" + (f"_v{videos}" if videos else "")
                        + (f"_d{dim}" if dim else ""))
    if not (d / "index.json").is_file():
        write_synth(d, preset=preset, videos=videos, dim=dim, seed=0, member=m.index)
    return open_dataset(d)


def run_one(args, k: int, seed: int) -> dict:
    name = (f"{args.tag}_{args.preset}{k}" + (f"_v{args.videos}" if args.videos else "")
            + (f"_d{args.dim}" if args.dim else "") + f"_s{seed}")
    target = args.out / "results" / f"{name}.json"
    if target.is_file():
        return json.loads(target.read_text())
    ds = dataset(args.out, args.preset, k, args.videos, args.dim)
    cfg = resolve(args.config, [*args.set, f"seed={seed}"])
    test = ds.annotations.test_subset
    ids = [v.id for v in ds.subset(test)]
    protocol = choose_protocol(ds, test)
    tious = default_tious_for(ds)
    t0 = time.perf_counter()
    model = ACN(cfg)
    model.fit(ds, args.out / "runs" / name, progress=False)
    train_s = time.perf_counter() - t0
    dets = model.localize(ds, ids, ["fused", "flow", "rgb"], progress=False, keep_outputs=True)
    outs = model.last_outputs
    both = {v: mean_outputs(outs, v) for v in ids}
    runs = {"ACN fused": dets["fused"], "ACN flow": dets["flow"], "ACN rgb": dets["rgb"],
            "CAS both": cas_detections(both, ds), "CAS both sub": contrast_baseline(model, ds, ids),
            "CAS both sub +att": contrast_baseline(model, ds, ids, attention=True),
            "CAS flow": cas_detections(outs["flow"], ds),
            "CAS rgb": cas_detections(outs["rgb"], ds),
            "whole video": whole_video_detections(both, ds)}
    res = {}
    for name, d in runs.items():
        r = evaluate(ds.annotations, d, test, protocol, tious=tious)
        key05 = min(r.tious, key=lambda t: abs(t - 0.5))
        res[name] = {"map05": 100 * r.map[key05], "avg": 100 * r.average}
    log = model.log
    out = {"tag": args.tag, "preset": args.preset, "member": k, "seed": seed,
           "videos": args.videos, "dim": args.dim or member(args.preset, k).dim,
           "protocol": protocol, "tious": list(tious), "train_seconds": round(train_s, 1),
           "results": res,
           "base": {s: {kk: log.get(f"{s}_base", {}).get(kk)
                        for kk in ("train_classification_map", "learned", "recipe")}
                    for s in ("rgb", "flow")},
           "selection": {kk: v for kk, v in log.get("selection", {}).items()
                         if kk in ("scoring", "regression", "background", "seconds")},
           "background": model.cfg["base"]["background"],
           "rgb_weight": model.rgb_weight(), "alpha": model.cfg["acn"]["alpha"],
           "regression": model.cfg["acn"]["regression"],
           "whole_video": model.cfg["localize"]["whole_video"],
           "nms_iou": model.cfg["localize"]["nms_iou"],
           "attention_weight": model.cfg["localize"].get("attention_weight"),
           "lc_features": model.cfg["acn"]["lc_features"],
           "anchors": model.cfg["acn"]["anchors"],
           "config_overrides": args.set, "config": args.config}
    write_json(target, out)
    return out


def _label(r: dict) -> tuple:
    m = member(r["preset"], r["member"])
    dim = r.get("dim") or m.dim
    return (r["member"], dim, f"{r['member']} ({m.role}, D={dim})")


def _bg(r: dict) -> str:
    """The background class as the run had it ("" for runs that predate the key)."""
    bg = r.get("background")
    return "" if bg is None else ("bg, " if bg else "no bg, ")


def table(out: Path, preset: str, tags: list[str] | None) -> str:
    """Markdown: per member (and width), the mean over seeds of each row, mAP@0.5 / average
    mAP; then the mean and the worst member, and ACN fused minus the best baseline."""
    rows = [json.loads(p.read_text()) for p in sorted((out / "results").glob("*.json"))]
    rows = [r for r in rows if r["preset"] == preset and (not tags or r["tag"] in tags)]
    lines = []
    for tag in sorted({r["tag"] for r in rows}):
        mine = [r for r in rows if r["tag"] == tag]
        # rows every run of the tag has (runs before "CAS both sub" lack it)
        names = [n for n in ROWS if all(n in r["results"] for r in mine)]
        bases = [n for n in BASELINES if n in names]
        keys = sorted({_label(r) for r in mine})
        lines += [f"### {tag} ({preset}; mAP@0.5 / average mAP, mean over seeds)", "",
                  "| member | seeds | " + " | ".join(names) + " | fused - best baseline |"
                  " chosen: w_rgb, α, background, regression, whole video, NMS, Lc, attention |"
                  " base learned (rgb/flow) |",
                  "|---" * (len(names) + 5) + "|"]
        agg: dict[str, list] = {n: [] for n in names}
        margins = []
        for key in keys:
            rs = [r for r in mine if _label(r) == key]
            mean = {n: (np.mean([r["results"][n]["map05"] for r in rs]),
                        np.mean([r["results"][n]["avg"] for r in rs])) for n in names}
            for n in names:
                agg[n].append(mean[n])
            m05 = mean["ACN fused"][0] - max(mean[n][0] for n in bases)
            mavg = mean["ACN fused"][1] - max(mean[n][1] for n in bases)
            margins.append((m05, mavg))
            learned = "/".join("".join("y" if r["base"][s]["learned"] else "n" for r in rs)
                               for s in ("rgb", "flow"))
            chosen = "; ".join(f"{r['rgb_weight']:g}, {r.get('alpha')}, "
                               f"{_bg(r)}"
                               f"{r.get('regression', '')}, {r.get('whole_video', '')}, "
                               f"{r.get('nms_iou', '')}, {r.get('lc_features', '')}, "
                               f"{r.get('attention_weight', '')}"
                               for r in rs)
            lines.append(f"| {key[2]} | {len(rs)} | " + " | ".join(
                f"{mean[n][0]:.1f} / {mean[n][1]:.1f}" for n in names)
                + f" | {m05:+.1f} / {mavg:+.1f} | {chosen} | {learned} |")
        for what, f in (("mean", np.mean), ("worst", np.min)):
            lines.append(f"| **{what}** | | " + " | ".join(
                f"{f([a for a, _ in agg[n]]):.1f} / {f([b for _, b in agg[n]]):.1f}"
                for n in names) + f" | {f([a for a, _ in margins]):+.1f} / "
                f"{f([b for _, b in margins]):+.1f} | | |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="thumos14")
    p.add_argument("--members", type=int, nargs="*", default=[])
    p.add_argument("--seeds", type=int, nargs="*", default=[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--tag", default="default")
    p.add_argument("--config", default=None)
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--videos", type=int, default=None, help="videos per member (default all)")
    p.add_argument("--dim", type=int, default=None, help="override every member's width")
    p.add_argument("--table", action="store_true", help="print the collected results")
    p.add_argument("--tags", nargs="*", default=None, help="with --table: only these tags")
    args = p.parse_args()
    for k in args.members:
        for seed in args.seeds:
            t0 = time.perf_counter()
            r = run_one(args, k, seed)
            res = r["results"]
            print(f"{args.tag} {args.preset}{k} seed {seed}: " + ", ".join(
                f"{n} {res[n]['map05']:.1f}/{res[n]['avg']:.1f}" for n in ROWS if n in res)
                + f"; w_rgb {r['rgb_weight']:g}; {time.perf_counter() - t0:.0f} s", flush=True)
    if args.table:
        print(table(args.out, args.preset, args.tags))


if __name__ == "__main__":
    main()
