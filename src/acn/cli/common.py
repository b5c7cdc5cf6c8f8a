"""Arguments and helpers shared by the ``acn`` subcommands that read a dataset or a config.

Kept free of heavy imports at module level: ``acn --help`` imports every subcommand module.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


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


def show_progress(args) -> bool:
    return not getattr(args, "quiet", False) and sys.stderr.isatty()
