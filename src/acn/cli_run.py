"""``acn train``, ``acn localize``, ``acn baseline``, ``acn plot``, ``acn demo``, ``acn ablate``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from acn.errors import AcnError

# ---------------------------------------------------------------------- shared arguments


def add_data_arguments(p: argparse.ArgumentParser, required: bool = True) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", type=Path, required=required,
                   help="dataset folder (canonical, W-TALC, or per-video .npy features)")
    g.add_argument("--format", default=None,
                   help="override the auto-detected layout (canonical, wtalc, joint, rgbflow, "
                        "video_features)")
    g.add_argument("--annotations", type=Path, default=None,
                   help="ground truth for a per-video feature folder (ActivityNet JSON, W-TALC "
                        "annotation folder, THUMOS14 txt folder)")
    g.add_argument("--allow-pickle", action="store_true",
                   help="trust and load pickled .npy files (W-TALC object arrays); pickles "
                        "can run code, so only for files you trust")


def open_data(args: argparse.Namespace):
    from acn.data.open import load_ground_truth, open_dataset

    ann = load_ground_truth(args.annotations, args.allow_pickle) if args.annotations else None
    return open_dataset(args.data, format=args.format, annotations=ann,
                        allow_pickle=args.allow_pickle)


def add_config_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None,
                   help="YAML config over the defaults, or a packaged name (paper, "
                        "activitynet12, ...)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value, e.g. --set acn.alpha=0.5 (repeatable)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: config seed)")


def resolve_config(args: argparse.Namespace) -> dict:
    from acn.config import resolve

    cfg = resolve(args.config, args.overrides)
    if args.seed is not None:
        cfg["seed"] = args.seed
    if getattr(args, "allow_pickle", False):
        cfg["data"]["allow_pickle"] = True
    return cfg


def _progress(args) -> bool:
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


# ---------------------------------------------------------------------- train

RUN_INFO = "run.json"


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    add_data_arguments(p, required=False)
    add_config_arguments(p)
    p.add_argument("--out", type=Path, help="run folder (checkpoints, config, logs)")
    p.add_argument("--stage", choices=["base", "all"], default="all",
                   help="train only the base models, or everything (default)")
    p.add_argument("--resume", type=Path, default=None, metavar="RUN",
                   help="continue an interrupted run in RUN with its own config and data")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run_train(args: argparse.Namespace) -> int:
    from acn.config import _read_yaml, merge, resolve
    from acn.fileio import check_writable, ensure_dir, read_json, write_json
    from acn.pipeline import ACN
    from acn import distributed as dist

    dist.init_from_env()  # under torchrun: join the group; rank 0 alone writes and prints
    if args.resume is not None:
        run = args.resume
        info = read_json(run / RUN_INFO, "run description (was this folder made by acn train?)")
        if not isinstance(info, dict) or not info.get("data"):
            raise AcnError(f"{run / RUN_INFO}: not an acn run description (no \"data\" entry)")
        for k in ("data", "format", "annotations", "allow_pickle"):
            setattr(args, k, info.get(k) if k != "data" and k != "annotations" else
                    (Path(info[k]) if info.get(k) else None))
        cfg_path = run / "config.yaml"
        if not cfg_path.is_file():
            raise AcnError(f"{cfg_path}: run config not found (was this folder made by acn train?)")
        cfg = merge(resolve(), _read_yaml(cfg_path.read_text(encoding="utf-8"), str(cfg_path)),
                    str(cfg_path))
    else:
        if args.data is None or args.out is None:
            raise AcnError("acn train needs --data DATA and --out RUN (or --resume RUN)")
        run = args.out
        check_writable(run)
        cfg = resolve_config(args)
    ds = open_data(args)
    # Check the features of every video used (training and test subsets) before the run
    # folder is made: bad data fails now, naming the file, and leaves nothing behind.
    from acn.pipeline import splits

    used = {s for s in splits(ds, cfg)}
    ds.validate([v.id for s in sorted(used) for v in ds.subset(s)])
    ensure_dir(run)
    if dist.is_main():
        write_json(run / RUN_INFO, {"data": str(Path(args.data).resolve()),
                                    "format": args.format,
                                    "annotations": str(Path(args.annotations).resolve())
                                    if args.annotations else None,
                                    "allow_pickle": bool(args.allow_pickle), "stage": args.stage})
    t0 = time.perf_counter()
    model = ACN(cfg)
    log = model.fit(ds, run, progress=_progress(args), resume=args.resume is not None,
                    stage=args.stage)
    if not dist.is_main():
        dist.cleanup()
        return 0
    sel = log.get("selection", {})
    for stream in ("rgb", "flow"):
        b = log.get(f"{stream}_base", {})
        r = log.get(f"{stream}_regression", {})
        line = f"{stream}: base model train classification mAP {100 * b.get('train_classification_map', float('nan')):.1f}"
        st = sel.get("streams", {}).get(stream)
        if st:
            line += (f", carved-validation {100 * st['validation_map']:.1f} "
                     f"({len(st['tried'])} recipe(s) tried, chosen {st['chosen'] or 'default'})")
        if b and not b.get("learned", True):
            line += " -- DID NOT LEARN (see the warning above)"
        if r.get("history"):
            h = r["history"][-1]
            line += (f"; regression loss {h['loss']:.4f}, mean |offset|/P "
                     f"{h['mean_abs_offset_over_P']:.3f}")
        print(line)
    chosen = [f"fusion RGB weight {model.rgb_weight():g}, alpha {model.cfg['acn']['alpha']:g}, "
              f"whole-video proposals {'on' if model.cfg['localize']['whole_video'] else 'off'}"
              + (f" ({sel['scoring']['criterion']} on {sel['validation_videos']} carved "
                 "training videos)" if sel.get("scoring") else "")]
    if log.get("anchors"):
        chosen.append(f"anchors {log['anchors']['chosen']} (from the training CAS)")
    reg = sel.get("regression")
    if reg:
        chosen.append(f"regression {'on' if reg['regression'] else 'OFF'} (carved average mAP "
                      f"{100 * reg['with_regression']:.1f} with, "
                      f"{100 * reg['without_regression']:.1f} without)")
    print("chosen for this data: " + "; ".join(chosen) + f" -> {run / 'config.yaml'}")
    test = cfg["data"]["test_subset"] or ds.annotations.test_subset
    if test != (cfg["data"]["train_subset"] or ds.annotations.train_subset):
        cm = test_classification_map(model, ds, test)
        print("test classification mAP (video level, a sanity check): " +
              ", ".join(f"{s} {100 * v:.1f}" for s, v in cm.items()))
        log["test_classification_map"] = cm
        write_json(run / "train_log.json", log)
    print(f"trained in {time.perf_counter() - t0:.0f} s -> {run}"
          + (f" ({dist.world_size()} processes)" if dist.world_size() > 1 else ""))
    dist.cleanup()
    return 0


def test_classification_map(model, ds, subset: str) -> dict[str, float]:
    from acn import base_training as bt

    ids = [v.id for v in ds.subset(subset) if v.labels]
    return {s: bt.classification_map(model.base_outputs(ds, ids, s), ds, ids)
            for s in ("rgb", "flow")}


# ---------------------------------------------------------------------- localize


def add_localize_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", type=Path, required=True, help="trained run folder")
    add_data_arguments(p, required=False)
    p.add_argument("--video", type=Path, default=None,
                   help="one video file: extract features, then localize (needs acn[video])")
    p.add_argument("--subset", default=None, help="subset to localize (default: test subset)")
    p.add_argument("--out", type=Path, required=True, help="results JSON (ActivityNet format)")
    p.add_argument("--stream", choices=["rgb", "flow", "fused"], default=None,
                   help="which detections to write (default: config localize.stream)")
    p.add_argument("--plot", type=Path, default=None,
                   help="with --video: a PNG timeline of the detections")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override an inference setting, e.g. --set localize.nms_iou=0.5")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--device", default=None,
                   help="where the networks run (base models, regression nets and, with --video, "
                        "I3D): cpu, cuda, cuda:N (default: the run's localize.device, cpu)")
    g = p.add_argument_group("feature extraction (with --video)")
    g.add_argument("--rgb-weights", default=None)
    g.add_argument("--flow-weights", default=None)
    g.add_argument("--flow", dest="flow_method", default="tvl1", help="tvl1 | dis | farneback")
    g.add_argument("--resize", type=int, default=256, help="short side after resizing")
    g.add_argument("--crop", type=int, default=224, help="centre crop fed to I3D")
    g.add_argument("--random-weights", action="store_true",
                   help="allow randomly initialised I3D streams (tests only)")


def _apply_inference_overrides(model, overrides: list[str]) -> None:
    from acn.config import merge, parse_set

    allowed = {"localize", "acn"}
    for item in overrides:
        if item.split(".", 1)[0] not in allowed:
            raise AcnError(f"--set {item}: only localize.* and acn.* can change at inference")
    model.cfg = merge(model.cfg, parse_set(overrides), "--set")


def run_localize(args: argparse.Namespace) -> int:
    from acn.evaluate import save_results
    from acn.fileio import check_writable
    from acn.pipeline import ACN

    for out in (args.out, args.plot):
        if out is not None:
            check_writable(out)
    model = ACN.load(args.run)
    _apply_inference_overrides(model, args.overrides
                               + ([f"localize.device={args.device}"] if args.device else []))
    stream = args.stream or model.cfg["localize"]["stream"]
    if args.video is not None:
        return _localize_video(args, model, stream)
    if args.data is None:
        raise AcnError("acn localize needs --data DATA or --video FILE")
    if args.plot is not None:
        raise AcnError("--plot goes with --video; for a dataset use `acn plot`")
    ds = open_data(args)
    subset = args.subset or ds.annotations.test_subset
    ids = [v.id for v in ds.subset(subset)]
    dets = model.localize(ds, ids, [stream], progress=_progress(args))[stream]
    save_results(args.out, dets, external_data={"used": False, "details": f"acn {stream} stream"})
    n = sum(len(d) for d in dets.values())
    print(f"{n} detections on {len(ids)} videos ({subset}, {stream}) -> {args.out}")
    return 0


def _localize_video(args, model, stream: str) -> int:
    """Extract one video's features into a temporary canonical folder, then localize it."""
    from acn.data.annotations import Annotations, Video
    from acn.data.features import Dataset, MemoryStore
    from acn.evaluate import save_results
    from acn.extract import pipeline as ex

    if not args.video.is_file():
        raise AcnError(f"{args.video}: video file not found")
    cfg = ex.ExtractConfig(flow=args.flow_method, rgb_weights=args.rgb_weights,
                           flow_weights=args.flow_weights,
                           device=args.device or model.cfg["localize"]["device"],
                           resize=args.resize, crop=args.crop,
                           random_weights=args.random_weights)
    models = ex.build_models(cfg)
    feats = ex.extract_video(args.video, cfg, models)
    vid = args.video.stem
    video = Video(id=vid, subset="unlabeled", duration=float(feats.duration), fps=float(feats.fps),
                  frames_per_snippet=int(feats.frames_per_snippet))
    ds = Dataset(Annotations(list(model.classes), {vid: video}, "unlabeled", "unlabeled", vid),
                 MemoryStore({vid: (feats.rgb, feats.flow)}))
    streams = ["rgb", "flow", "fused"]
    dets = model.localize(ds, [vid], streams, progress=_progress(args))
    save_results(args.out, dets[stream], external_data={"used": False, "details": f"acn {stream}"})
    print(f"{len(dets[stream][vid])} detections ({stream}) -> {args.out}")
    if args.plot is not None:
        from acn.plot import plot_timeline

        outputs = {s: model.base_outputs(ds, [vid], s)[vid] for s in ("rgb", "flow")}
        plot_timeline(args.plot, video, model.classes, outputs,
                      {s: dets[s][vid] for s in streams})
        print(f"timeline -> {args.plot}")
    return 0


# ---------------------------------------------------------------------- baseline / plot


def add_baseline_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", type=Path, required=True, help="trained run folder (base models)")
    add_data_arguments(p)
    p.add_argument("--subset", default=None)
    p.add_argument("--stream", choices=["rgb", "flow", "both"], default="flow",
                   help="CAS of one stream, or the mean of both streams' CAS")
    p.add_argument("--out", type=Path, required=True)


def run_baseline(args: argparse.Namespace) -> int:
    from acn.evaluate import save_results
    from acn.pipeline import ACN

    from acn.fileio import check_writable

    check_writable(args.out)
    model = ACN.load(args.run)
    ds = open_data(args)
    model.check_dataset(ds, str(args.data))
    ids = [v.id for v in ds.subset(args.subset or ds.annotations.test_subset)]
    dets = model.baseline(ds, ids, args.stream)
    save_results(args.out, dets, external_data={"used": False,
                                                "details": f"CAS thresholding, {args.stream}"})
    print(f"{sum(len(d) for d in dets.values())} baseline detections -> {args.out}")
    return 0


def add_plot_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", type=Path, required=True)
    add_data_arguments(p)
    p.add_argument("--videos", nargs="+", required=True, help="video ids to plot")
    p.add_argument("--out", type=Path, required=True, help="output folder for PNGs")


def run_plot(args: argparse.Namespace) -> int:
    from acn.pipeline import ACN

    model = ACN.load(args.run)
    ds = open_data(args)
    for v in args.videos:
        if v not in ds.annotations.videos:
            raise AcnError(f"{args.data}: no video {v!r}")
    for p in write_plots(model, ds, args.videos, args.out):
        print(p)
    return 0


def write_plots(model, ds, ids: list[str], out: Path) -> list[Path]:
    from acn.plot import plot_timeline

    streams = ["rgb", "flow", "fused"]
    dets = model.localize(ds, ids, streams, progress=False)
    outputs = {s: model.base_outputs(ds, ids, s) for s in ("rgb", "flow")}
    return [plot_timeline(Path(out) / f"{v}.png", ds.video(v), model.classes,
                          {s: outputs[s][v] for s in outputs}, {s: dets[s][v] for s in streams})
            for v in ids]


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
    model.fit(ds, out / "run", progress=_progress(args))
    test = ds.annotations.test_subset
    ids = [v.id for v in ds.subset(test)]
    print(f"[3/4] localizing {len(ids)} test videos")
    dets = model.localize(ds, ids, ["rgb", "flow", "fused"], progress=_progress(args),
                          keep_outputs=True)  # the baselines reuse the base outputs
    from acn.ablation import choose_protocol

    protocol = choose_protocol(ds, test)
    rows = {}
    for s, d in dets.items():
        save_results(out / f"pred_{s}.json", d)
        rows[f"ACN {s}"] = evaluate(ds.annotations, d, test, protocol, tious=DEMO_TIOUS)
    for s in ("rgb", "flow", "both"):
        d = model.baseline(ds, ids, s)
        save_results(out / f"pred_baseline_{s}.json", d)
        rows[f"CAS baseline ({cfg['base']['head']}) {s}"] = evaluate(
            ds.annotations, d, test, protocol, tious=DEMO_TIOUS)
    from acn.report import map_table

    table = map_table(rows)
    print(f"[4/4] {protocol} protocol, {test} subset ({len(ids)} videos), mAP (%)\n" + table)
    write_text(out / "results.md", table + "\n")
    write_json(out / "results.json", {k: r.to_json() for k, r in rows.items()})
    write_text(out / "config.yaml", dump(cfg))
    plots = write_plots(model, ds, _plot_choice(ds, ids), out / "plots")
    print(f"timeline plots: {', '.join(str(p) for p in plots)}")
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
    table = run_ablation(ds, cfg, args.out, protocol=args.protocol, progress=_progress(args),
                         validation_fraction=args.validation_fraction)
    print(table)
    return 0
