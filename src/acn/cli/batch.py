"""``acn batch extract|localize``: corpus-scale jobs over a manifest, locally or on Ray.

Kept free of heavy imports at module level: ``acn --help`` imports every subcommand module.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _running_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show tracebacks on errors")
    p.add_argument("--manifest", type=Path, required=True, metavar="FILE",
                   help="one entry per line (# comments, blank lines skipped); relative paths "
                   "are relative to FILE")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    g = p.add_argument_group("where it runs")
    where = g.add_mutually_exclusive_group()
    where.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                       help="run as Ray tasks (pip install acn[ray]); ADDRESS: 'auto', "
                       "'HEAD:6379' or 'ray://HEAD:10001'; none: $RAY_ADDRESS or a new local "
                       "Ray")
    where.add_argument("--local", action="store_true",
                       help="run here without Ray (the default)")
    g.add_argument("--workers", type=int, default=1,
                   help="--local: parallel worker processes (default 1: in this process)")
    g.add_argument("--shard", metavar="i/n",
                   help="only every n-th manifest item from i (split a job across machines "
                   "without Ray)")
    g.add_argument("--num-cpus", type=float, default=1.0,
                   help="CPUs per task (Ray resource request; also torch threads per worker). "
                   "Default 1")
    g.add_argument("--num-gpus", type=float, default=0.0,
                   help="GPUs per task (Ray resource request; fractions share a GPU). Default 0")
    g.add_argument("--max-retries", type=int, default=2,
                   help="retries of a video after a transient error (I/O, network, out of "
                   "memory, a lost worker). Default 2")
    g.add_argument("--overwrite", action="store_true",
                   help="redo videos whose outputs exist (default: skip them)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Feature extraction or localization over a manifest of videos, one output per video "
        "(reruns skip what is done), with retries and a summary of failures; on a Ray cluster "
        "(--ray) or here (--local, --workers N, --shard i/n).")
    sub = parser.add_subparsers(dest="batch_kind", metavar="JOB", required=True)
    ex = sub.add_parser("extract", help="I3D features of every video in the manifest",
                        description="Extract two-stream I3D features of every video (paths, "
                        "folders or URIs) into DIR (canonical layout; DIR/index.json rebuilt at "
                        "the end). Manifest entries: video files, folders of videos, URIs.")
    _running_arguments(ex)
    s = ex.add_argument_group("extraction (as acn extract)")
    s.add_argument("--fps", type=float, default=25.0)
    s.add_argument("--frames-per-snippet", type=int, default=16)
    s.add_argument("--resize", type=int, default=256, help="0 = keep")
    s.add_argument("--crop", type=int, default=224, help="0 = whole frame")
    s.add_argument("--flow", choices=("tvl1", "dis", "farneback"), default="tvl1")
    s.add_argument("--rgb-weights", metavar="SPEC")
    s.add_argument("--flow-weights", metavar="SPEC")
    s.add_argument("--random-weights", action="store_true",
                   help="random I3D weights (tests and benchmarks only)")
    s.add_argument("--device", choices=("cpu", "cuda"), default=None,
                   help="where I3D runs (default: cuda when --num-gpus > 0, else cpu)")
    s.add_argument("--batch-size", type=int, default=4)
    s.add_argument("--flow-workers", type=int, default=None,
                   help="flow threads per video (default: --num-cpus)")
    lo = sub.add_parser("localize", help="detections for every feature file in the manifest",
                        description="Localize every video of the manifest's feature folders "
                        "(or {video}_rgb.npy files) with a trained run: DIR/detections/"
                        "{video}.json per video (rgb, flow, fused) and DIR/results.json "
                        "(ActivityNet format) for --stream.")
    _running_arguments(lo)
    lo.add_argument("--run", type=Path, required=True, help="trained run folder")
    lo.add_argument("--stream", choices=("rgb", "flow", "fused"), default=None,
                    help="stream of results.json (default: config localize.stream)")
    lo.add_argument("--set", dest="overrides", action="append", default=[],
                    metavar="KEY=VALUE", help="override an inference setting (localize.*, acn.*)")


def run(args: argparse.Namespace) -> int:
    """Run ``acn batch``; returns 0, or 1 when any video failed."""
    from acn.errors import AcnError
    from acn.extract import parse_shard
    from acn.fileio import check_writable, ensure_dir, remove_stale_temporaries
    from acn.scale import JobSpec, finish, read_manifest, run_local, run_ray

    kind = args.batch_kind
    shard = parse_shard(args.shard) if args.shard else None
    if args.workers < 1:
        raise AcnError(f"--workers must be >= 1, got {args.workers}")
    if args.max_retries < 0:
        raise AcnError(f"--max-retries must be >= 0, got {args.max_retries}")
    if args.num_cpus < 0 or args.num_gpus < 0:
        raise AcnError("--num-cpus and --num-gpus must be >= 0")
    check_writable(args.out)
    items = read_manifest(args.manifest, kind, shard)
    threads = max(1, int(args.num_cpus)) if args.num_cpus else 1
    stream = "fused"
    if kind == "extract":
        from acn.extract import ExtractConfig

        device = args.device or ("cuda" if args.num_gpus > 0 else "cpu")
        cfg = ExtractConfig(
            fps=args.fps, frames_per_snippet=args.frames_per_snippet, flow=args.flow,
            resize=args.resize or None, crop=args.crop or None, rgb_weights=args.rgb_weights,
            flow_weights=args.flow_weights, random_weights=args.random_weights, device=device,
            batch_size=args.batch_size, flow_workers=args.flow_workers or threads)
        if not cfg.random_weights and (cfg.rgb_weights is None or cfg.flow_weights is None):
            from acn.extract import build_models

            build_models(cfg)  # the missing-weights message, before any task starts
        if cfg.random_weights:
            print("acn batch extract: warning: --random-weights: features are meaningless",
                  file=sys.stderr)
        spec = JobSpec("extract", str(args.out.absolute()), args.overwrite, extract=cfg,
                       threads=threads)
    else:
        from acn.scale.work import _acn

        model = _acn(str(args.run.absolute()), tuple(args.overrides))  # fail fast, here
        stream = args.stream or model.cfg["localize"]["stream"]
        spec = JobSpec("localize", str(args.out.absolute()), args.overwrite,
                       run=str(args.run.absolute()), overrides=tuple(args.overrides),
                       threads=threads)
    ensure_dir(args.out)
    for d in (args.out, args.out / "features", args.out / "detections"):
        remove_stale_temporaries(d)  # of a job killed mid-write (dead processes, this host)
    progress = not args.no_progress
    if args.ray is not None:
        summary = run_ray(items, spec, address=args.ray or None, num_cpus=args.num_cpus,
                          num_gpus=args.num_gpus, max_retries=args.max_retries,
                          progress=progress)
    else:
        summary = run_local(items, spec, workers=args.workers, max_retries=args.max_retries,
                            progress=progress)
    # Workers killed mid-write during the job (a Ray worker, a pool process) left temporaries
    # that the start's sweep could not see; they are dead now, so sweep again.
    for d in (args.out, args.out / "features", args.out / "detections"):
        remove_stale_temporaries(d)
    written = finish(summary, spec, items, shard, stream)
    rate = ""
    if summary.done and summary.seconds > 0:
        rate = f" ({summary.video_seconds / summary.seconds:.2f} s of video per second)"
    where = written.get("index") or written.get("results")
    print(f"acn batch {kind}: {len(summary.done)} done, {len(summary.skipped)} already done, "
          f"{len(summary.failed)} failed of {len(items)} ({summary.backend}, "
          f"{summary.seconds:.0f} s){rate} -> {where}; summary {written['summary']}")
    if summary.warnings:
        print(f"acn batch {kind}: {len(summary.warnings)} warning(s):", file=sys.stderr)
        for vid, msg in summary.warnings[:20]:
            print(f"  {vid}: {msg}", file=sys.stderr)
    if summary.failed:
        print(f"acn batch {kind}: {len(summary.failed)} video(s) failed (retry them with "
              f"--manifest {written['failed']}):", file=sys.stderr)
        for _, msg in summary.failed[:50]:
            print(f"  {msg}", file=sys.stderr)
        return 1
    return 0
