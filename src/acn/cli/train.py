"""``acn train``: train the base models and the regression networks into a run folder."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from acn.cli.common import (
    add_config_arguments,
    add_data_arguments,
    open_data,
    resolve_config,
    show_progress,
)
from acn.errors import AcnError
from acn.localize.video import whole_video_mode

#: acn.lc_features in the summary line
LC_WORDS = {"embedding": "the base models' embedding", "standardize": "standardised features",
            "raw": "raw features"}

RUN_INFO = "run.json"


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    add_data_arguments(p, required=False)
    add_config_arguments(p)
    p.add_argument("--out", type=Path, help="run folder (checkpoints, config, logs)")
    p.add_argument("--stage", choices=["base", "all"], default="all",
                   help="train only the base models, or everything (default)")
    p.add_argument("--resume", type=Path, default=None, metavar="RUN",
                   help="continue an interrupted run in RUN with its own config and data")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run_train(args: argparse.Namespace) -> int:
    from acn.runlock import RunLock

    with RunLock() as lock:  # one writer per run folder (acn.runlock)
        return _train(args, lock)


def _train(args: argparse.Namespace, lock) -> int:
    from acn.config import _read_yaml, dump, merge, resolve
    from acn.fileio import (check_writable, ensure_dir, read_json, remove_stale_temporaries,
                            write_json, write_text)
    from acn.pipeline import ACN
    from acn.train import distributed as dist

    dist.init_from_env()  # under torchrun: join the group; rank 0 alone writes and prints
    if args.resume is not None:
        run = args.resume
        if dist.is_main() and run.is_dir():
            lock.acquire(run)
        info = read_json(run / RUN_INFO, "run description (was this folder made by acn train?)")
        if not isinstance(info, dict) or not info.get("data"):
            raise AcnError(f"{run / RUN_INFO}: not an acn run description (no \"data\" entry)")
        for k in ("data", "format", "annotations", "allow_pickle"):
            setattr(args, k, info.get(k) if k != "data" and k != "annotations" else
                    (Path(info[k]) if info.get(k) else None))
        cfg_path = run / "config.yaml"
        if not cfg_path.is_file():
            raise AcnError(f"{cfg_path}: run config not found (was this folder made by acn train?)")
        cfg = merge(resolve(), _read_yaml(cfg_path.read_text(encoding="utf-8"), str(cfg_path)),
                    str(cfg_path))
    else:
        if args.data is None or args.out is None:
            raise AcnError("acn train needs --data DATA and --out RUN (or --resume RUN)")
        run = args.out
        check_writable(run)
        if dist.is_main() and run.is_dir():
            lock.acquire(run)
        cfg = resolve_config(args)
    ds = open_data(args)
    # Check the features of every video used (training and test subsets) before the run
    # folder is made: bad data fails now, naming the file, and leaves nothing behind.
    from acn.pipeline import splits

    used = {s for s in splits(ds, cfg)}
    ds.validate([v.id for s in sorted(used) for v in ds.subset(s)])
    ensure_dir(run)
    if dist.is_main():
        lock.acquire(run)
        remove_stale_temporaries(run, recursive=True)  # of writers killed mid-write
        # config.yaml before run.json: a folder with run.json is one --resume can take, and
        # --resume reads config.yaml (a kill between the two used to leave neither usable)
        write_text(run / "config.yaml", dump(cfg))
        write_json(run / RUN_INFO, {"data": str(Path(args.data).resolve()),
                                    "format": args.format,
                                    "annotations": str(Path(args.annotations).resolve())
                                    if args.annotations else None,
                                    "allow_pickle": bool(args.allow_pickle), "stage": args.stage})
    t0 = time.perf_counter()
    model = ACN(cfg)
    log = model.fit(ds, run, progress=show_progress(args), resume=args.resume is not None,
                    stage=args.stage)
    if not dist.is_main():
        dist.cleanup()
        return 0
    sel = log.get("selection", {})
    for stream in ("rgb", "flow"):
        b = log.get(f"{stream}_base", {})
        r = log.get(f"{stream}_regression", {})
        line = f"{stream}: base model train classification mAP {100 * b.get('train_classification_map', float('nan')):.1f}"
        st = sel.get("streams", {}).get(stream)
        if st:
            line += (f", carved-validation {100 * st['validation_map']:.1f} "
                     f"({len(st['tried'])} recipe(s) tried, chosen {st['chosen'] or 'default'})")
        if b and not b.get("learned", True):
            line += " -- DID NOT LEARN (see the warning above)"
        if r.get("history"):
            h = r["history"][-1]
            line += (f"; regression loss {h['loss']:.4f}, mean |offset|/P "
                     f"{h['mean_abs_offset_over_P']:.3f}")
        print(line)
    lc = model.cfg["acn"]["lc_features"]
    chosen = [f"fusion RGB weight {model.rgb_weight():g}, alpha {model.cfg['acn']['alpha']:g}, "
              f"whole-video proposals {whole_video_mode(model.cfg['localize']['whole_video'])}, "
              f"NMS IoU {model.cfg['localize']['nms_iou']:g}, "
              f"Lc on {LC_WORDS.get(lc, lc)}, "
              f"attention weight {model.cfg['localize'].get('attention_weight') or 0:g}"
              + (f" ({sel['scoring']['criterion']} on {sel['validation_videos']} carved "
                 "training videos)" if sel.get("scoring") else "")]
    bg = sel.get("background")
    if bg:
        chosen.append(f"background class {'on' if bg['chosen'] else 'off'} (carved average mAP "
                      f"{100 * bg['scores']['true']:.1f} with, "
                      f"{100 * bg['scores']['false']:.1f} without)")
    if log.get("anchors"):
        chosen.append(f"anchors {log['anchors']['chosen']} (from the training CAS)")
    reg = sel.get("regression")
    if reg:
        chosen.append(f"regression {'on' if reg['regression'] else 'OFF'} (carved average mAP "
                      f"{100 * reg['with_regression']:.1f} with, "
                      f"{100 * reg['without_regression']:.1f} without)")
    print("chosen for this data: " + "; ".join(chosen) + f" -> {run / 'config.yaml'}")
    test = cfg["data"]["test_subset"] or ds.annotations.test_subset
    if test != (cfg["data"]["train_subset"] or ds.annotations.train_subset):
        cm = test_classification_map(model, ds, test)
        print("test classification mAP (video level, a sanity check): " +
              ", ".join(f"{s} {100 * v:.1f}" for s, v in cm.items()))
        log["test_classification_map"] = cm
        write_json(run / "train_log.json", log)
    print(f"trained in {time.perf_counter() - t0:.0f} s -> {run}"
          + (f" ({dist.world_size()} processes)" if dist.world_size() > 1 else ""))
    dist.cleanup()
    return 0


def test_classification_map(model, ds, subset: str) -> dict[str, float]:
    from acn.train.outputs import classification_map

    ids = [v.id for v in ds.subset(subset) if v.labels]
    return {s: classification_map(model.base_outputs(ds, ids, s), ds, ids)
            for s in ("rgb", "flow")}
