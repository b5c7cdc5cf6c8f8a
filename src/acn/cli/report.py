"""``acn report``: one self-contained HTML page of a trained run and its detections.

The run, mAP per tIoU and per class of each results file (ACN's and the baselines'), the
DETAD-style error diagnosis and per-video timelines (ground truth, SCP, attention,
detections) with a video picker; see docs/report.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from acn.cli.common import add_data_arguments, open_data
from acn.errors import AcnError


def add_arguments(p: argparse.ArgumentParser) -> None:
    from acn.cli.evaluate import parse_tious

    p.add_argument("--run", type=Path, required=True,
                   help="trained run folder (config, training log; its base models draw the "
                        "SCP and attention curves)")
    add_data_arguments(p)
    p.add_argument("--pred", action="append", required=True, metavar="[NAME=]PRED.json",
                   help="detections of ACN in the ActivityNet results format (repeatable; "
                        "NAME= names it on the page, default: the file name)")
    p.add_argument("--pred-baseline", action="append", default=[], metavar="[NAME=]PRED.json",
                   help="detections of a baseline, drawn beside ACN's (repeatable)")
    p.add_argument("--out", type=Path, required=True, help="the HTML file to write")
    p.add_argument("--subset", default=None, help="subset (default: the test subset)")
    p.add_argument("--protocol", choices=("activitynet", "thumos14"), default=None,
                   help="mAP protocol (default: thumos14 when the subset has ambiguous "
                        "segments, activitynet otherwise)")
    p.add_argument("--tiou", type=parse_tious, default=None, metavar="T1,T2,...",
                   help="tIoU thresholds of the mAP (default: the protocol's)")
    p.add_argument("--diagnose-tiou", type=float, default=0.5, metavar="T",
                   help="tIoU threshold of the error diagnosis (default 0.5)")
    p.add_argument("--max-videos", type=int, default=250,
                   help="videos on the timeline; beyond it an even sample (default 250)")
    p.add_argument("--top", type=int, default=40,
                   help="most detections drawn per method and video (default 40)")
    p.add_argument("--no-curves", action="store_true",
                   help="do not run the base models: timelines without SCP/attention")


def parse_named(text: str) -> tuple[str, Path]:
    """``"NAME=path"`` -> ``(NAME, path)``; a bare path is named by its file stem. A path that
    exists is taken whole even if it holds ``=``."""
    if "=" in text and not Path(text).exists():
        name, path = text.split("=", 1)
        if name.strip():
            return name.strip(), Path(path)
    return Path(text).stem, Path(text)


def run(args: argparse.Namespace) -> int:
    from acn.evaluate import load_results
    from acn.fileio import check_writable
    from acn.pipeline import ACN
    from acn.report.html import Method, build_report
    from acn.report.timeline import choose_videos

    check_writable(args.out)
    if args.max_videos < 1 or args.top < 1:
        raise AcnError("--max-videos and --top must be at least 1")
    methods = []
    for items, baseline in ((args.pred, False), (args.pred_baseline, True)):
        for text in items:
            name, path = parse_named(text)
            methods.append(Method(name, load_results(path), baseline=baseline,
                                  source=str(path)))
    model = ACN.load(args.run)
    ds = open_data(args)
    model.check_dataset(ds, str(args.data))
    subset = args.subset or ds.annotations.test_subset
    outputs = thresholds = None
    if not args.no_curves:
        ids = [v.id for v in choose_videos(ds.subset(subset), args.max_videos)]
        outputs = {s: model.base_outputs(ds, ids, s) for s in ("rgb", "flow")}
        thresholds = {s: model.models[s].attention_threshold for s in ("rgb", "flow")}
    info = build_report(args.out, ds, methods, run=args.run, outputs=outputs,
                        thresholds=thresholds, subset=subset, protocol=args.protocol,
                        tious=args.tiou, diagnose_tiou=args.diagnose_tiou,
                        max_videos=args.max_videos, top=args.top)
    print(f"report: {info.path} ({info.size / 1e6:.1f} MB, {info.videos} videos, built in "
          f"{info.seconds:.1f} s)")
    return 0
