"""``acn evaluate``: mAP of a results JSON against ground truth, printed as a table.

Default protocol: ``thumos14`` (the official MATLAB protocol) when the evaluated subset has
ambiguous segments - only THUMOS14 ground truth carries them, and its official protocol is the
one that uses them - and ``activitynet`` otherwise. Say ``--protocol`` to choose; the table
always names the protocol used.

``--diagnose`` adds the DETAD-style error diagnosis (:mod:`acn.evaluate.diagnose`): the types
of the false positives, the mAP gained were each type removed, and the sensitivity of AP to
action length and to instances per video - always under ActivityNet matching at one tIoU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from acn.errors import AcnError


def parse_tious(text: str) -> tuple[float, ...]:
    """``"0.1,0.2,0.3"`` -> thresholds (argparse type; a bad list is a usage error)."""
    from acn.evaluate import check_tious

    try:
        return check_tious(float(t) for t in text.split(",") if t.strip())
    except (ValueError, AcnError) as e:
        if isinstance(e, AcnError):
            raise argparse.ArgumentTypeError(str(e)) from None
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of numbers: {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``acn evaluate`` options to ``parser``."""
    parser.add_argument("--gt", required=True, type=Path, metavar="GT",
                        help="ground truth: ActivityNet-style JSON, W-TALC annotation folder, "
                             "THUMOS14 per-class txt folder, or canonical dataset")
    parser.add_argument("--pred", required=True, type=Path, metavar="PRED.json",
                        help="detections in the ActivityNet results format (seconds)")
    parser.add_argument("--subset", default=None,
                        help="subset to evaluate (default: the ground truth's test subset)")
    parser.add_argument("--protocol", choices=("activitynet", "thumos14"), default=None,
                        help="evaluation protocol (default: thumos14 when the subset has "
                             "ambiguous segments, i.e. THUMOS14 data; activitynet otherwise)")
    parser.add_argument("--tiou", type=parse_tious, default=None, metavar="T1,T2,...",
                        help="tIoU thresholds (default: THUMOS14 0.1..0.7 step 0.1; "
                             "ActivityNet 0.5..0.95 step 0.05)")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT",
                        help="also write the result (mAP per tIoU, per-class AP) as JSON")
    parser.add_argument("--per-class", action="store_true",
                        help="print the AP of every class too")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="allow reading pickled W-TALC annotation arrays (trusted files only)")
    parser.add_argument("--ignore-unknown-videos", action="store_true",
                        help="drop detections on videos outside the subset instead of failing")
    parser.add_argument("--diagnose", action="store_true",
                        help="also print the DETAD-style error diagnosis: false-positive types "
                             "(double detection, wrong label, localization, confusion, "
                             "background), mAP gain if each were removed, sensitivity to "
                             "action length and instances per video")
    parser.add_argument("--diagnose-tiou", type=float, default=0.5, metavar="T",
                        help="tIoU threshold of the diagnosis (ActivityNet matching, >= T; "
                             "default 0.5)")


def default_protocol(gt, subset: str) -> str:  # gt: Annotations (imported lazily)
    """``thumos14`` when any video of ``subset`` has ambiguous segments, else ``activitynet``."""
    return "thumos14" if any(v.ambiguous for v in gt.subset(subset)) else "activitynet"


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table, write ``--json``; returns the exit status (0)."""
    from acn.data.open import load_ground_truth
    from acn.evaluate import evaluate, load_results
    from acn.fileio import write_json

    gt = load_ground_truth(args.gt, allow_pickle=args.allow_pickle)
    subset = args.subset if args.subset is not None else gt.test_subset
    protocol = args.protocol or default_protocol(gt, subset)
    detections = load_results(args.pred)
    result = evaluate(gt, detections, subset=subset, protocol=protocol, tious=args.tiou,
                      ignore_unknown_videos=args.ignore_unknown_videos, where=str(args.pred))
    print(result.format_table(per_class=args.per_class))
    diagnosis = None
    if args.diagnose:
        import warnings

        from acn.evaluate.diagnose import diagnose

        with warnings.catch_warnings():  # the same checks as evaluate's: warned once, above
            warnings.simplefilter("ignore")
            diagnosis = diagnose(gt, detections, subset=subset, tiou=args.diagnose_tiou,
                                 ignore_unknown_videos=args.ignore_unknown_videos,
                                 where=str(args.pred))
        print()
        print(diagnosis.format_table())
    if args.json is not None:
        obj = result.to_json()
        obj["ground_truth"] = str(args.gt)
        obj["predictions"] = str(args.pred)
        if diagnosis is not None:
            obj["diagnosis"] = diagnosis.to_json()
        write_json(args.json, obj)
        print(f"wrote {args.json}")
    return 0
