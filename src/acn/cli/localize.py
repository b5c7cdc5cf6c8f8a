"""``acn localize``, ``acn baseline``, ``acn plot``: apply a trained run folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from acn.cli.common import add_data_arguments, open_data, show_progress
from acn.errors import AcnError

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
    from acn.fileio import check_writable, remove_stale_temporaries
    from acn.pipeline import ACN

    for out in (args.out, args.plot):
        if out is not None:
            check_writable(out)
            remove_stale_temporaries(out.parent)  # of a localize killed mid-write
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
    dets = model.localize(ds, ids, [stream], progress=show_progress(args))[stream]
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
    dets = model.localize(ds, [vid], streams, progress=show_progress(args))
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
