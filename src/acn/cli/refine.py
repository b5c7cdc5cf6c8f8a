"""``acn refine``: ACN's regression nets and -L scoring over another model's CAS."""

from __future__ import annotations

import argparse
from pathlib import Path

from acn.cli.common import (
    add_config_arguments,
    add_data_arguments,
    open_data,
    resolve_config,
    show_progress,
)
from acn.errors import AcnError


def add_refine_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cas", type=Path, required=True,
                   help="the other model's CAS: a folder of VIDEO_ID.npy (T, C) or .npz "
                        "(cas, attention, video_scores) files, or one .npz of (T, C) arrays by "
                        "video id (docs/refine.md)")
    add_data_arguments(p)
    add_config_arguments(p)
    p.add_argument("--out", type=Path, required=True, help="results JSON (ActivityNet format)")
    p.add_argument("--subset", default=None, help="subset to refine (default: test subset)")
    p.add_argument("--run", type=Path, default=None,
                   help="reuse the regression nets of this run folder (`acn refine --save-run` "
                        "or `acn train`) instead of training them on the CAS of the training "
                        "videos")
    p.add_argument("--save-run", type=Path, default=None, metavar="DIR",
                   help="write the nets trained here (and their config) to DIR, for --run")
    p.add_argument("--activation", default="auto", choices=["auto", "probs", "softmax", "sigmoid"],
                   help="how CAS values become probabilities: auto (they must already be in "
                        "[0, 1]), softmax over classes or sigmoid (logits)")
    p.add_argument("--background", default="none", choices=["none", "first", "last"],
                   help="a background column in the CAS (dropped after the activation)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run_refine(args: argparse.Namespace) -> int:
    from acn.config import merge, parse_set
    from acn.evaluate import save_results
    from acn.fileio import check_writable
    from acn.refine import CasSource, Refiner, read_cas

    check_writable(args.out)
    if args.save_run is not None:
        if args.run is not None:
            raise AcnError("--save-run writes nets trained here; with --run nothing is trained")
        check_writable(args.save_run)
    ds = open_data(args)
    src = CasSource(args.cas)
    subset = args.subset or ds.annotations.test_subset
    ids = [v.id for v in ds.subset(subset)]
    if not ids:
        raise AcnError(f"{args.data}: no videos in subset {subset!r}")
    progress = show_progress(args)
    kw = {"activation": args.activation, "background": args.background}
    if args.run is not None:
        if args.config is not None:
            raise AcnError("--config goes with training; with --run use --set localize.*/acn.*")
        refiner = Refiner.load(args.run)
        bad = [o for o in args.overrides if o.split(".", 1)[0] not in ("localize", "acn")]
        if bad:
            raise AcnError(f"--set {bad[0]}: only localize.* and acn.* can change with --run")
        refiner.cfg = refiner.acn.cfg = merge(refiner.cfg, parse_set(args.overrides), "--set")
        k = refiner.cfg["base"]["k_divisor"]
    else:
        cfg = resolve_config(args)
        k = cfg["base"]["k_divisor"]
        train_ids = [v.id for v in ds.subset(ds.annotations.train_subset)
                     if v.id not in set(ids)]
        have = [v for v in train_ids if v in src]
        if not have:
            raise AcnError(f"{args.cas}: no CAS for any training video "
                           f"({ds.annotations.train_subset}): the regression nets are trained "
                           "on them (or pass --run RUN to reuse trained nets)")
        if len(have) < len(train_ids):
            print(f"acn refine: {len(train_ids) - len(have)} of {len(train_ids)} training videos "
                  "have no CAS; training on the rest")
        refiner = Refiner(cfg)
        train_cas = read_cas(src, ds, have, k_divisor=k, **kw)
        test_cas = read_cas(src, ds, ids, k_divisor=k, **kw)  # checked before any training
        if args.save_run is not None:
            from acn.fileio import ensure_dir

            ensure_dir(args.save_run)
        log = refiner.fit(ds, train_cas, run=args.save_run, progress=progress)
        c = refiner.cfg
        print(f"acn refine: fitted on {len(have)} training videos' CAS ({log['seconds']:.0f} s): "
              f"anchors {c['acn']['anchors']}, alpha {c['acn']['alpha']}, Lc RGB weight "
              f"{c['localize']['rgb_weight']}, whole video {c['localize']['whole_video']}, NMS "
              f"{c['localize']['nms_iou']}, regression {'on' if c['acn']['regression'] else 'off'}"
              + (f" -> {args.save_run}" if args.save_run else ""))
    if args.run is not None:
        test_cas = read_cas(src, ds, ids, k_divisor=k, **kw)
    dets = refiner.localize(ds, test_cas, ids, progress=progress)
    if args.save_run is None:  # the resolved config beside the results (reproducible)
        from acn.config import dump
        from acn.fileio import write_text

        write_text(args.out.with_name(args.out.stem + ".config.yaml"), dump(refiner.cfg))
    save_results(args.out, dets, external_data={
        "used": False, "details": f"acn refine of the CAS in {args.cas}"})
    n = sum(len(d) for d in dets.values())
    print(f"{n} refined detections on {len(ids)} videos ({subset}) -> {args.out}")
    return 0
