"""``acn synth``: write a synthetic two-stream dataset (see :mod:`acn.data.synth`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from acn.data.synth import FORMATS, PRESETS, summary, write_synth
from acn.data.synth_family import FAMILY
from acn.errors import AcnError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``acn synth`` options to ``parser``."""
    parser.add_argument("--preset", default="thumos14", choices=PRESETS,
                        help="timelines: 'thumos14' = the real THUMOS14 timelines (default); "
                             "'thumos14-sampled', 'activitynet12' = sampled from their statistics; "
                             "'long' = a few hour-long videos")
    # not required by argparse: --list-members needs no output folder (run() checks it)
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (required unless --list-members)")
    parser.add_argument("--member", type=int, default=None,
                        help="family member of the preset to write (its knobs and width; see "
                             "--list-members); default: the preset's plain defaults")
    parser.add_argument("--list-members", action="store_true",
                        help="list every preset's family members (index, role, width, what "
                             "differs) and exit")
    parser.add_argument("--dim", type=int, default=None,
                        help="feature width per stream (default: the member's, else 1024 like "
                             "I3D)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--videos", type=int, default=None,
                        help="number of videos over both subsets (default: the preset's full size)")
    parser.add_argument("--format", default="canonical", choices=FORMATS,
                        help="output layout: 'canonical' (index.json + per-video .npy, default) "
                             "or 'wtalc' (W-TALC joint feature file + annotation folder)")


def member_lines() -> list[str]:
    """One line per family member of every preset: preset, index, role, width, note."""
    return [f"{m.preset:<14} {m.index:>2}  {m.role:<9}  D={m.dim:<5} {m.note}"
            for fam in FAMILY.values() for m in fam]


def run(args: argparse.Namespace) -> int:
    """Generate and write the dataset (or list the family members); print a one-line summary.
    Returns the exit status."""
    if getattr(args, "list_members", False):
        print("\n".join(member_lines()))
        return 0
    if args.out is None:
        raise AcnError("acn synth needs --out DIR (the output folder), unless --list-members")
    data = write_synth(args.out, preset=args.preset, videos=args.videos, dim=args.dim,
                       seed=args.seed, format=args.format, member=args.member)
    print(f"wrote {args.out} ({args.format}): {summary(data)}")
    return 0
