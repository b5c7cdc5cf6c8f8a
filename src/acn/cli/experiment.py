"""``acn demo`` and ``acn ablate``: whole experiments (train, localize, evaluate, tables)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from acn.cli.common import (
    add_config_arguments,
    add_data_arguments,
    open_data,
    resolve_config,
    show_progress,
)
from acn.cli.localize import write_plots
from acn.errors import AcnError

# ---------------------------------------------------------------------- demo


DEMO_TIOUS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("acn-demo"), help="output folder")
    p.add_argument("--quick", action="store_true",
                   help="160 videos, 64-d features, one regression epoch: a smoke run")
    p.add_argument("--dim", type=int, default=None,
                   help="feature width per stream (default 256; the published I3D features "
                        "are 1024, which trains about 3x slower)")
    p.add_argument("--videos", type=int, default=None,
                   help="number of videos (default: all 412 THUMOS14 timelines)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", default=None)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run_demo(args: argparse.Namespace) -> int:
    from acn.config import dump
    from acn.data.synth import write_synth
    from acn.data.open import open_dataset
    from acn.evaluate import evaluate, save_results
    from acn.fileio import ensure_dir, write_json, write_text
    from acn.pipeline import ACN
    from acn.report.html import Method, build_report

    out = ensure_dir(args.out)
    if args.quick:
        args.overrides = ["train.epochs=1", *args.overrides]
    cfg = resolve_config(args)
    videos, dim = (160, 64) if args.quick else (None, 256)
    videos, dim = args.videos or videos, args.dim or dim
    data_dir = out / "data"
    print(f"[1/4] synthesising the thumos14 preset (real THUMOS14 timelines, D={dim}) -> {data_dir}")
    write_synth(data_dir, preset="thumos14", videos=videos, dim=dim, seed=args.seed)
    ds = open_dataset(data_dir)
    print("[2/4] training base models and regression networks (both streams)")
    model = ACN(cfg)
    model.fit(ds, out / "run", progress=show_progress(args))
    test = ds.annotations.test_subset
    ids = [v.id for v in ds.subset(test)]
    print(f"[3/4] localizing {len(ids)} test videos")
    t_loc = time.perf_counter()
    dets = model.localize(ds, ids, ["rgb", "flow", "fused"], progress=show_progress(args),
                          keep_outputs=True)  # the baselines (and the report) reuse them
    t_loc = time.perf_counter() - t_loc
    outputs = model.last_outputs  # write_plots' own localize call replaces them
    from acn.ablation import choose_protocol

    protocol = choose_protocol(ds, test)
    rows = {}
    for s, d in dets.items():
        save_results(out / f"pred_{s}.json", d)
        rows[f"ACN {s}"] = evaluate(ds.annotations, d, test, protocol, tious=DEMO_TIOUS)
    # the report's first method is the one it breaks down per class: the fused detections
    methods = [Method(f"ACN {s}", dets[s], source=f"pred_{s}.json")
               for s in ("fused", "rgb", "flow")]
    for s in ("rgb", "flow", "both"):
        d = model.baseline(ds, ids, s)
        save_results(out / f"pred_baseline_{s}.json", d)
        name = f"CAS baseline ({cfg['base']['head']}) {s}"
        rows[name] = evaluate(ds.annotations, d, test, protocol, tious=DEMO_TIOUS)
        methods.append(Method(name, d, baseline=True, source=f"pred_baseline_{s}.json"))
    from acn.report import map_table

    table = map_table(rows)
    print(f"[4/4] {protocol} protocol, {test} subset ({len(ids)} videos), mAP (%)\n" + table)
    write_text(out / "results.md", table + "\n")
    write_json(out / "results.json", {k: r.to_json() for k, r in rows.items()})
    write_text(out / "config.yaml", dump(cfg))
    plots = write_plots(model, ds, _plot_choice(ds, ids), out / "plots")
    print(f"timeline plots: {', '.join(str(p) for p in plots)}")
    # the HTML report last: the run, these tables, the error diagnosis and every test
    # video's timeline, from what is in memory (no second pass over the data)
    info = build_report(out / "report.html", ds, methods, run=out / "run",
                        outputs=outputs,
                        thresholds={s: model.models[s].attention_threshold
                                    for s in ("rgb", "flow")},
                        subset=test, protocol=protocol, tious=DEMO_TIOUS,
                        timings={"localize (3 streams)": t_loc},
                        title=f"acn demo: synthetic THUMOS14 ({len(ids)} test videos)")
    print(f"report: {info.path} ({info.size / 1e6:.1f} MB, built in {info.seconds:.1f} s)")
    return 0


def _plot_choice(ds, ids: list[str], n: int = 3) -> list[str]:
    """A few test videos with ground truth, short enough to read on a timeline."""
    cands = sorted((v for v in ids if ds.video(v).segments), key=lambda v: ds.video(v).duration)
    return [cands[i] for i in sorted({len(cands) // 4, len(cands) // 2, 3 * len(cands) // 4})][:n] \
        if cands else []


# ---------------------------------------------------------------------- ablate


def add_ablate_arguments(p: argparse.ArgumentParser) -> None:
    add_data_arguments(p)
    add_config_arguments(p)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--protocol", default=None, help="thumos14 | activitynet (default: by data)")
    p.add_argument("--validation-fraction", type=float, default=0.0,
                   help="evaluate on this fraction of the TRAINING videos (seeded, by video) "
                        "instead of the test subset: for choosing a configuration")
    p.add_argument("--quiet", action="store_true")


def run_ablate(args: argparse.Namespace) -> int:
    from acn.ablation import run_ablation

    ds = open_data(args)
    cfg = resolve_config(args)
    if not 0.0 <= args.validation_fraction < 1.0:
        raise AcnError(f"--validation-fraction must be in [0, 1), got {args.validation_fraction}")
    table = run_ablation(ds, cfg, args.out, protocol=args.protocol, progress=show_progress(args),
                         validation_fraction=args.validation_fraction)
    print(table)
    return 0
