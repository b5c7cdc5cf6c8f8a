"""``acn convert``: any supported dataset layout -> the canonical layout (no pickles, mmap-able)."""

from __future__ import annotations

import argparse
from pathlib import Path

from acn.data.open import FORMATS, convert_to_canonical, open_dataset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True,
                        help="dataset to convert: W-TALC root or -Annotations folder, per-video "
                             "feature folder, or canonical folder")
    parser.add_argument("--out", type=Path, required=True, help="canonical output folder")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="layout of --data (default: detected from the folder)")
    parser.add_argument("--annotations", type=Path, default=None,
                        help="ground truth: ActivityNet-style JSON, W-TALC annotation folder, "
                             "THUMOS14 txt folder or canonical index.json (needed for per-video "
                             "feature folders without gt.json)")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="allow reading W-TALC pickled .npy files (pickles can run code: "
                             "only for files you trust)")
    parser.add_argument("--train-subset", default=None,
                        help="training subset name (default: guessed)")
    parser.add_argument("--test-subset", default=None, help="test subset name (default: guessed)")
    parser.add_argument("--fps", type=float, default=None,
                        help="frame rate of the feature extraction, for every video")
    parser.add_argument("--frames-per-snippet", type=int, default=None,
                        help="frames per feature snippet, for every video")


def run(args: argparse.Namespace) -> int:
    ds = open_dataset(args.data, format=args.format, annotations=args.annotations,
                      allow_pickle=args.allow_pickle, train_subset=args.train_subset,
                      test_subset=args.test_subset, fps=args.fps,
                      frames_per_snippet=args.frames_per_snippet)
    out = convert_to_canonical(ds, args.out, progress=True)
    ann = ds.annotations
    print(f"wrote {len(ann)} videos, {len(ann.classes)} classes (train {ann.train_subset!r}, "
          f"test {ann.test_subset!r}) to {out}")
    return 0
