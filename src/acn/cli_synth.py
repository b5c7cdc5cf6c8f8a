"""``acn synth``: write a synthetic two-stream dataset (see :mod:`acn.data.synth`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from acn.data.synth import FORMATS, PRESETS, summary, write_synth


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``acn synth`` options to ``parser``."""
    parser.add_argument("--preset", default="thumos14", choices=PRESETS,
                        help="timelines: 'thumos14' = the real THUMOS14 timelines (default); "
                             "'thumos14-sampled', 'activitynet12' = sampled from their statistics; "
                             "'long' = a few hour-long videos")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--dim", type=int, default=1024,
                        help="feature width per stream (default 1024, like I3D)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--videos", type=int, default=None,
                        help="number of videos over both subsets (default: the preset's full size)")
    parser.add_argument("--format", default="canonical", choices=FORMATS,
                        help="output layout: 'canonical' (index.json + per-video .npy, default) "
                             "or 'wtalc' (W-TALC joint feature file + annotation folder)")


def run(args: argparse.Namespace) -> int:
    """Generate and write the dataset; print a one-line summary. Returns the exit status."""
    data = write_synth(args.out, preset=args.preset, videos=args.videos, dim=args.dim,
                       seed=args.seed, format=args.format)
    print(f"wrote {args.out} ({args.format}): {summary(data)}")
    return 0
