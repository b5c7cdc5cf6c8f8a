"""The whole ACN method as a Python API: ``ACN(cfg).fit(ds, run)`` and ``.localize(ds, ids)``.

A run folder holds everything a trained model needs::

    RUN/config.yaml                      resolved config (seed included)
    RUN/checkpoints/{rgb,flow}_base.pt   base model: weights, kwargs, class list, threshold
    RUN/checkpoints/{rgb,flow}_regression.pt
    RUN/checkpoints/{rgb,flow}_regression_state.pt   per-epoch state for --resume
    RUN/base_outputs/{rgb,flow}/*.npz    base outputs of the TRAINING videos
    RUN/train_log.json                   per-stage figures (losses, classification mAP, time)

Every checkpoint loads with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from tqdm.auto import tqdm

from acn import batching
from acn.train import base as bt
from acn.train import distributed as dist
from acn.train import outputs as bo
from acn.config import defaults, dump, merge
from acn.data.features import Dataset
from acn.errors import AcnError
from acn.fileio import atomic_path, ensure_dir, read_json, write_json, write_text
from acn.localize.fusion import fuse_streams
from acn.localize.nms import nms
from acn.localize.proposals import score_video, select_classes
from acn.localize.segments import cas_candidates, regress_segments, score_segments, scp_thresholds
from acn.model.coherence import PrefixIntegral, feature_integral
from acn.model.regression import RegressionNets
from acn.train.regression import train_regression
from acn import selection

STREAMS = ("rgb", "flow")
STREAM_INDEX = {"rgb": 0, "flow": 1}
#: ``acn.alpha`` when it is null and nothing chose it (no carved split, or no segments there).
ALPHA_FALLBACK = 0.8

#: Detections of one video: (start_s, end_s, label, score) tuples.
Detection = tuple[float, float, str, float]


@dataclass
class StreamModel:
    """Everything one stream needs at test time."""

    base: torch.nn.Module
    nets: RegressionNets
    attention_threshold: float


@dataclass
class StreamProposals:
    """Post-NMS proposals of one stream of one video, in snippets."""

    segments: np.ndarray   # (N, 2) snippets
    scores: np.ndarray     # (N,)
    labels: np.ndarray     # (N,) class index


def splits(ds: Dataset, cfg: dict) -> tuple[str, str]:
    ann = ds.annotations
    return (cfg["data"]["train_subset"] or ann.train_subset,
            cfg["data"]["test_subset"] or ann.test_subset)


def inference_device(name: str) -> torch.device:
    """``localize.device`` as a torch device, with a clear error when it is not usable here."""
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError) as e:
        raise AcnError(f"localize.device={name!r}: not a device name (cpu, cuda, cuda:N)") from e
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise AcnError(f"localize.device={name!r}: no CUDA device is visible to this "
                           f"process (torch {torch.__version__}); use localize.device=cpu")
        if dev.index is not None and dev.index >= n:
            raise AcnError(f"localize.device={name!r}: only {n} CUDA device(s) are visible")
    elif dev.type != "cpu":
        raise AcnError(f"localize.device={name!r}: only cpu and cuda are supported")
    return dev


def mean_outputs(outputs: dict[str, dict[str, bo.BaseOutputs]], vid: str,
                 rgb_weight: float = 0.5) -> bo.BaseOutputs:
    """The weighted mean ``w * rgb + (1 - w) * flow`` of both streams' base outputs for one
    video (early fusion of the CAS; ``w`` = ``localize.rgb_weight``)."""
    w = float(rgb_weight)
    r, f = outputs["rgb"][vid], outputs["flow"][vid]
    return bo.BaseOutputs(scp=w * r.scp + (1 - w) * f.scp,
                          attention=w * r.attention + (1 - w) * f.attention,
                          video_scores=w * r.video_scores + (1 - w) * f.video_scores)


def input_statistics(module: torch.nn.Module) -> tuple[np.ndarray, np.ndarray] | None:
    """``(mean, std)`` a model standardises its input with, or None (no ``norm``)."""
    norm = getattr(module, "norm", None)
    if norm is None:
        return None
    return norm.mean.cpu().numpy().copy(), (1.0 / norm.inv_std).cpu().numpy()


def _save_checkpoint(path: Path, obj: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _load_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise AcnError(f"{path}: checkpoint not found (was the run trained to the end?)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a corrupt file here
        first = str(e).splitlines()[0] if str(e) else ""
        raise AcnError(f"{path}: not a readable acn checkpoint ({type(e).__name__}: "
                       f"{first})") from None


class ACN:
    """Train and apply ACN on a :class:`~acn.data.features.Dataset`.

    Args:
        cfg: a resolved config (:func:`acn.config.resolve`).
    """

    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.classes: list[str] = []
        self.feature_dim: int | None = None
        self.models: dict[str, StreamModel] = {}
        self.log: dict = {}
        self.last_outputs: dict[str, dict[str, bo.BaseOutputs]] = {}
        self._outputs_of: Dataset | None = None
        # one padding buffer per stream, kept between localize calls (up to
        # localize.batch_snippets x D floats each): a fresh one page-faults in every call
        self._pad_buffers: dict[str, list[np.ndarray]] = {}

    def __getstate__(self) -> dict:
        # the padding buffers are scratch memory (hundreds of MB): never pickled or copied
        return {**self.__dict__, "_pad_buffers": {}}

    # ------------------------------------------------------------------ training
    def fit(self, ds: Dataset, run: Path, progress: bool = True, resume: bool = False,
            stage: str = "all", base_from: Path | None = None) -> dict:
        """Train base models and regression nets for both streams on the TRAINING subset.

        ``stage``: ``"base"`` stops after the base models; ``"all"`` trains everything.
        ``resume``: reuse finished stages and per-epoch regression state found in ``run``.
        ``base_from``: reuse the base models (and their training outputs) of another run
        folder, trained on the same data (ablations vary only the regression stage).
        Returns the training log (also written to ``RUN/train_log.json``).

        Under ``torchrun`` every rank calls ``fit``: each global mini-batch is split across
        ranks (:mod:`acn.train.distributed`), and only rank 0 writes files.
        """
        dist.init_from_env()
        main = dist.is_main()
        progress = progress and main
        cfg = self.cfg
        seed = int(cfg["seed"])
        train_subset, _ = splits(ds, cfg)
        train_videos = ds.subset(train_subset)
        ids = [v.id for v in train_videos]
        self.classes = list(ds.classes)
        # Every training video is checked before the run folder is touched: bad data fails
        # fast, naming the file, and leaves no half-made run behind.
        self.feature_dim = ds.validate(ids)
        run = ensure_dir(Path(run))
        ckdir = ensure_dir(run / "checkpoints")
        if main:
            write_text(run / "config.yaml", dump(cfg))
        log_path = run / "train_log.json"
        self.log = read_json(log_path) if (resume and log_path.is_file()) else {}
        self.log.update({"train_subset": train_subset, "train_videos": len(ids),
                         "classes": len(self.classes), "feature_dim": self.feature_dim, "seed": seed})
        base_cfg = {k: v for k, v in cfg["base"].items()
                    if k not in ("attention_percentile", "per_stream")}
        labels = {v.id: [ds.annotations.class_index(lab, f"video {v.id}") for lab in v.labels]
                  for v in train_videos}
        src = Path(base_from) if base_from is not None else (run if resume else None)
        have = {s: src is not None and (src / "checkpoints" / f"{s}_base.pt").is_file()
                for s in STREAMS}
        stats: dict[str, tuple[np.ndarray, np.ndarray] | None] = {s: None for s in STREAMS}
        if not all(have.values()):
            if cfg["data"]["standardize"]:
                stats = {s: bt.stream_statistics(ds, ids, s) for s in STREAMS if not have[s]}
            # (a resumed run's config.yaml holds what its first attempt chose)
            if self._selection_pending() and not any(have.values()):
                self._select(ds, ids, base_cfg, stats, progress)
            if not any(have.values()):
                self._fill_unchosen()
            if main:  # the chosen values are the run's config from now on
                write_text(run / "config.yaml", dump(cfg))
                write_json(log_path, self.log)
        all_outputs: dict[str, dict[str, bo.BaseOutputs]] = {}
        for si, stream in enumerate(STREAMS):
            t0 = time.perf_counter()
            base_path = ckdir / f"{stream}_base.pt"
            if have[stream]:
                model, meta = bt.load_base_checkpoint(src / "checkpoints" / f"{stream}_base.pt")
                self._check_compatible(meta, base_path)
                for sec, key in (("localize", "rgb_weight"), ("base", "per_stream"),
                                 ("acn", "alpha"), ("localize", "whole_video")):
                    if cfg[sec][key] is None:  # what that run chose with these base models
                        cfg[sec][key] = meta.get("config", {}).get(sec, {}).get(key)
                outputs = bo.load_outputs(src / "base_outputs" / stream, ids)
                threshold = float(meta["attention_threshold"])
                if src != run and main:
                    bt.save_base_checkpoint(base_path, model, {**meta, "config": cfg})
            else:
                recipe = {**base_cfg, **self._stream_recipe(stream)}
                model, info = bt.train_base(ds, ids, stream, recipe, seed=seed + si,
                                            progress=progress, device=dist.train_device(),
                                            input_stats=stats[stream])
                model.cpu()
                # every rank predicts every training video: ~1% of training's cost, and the
                # regression stage (sharded per batch) needs any video's outputs on any rank
                outputs = bt.predict_base(model, ds, ids, stream)
                threshold = bo.calibrate_attention(outputs, cfg["base"]["attention_percentile"])
                cls_map = bo.classification_map(outputs, ds, ids)
                if main:
                    bo.save_outputs(run / "base_outputs" / stream, outputs)
                    bt.save_base_checkpoint(base_path, model, {
                        "config": cfg, "classes": self.classes, "stream": stream,
                        "feature_dim": self.feature_dim, "attention_threshold": threshold})
                ok = selection.learned(cls_map, cfg["select"]["min_train_map"])
                sel_s = self.log.get("selection", {}).get("streams", {}).get(stream, {})
                self.log[f"{stream}_base"] = {
                    "seconds": round(time.perf_counter() - t0, 2),
                    "train_classification_map": cls_map, "learned": ok,
                    # of the same recipe trained without the carved videos (None: no carving)
                    "carved_validation_map": sel_s.get("validation_map"),
                    "attention_threshold": threshold, "recipe": self._stream_recipe(stream),
                    "losses": info.get("losses"), "processes": dist.world_size()}
                if not ok:
                    msg = selection.not_learned_message(
                        stream, cls_map, sel_s.get("validation_map"), info.get("losses"),
                        len(sel_s.get("tried", [])) or 1)
                    self.log[f"{stream}_base"]["warning"] = msg
                    if main:
                        warnings.warn(msg, stacklevel=2)
                if main:
                    write_json(log_path, self.log)
            self.models[stream] = StreamModel(model, None, threshold)  # type: ignore[arg-type]
            all_outputs[stream] = outputs
        self._fill_unchosen()  # base models from elsewhere made before these keys existed
        if cfg["acn"]["anchors"] is None:  # anchor sizes from the data (acn.selection)
            self._choose_anchors(ds, ids, all_outputs, labels)
            if main:
                write_text(run / "config.yaml", dump(cfg))
                write_json(log_path, self.log)
        if stage == "base":
            dist.barrier()
            return self.log
        # Regression nets after both base models: with acn.scp_source = mean, each stream's
        # proposals are scored on the mean of both streams' SCP.
        for si, stream in enumerate(STREAMS):
            outputs = self.scored_outputs(all_outputs, stream)
            self.models[stream].nets = self._fit_regression(ds, ids, stream, si, outputs, labels,
                                                            ckdir, resume, progress)
            if main:
                write_json(log_path, self.log)
        dist.barrier()  # rank 0's files are complete before any rank goes on
        return self.log

    # ------------------------------------------------------------------ selection
    def _stream_recipe(self, stream: str) -> dict:
        """``base.per_stream[stream]``: the base-recipe overrides chosen for this stream."""
        per = self.cfg["base"]["per_stream"] or {}
        if not isinstance(per, dict) or not all(isinstance(per.get(s, {}), dict) for s in STREAMS):
            raise AcnError(f"base.per_stream must map rgb/flow to recipe overrides, got {per!r}")
        return dict(per.get(stream) or {})

    def _fill_unchosen(self) -> None:
        """Values left null that nothing chose (no carved split) take their fallbacks, so
        that RUN/config.yaml says what was used."""
        cfg = self.cfg
        if cfg["base"]["per_stream"] is None:
            cfg["base"]["per_stream"] = {}
        if cfg["localize"]["rgb_weight"] is None:
            cfg["localize"]["rgb_weight"] = 0.5
        if cfg["acn"]["alpha"] is None:
            cfg["acn"]["alpha"] = ALPHA_FALLBACK
        if cfg["localize"]["whole_video"] is None:
            cfg["localize"]["whole_video"] = False
        a = cfg["acn"]["alpha"]
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not 0.0 <= a <= 1.0:
            raise AcnError(f"acn.alpha must be a number in [0, 1] or null, got {a!r}")
        self.rgb_weight()  # the same check for localize.rgb_weight

    def _selection_pending(self) -> bool:
        """Whether something is left to choose on carved training videos."""
        cfg = self.cfg
        return cfg["select"]["validation_fraction"] > 0 and (
            cfg["base"]["per_stream"] is None or cfg["localize"]["rgb_weight"] is None
            or cfg["acn"]["alpha"] is None or cfg["localize"]["whole_video"] is None)

    def _select(self, ds: Dataset, ids: list[str], base_cfg: dict,
                stats: dict[str, tuple[np.ndarray, np.ndarray] | None], progress: bool) -> None:
        """Choose each stream's base recipe and the fusion's RGB weight on a split carved from
        the training videos (:mod:`acn.selection`); write them into ``self.cfg``."""
        cfg, sel = self.cfg, self.cfg["select"]
        seed = int(cfg["seed"])
        fit_ids, val_ids = selection.carve_ids(ids, sel["validation_fraction"], seed)
        t0 = time.perf_counter()
        log: dict = {"fit_videos": len(fit_ids), "validation_videos": len(val_ids), "streams": {}}
        val_outputs, val_maps, chosen, models, fit_outputs = {}, {}, {}, {}, {}
        for si, stream in enumerate(STREAMS):
            fixed = cfg["base"]["per_stream"]
            candidates = ([self._stream_recipe(stream)] if fixed is not None
                          else [{}, *sel["fallback_recipes"]])
            tried, best = [], None
            for over in candidates:
                t1 = time.perf_counter()
                model, info = bt.train_base(ds, fit_ids, stream, {**base_cfg, **over},
                                            seed=seed + si, progress=progress,
                                            device=dist.train_device(),
                                            input_stats=stats[stream])
                model.cpu()
                fit_out = bt.predict_base(model, ds, fit_ids, stream)
                fit_map = bo.classification_map(fit_out, ds, fit_ids)
                val_out = bt.predict_base(model, ds, val_ids, stream)
                val_map = bo.classification_map(val_out, ds, val_ids)
                tried.append({"recipe": over, "train_map": fit_map, "validation_map": val_map,
                              "losses": info["losses"],
                              "seconds": round(time.perf_counter() - t1, 2)})
                ok = selection.learned(fit_map, sel["min_train_map"])
                # a recipe that learned beats one that did not, then the better validation
                if best is None or (ok, val_map) > (best[5], best[1]):
                    best = (over, val_map, val_out, model, fit_out, ok)
                if ok:
                    break  # this recipe learned: no further search
            chosen[stream], val_maps[stream], val_outputs[stream] = best[:3]
            models[stream], fit_outputs[stream] = best[3:5]
            log["streams"][stream] = {"tried": tried, "chosen": best[0],
                                      "validation_map": best[1]}
        if cfg["base"]["per_stream"] is None:
            cfg["base"]["per_stream"] = chosen
        if (cfg["localize"]["rgb_weight"] is None or cfg["acn"]["alpha"] is None
                or cfg["localize"]["whole_video"] is None):
            if any(ds.video(v).segments for v in val_ids):
                log["scoring"] = self._choose_scoring(ds, val_ids, val_outputs)
            else:  # weak labels only: the weights follow classification, alpha its fallback
                w, _, how = selection.choose_rgb_weight(
                    ds, val_ids, val_outputs["rgb"], val_outputs["flow"], sel["rgb_weights"],
                    val_maps)
                if cfg["localize"]["rgb_weight"] is None:
                    cfg["localize"]["rgb_weight"] = w
                log["scoring"] = {"criterion": how, "chosen": {"rgb_weight": w}}
        self._fill_unchosen()
        if (sel["regression_check"] and cfg["acn"]["regression"]
                and any(ds.video(v).segments for v in val_ids)):
            log["regression"] = self._check_regression(ds, fit_ids, val_ids, models,
                                                       fit_outputs, progress)
        log["seconds"] = round(time.perf_counter() - t0, 2)
        self.log["selection"] = log

    def _check_regression(self, ds: Dataset, fit_ids: list[str], val_ids: list[str],
                          models: dict[str, torch.nn.Module],
                          fit_outputs: dict[str, dict[str, bo.BaseOutputs]],
                          progress: bool) -> dict:
        """Whether the regressed boundaries beat the CAS boundaries on this data.

        Regression nets trained on the fit split (with the selection base models) localize
        the carved videos with and without regression (joint fusion, the chosen weight and
        alpha). Regression is kept only where it wins by more than
        ``select.regression_margin`` (average mAP) and does so on at least
        ``select.regression_support`` of bootstrap resamples of the carved videos: on most of
        the family the nets moved boundaries that the CAS had placed better (member 4: 23.6
        vs 29.1 mAP@0.5), and on member 7 a 2-point lead on the carved videos was noise (32.7
        vs 36.4 on the test videos); on ActivityNet-like data they win by 7 points.
        Anchors still null are chosen here, from the fit split's CAS."""
        import copy

        cfg = self.cfg
        labels = {v: [ds.annotations.class_index(lab, f"video {v}") for lab in ds.video(v).labels]
                  for v in fit_ids}
        if cfg["acn"]["anchors"] is None:
            self._choose_anchors(ds, fit_ids, fit_outputs, labels)
        probe = ACN(copy.deepcopy(cfg))
        probe.classes, probe.feature_dim = self.classes, self.feature_dim
        t0 = time.perf_counter()
        for si, s in enumerate(STREAMS):
            thr = bo.calibrate_attention(fit_outputs[s], cfg["base"]["attention_percentile"])
            probe.models[s] = StreamModel(models[s], None, thr)  # type: ignore[arg-type]
        for si, s in enumerate(STREAMS):
            col = STREAM_INDEX[s]
            cache: dict[str, np.ndarray] = {}

            def feats(vid: str, col: int = col, cache: dict = cache) -> np.ndarray:
                if vid not in cache:
                    cache[vid] = ds.features(vid, self.feature_dim)[col]
                return cache[vid]

            probe.models[s].nets, _ = train_regression(
                feats, fit_ids, probe.scored_outputs(fit_outputs, s), labels, self.feature_dim,
                cfg["acn"], cfg["train"], seed=int(cfg["seed"]) + 10 + si, progress=progress,
                desc=f"{s} regression (carved split)",
                input_stats=input_statistics(models[s]) if cfg["data"]["standardize"] else None)
        scores, dets = {}, {}
        for reg in (True, False):
            probe.cfg["acn"]["regression"] = reg
            dets[reg] = probe.localize(ds, val_ids, ["fused"], progress=False)["fused"]
            scores[reg] = selection.carved_average_map(ds, val_ids, dets[reg])
        margin = cfg["select"]["regression_margin"]
        support = (selection.bootstrap_win_rate(ds, val_ids, dets[True], dets[False], margin,
                                                seed=int(cfg["seed"]))
                   if scores[True] > scores[False] + margin else 0.0)
        keep = support >= cfg["select"]["regression_support"]
        cfg["acn"]["regression"] = bool(keep)
        return {"criterion": f"average mAP over tIoU {selection.default_tious(ds)} of fused "
                             "ACN on the carved videos, nets trained on the fit split; kept "
                             f"when ahead by > {margin:g} there and on >= "
                             f"{cfg['select']['regression_support']:g} of bootstrap resamples",
                "with_regression": scores[True], "without_regression": scores[False],
                "bootstrap_support": support,
                "regression": bool(keep), "seconds": round(time.perf_counter() - t0, 2)}

    def _choose_scoring(self, ds: Dataset, val_ids: list[str],
                        val_outputs: dict[str, dict[str, bo.BaseOutputs]]) -> dict:
        """``localize.rgb_weight``, ``acn.alpha`` and ``localize.whole_video`` (those left null)
        by the average mAP of ACN's own scoring (-L of the joint fusion, before regression) of
        the carved videos, over the grid ``select.rgb_weights`` x ``select.alphas`` x (without,
        with the whole-video proposals)."""
        cfg, sel, loc = self.cfg, self.cfg["select"], self.cfg["localize"]
        ws = ([loc["rgb_weight"]] if loc["rgb_weight"] is not None
              else selection.check_weights(sel["rgb_weights"]))
        alphas = [cfg["acn"]["alpha"]] if cfg["acn"]["alpha"] is not None else sel["alphas"]
        wholes = [loc["whole_video"]] if loc["whole_video"] is not None else [False, True]
        grid = [(w, a, h) for w in ws for a in alphas for h in wholes]
        dets: dict[tuple, dict] = {k: {} for k in grid}
        saved = cfg["acn"]["alpha"], loc["whole_video"]
        try:
            for v in val_ids:  # one video's Lc tables at a time, shared by the whole grid
                feats = [torch.from_numpy(f) for f in ds.features(v, self.feature_dim)]
                one = {s: {v: val_outputs[s][v]} for s in STREAMS}
                cache: dict[str, PrefixIntegral] = {}
                for w, a, h in grid:
                    cfg["acn"]["alpha"], loc["whole_video"] = a, h
                    p = self._score_one(feats, mean_outputs(one, v, w), {1: None}, float("-inf"),
                                        lc_cache=cache, lc_keys=list(STREAMS),
                                        group_weights=[w, 1 - w])
                    dets[(w, a, h)][v] = self.to_seconds(ds, v, p)
        finally:
            cfg["acn"]["alpha"], loc["whole_video"] = saved
        scores = {k: selection.carved_average_map(ds, val_ids, d) for k, d in dets.items()}
        w, a, h = selection.best_choice(scores, (0.5, ALPHA_FALLBACK, False))
        if loc["rgb_weight"] is None:
            loc["rgb_weight"] = w
        if cfg["acn"]["alpha"] is None:
            cfg["acn"]["alpha"] = a
        if loc["whole_video"] is None:
            loc["whole_video"] = bool(h)
        return {"criterion": f"average mAP over tIoU {selection.default_tious(ds)} of ACN's "
                             "joint -L scoring of CAS proposals (no regression)",
                "chosen": {"rgb_weight": w, "alpha": a, "whole_video": bool(h)},
                "scores": {f"w={k[0]:g} alpha={k[1]:g} whole_video={k[2]}": v
                           for k, v in scores.items()}}

    def _choose_anchors(self, ds: Dataset, ids: list[str],
                        outputs: dict[str, dict[str, bo.BaseOutputs]],
                        labels: dict[str, list[int]]) -> None:
        """``acn.anchors`` from the lengths of the CAS segments (the fusion's weighted mean
        SCP, labelled classes, the config's levels) of the training videos."""
        acn = self.cfg["acn"]
        w = self.rgb_weight()
        lengths = []
        for v in ids:
            if not labels.get(v):
                continue
            scp = mean_outputs(outputs, v, w).scp[sorted(labels[v])]
            _, st, en = cas_candidates(scp, acn["cas_thresholds"], acn["cas_min_length"])
            lengths.append(en - st)
        found = np.concatenate(lengths) if lengths else np.zeros(0)
        acn["anchors"] = selection.data_anchors(found)
        self.log["anchors"] = {
            "chosen": acn["anchors"], "cas_segments": int(found.size),
            "cas_length_percentiles_10_50_90": (np.percentile(found, [10, 50, 90]).tolist()
                                                if found.size else None)}

    def _fit_regression(self, ds, ids, stream, si, outputs, labels, ckdir, resume, progress):
        cfg = self.cfg
        final = ckdir / f"{stream}_regression.pt"
        state_path = ckdir / f"{stream}_regression_state.pt"
        if resume and final.is_file():
            return self._load_nets(_load_checkpoint(final), final)
        state = None
        if resume and state_path.is_file():
            state = _load_checkpoint(state_path)
            if state.get("config") != cfg:
                raise AcnError(f"{state_path}: saved with a different config; resume needs the "
                               "same config (or start a new run folder)")
        col = STREAM_INDEX[stream]
        cache: dict[str, np.ndarray] = {}

        def feats(vid: str) -> np.ndarray:
            if vid not in cache:
                cache[vid] = ds.features(vid, self.feature_dim)[col]
            return cache[vid]

        def checkpoint(epoch, nets, opt, history):
            if not dist.is_main():
                return
            _save_checkpoint(state_path, {"nets": nets.state_dict(), "optimizer": opt.state_dict(),
                                          "epoch": epoch, "history": history, "config": cfg})

        t0 = time.perf_counter()
        nets, history = train_regression(
            feats, ids, outputs, labels, self.feature_dim, cfg["acn"], cfg["train"],
            seed=int(cfg["seed"]) + 10 + si, progress=progress, desc=f"{stream} regression",
            checkpoint=checkpoint, resume=state,
            input_stats=(input_statistics(self.models[stream].base)
                         if cfg["data"]["standardize"] else None))
        if dist.is_main():
            _save_checkpoint(final, {"state_dict": nets.state_dict(), "kwargs": nets.kwargs(),
                                     "config": cfg, "classes": self.classes, "stream": stream,
                                     "history": history})
        self.log[f"{stream}_regression"] = {"seconds": round(time.perf_counter() - t0, 2),
                                            "history": history}
        return nets

    def _check_compatible(self, meta: dict, where: Path) -> None:
        if meta.get("classes") != self.classes:
            raise AcnError(f"{where}: checkpoint was trained on a different class list "
                           f"({len(meta.get('classes', []))} classes) than the dataset "
                           f"({len(self.classes)})")
        if int(meta.get("feature_dim", -1)) != self.feature_dim:
            raise AcnError(f"{where}: checkpoint expects {meta.get('feature_dim')}-d features, "
                           f"the dataset has {self.feature_dim}-d")

    def _load_nets(self, ck: dict, where: Path) -> RegressionNets:
        try:
            nets = RegressionNets(**ck["kwargs"])
            nets.load_state_dict(ck["state_dict"])
        except (KeyError, RuntimeError, TypeError) as e:
            raise AcnError(f"{where}: regression checkpoint does not fit ({e})") from None
        return nets.eval()

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, run: Path) -> "ACN":
        """Load a trained run folder (weights_only checkpoints)."""
        run = Path(run)
        if not run.is_dir():
            raise AcnError(f"{run}: run folder not found")
        self: ACN | None = None
        for stream in STREAMS:
            base_path = run / "checkpoints" / f"{stream}_base.pt"
            if not base_path.is_file():
                raise AcnError(f"{base_path}: checkpoint not found (train with `acn train`)")
            model, meta = bt.load_base_checkpoint(base_path)
            if self is None:
                # keys added since the run was trained take today's defaults; the regression
                # checkpoint's config is the final one (anchors chosen after the base models)
                reg_cfg = _load_checkpoint(run / "checkpoints" / f"{stream}_regression.pt")
                self = cls(merge(defaults(), reg_cfg.get("config") or meta["config"],
                                 str(base_path)))
                self.classes = list(meta["classes"])
                self.feature_dim = int(meta["feature_dim"])
            else:
                self._check_compatible(meta, base_path)
            reg_path = run / "checkpoints" / f"{stream}_regression.pt"
            ck = _load_checkpoint(reg_path)
            if ck.get("classes") != self.classes:
                raise AcnError(f"{reg_path}: trained on a different class list than {base_path}")
            self.models[stream] = StreamModel(model, self._load_nets(ck, reg_path),
                                              float(meta["attention_threshold"]))
        assert self is not None
        return self

    # ------------------------------------------------------------------ inference
    def check_dataset(self, ds: Dataset, where: str) -> None:
        if list(ds.classes) != self.classes:
            extra = sorted(set(ds.classes) - set(self.classes))
            raise AcnError(f"{where}: the dataset's class list differs from the model's "
                           f"({len(ds.classes)} vs {len(self.classes)} classes"
                           + (f"; unknown to the model: {extra[:5]}" if extra else "") + ")")

    def base_outputs(self, ds: Dataset, ids: list[str], stream: str) -> dict[str, bo.BaseOutputs]:
        return bt.predict_base(self.models[stream].base, ds, ids, stream)

    def scored_outputs(self, outputs: dict[str, dict[str, bo.BaseOutputs]],
                       stream: str) -> dict[str, bo.BaseOutputs]:
        """The SCP/video scores a stream's proposals are scored on: its own (paper) or the mean
        of both streams' (``acn.scp_source = mean``); attention stays the stream's own."""
        if self.cfg["acn"]["scp_source"] == "stream":
            return outputs[stream]
        w = self.rgb_weight()
        return {v: bo.BaseOutputs(scp=mean_outputs(outputs, v, w).scp,
                                  attention=o.attention,
                                  video_scores=mean_outputs(outputs, v, w).video_scores)
                for v, o in outputs[stream].items()}

    def rgb_weight(self) -> float:
        """``localize.rgb_weight`` (RGB's share of the joint fusion, Flow's is ``1 - w``);
        None (not chosen, e.g. selection switched off) is 0.5."""
        w = self.cfg["localize"]["rgb_weight"]
        w = 0.5 if w is None else w
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0.0 <= w <= 1.0:
            raise AcnError(f"localize.rgb_weight must be a number in [0, 1] or null, got {w!r}")
        return float(w)

    def propose(self, ds: Dataset, ids: list[str], want: Iterable[str],
                progress: bool = False, keep_outputs: bool = False,
                ) -> tuple[dict[str, dict[str, StreamProposals]], dict[str, dict[str, bo.BaseOutputs]]]:
        """Post-NMS proposals (snippets) of ``want`` ⊆ {``rgb``, ``flow``, ``joint``} for ``ids``.

        One pass over the data: each video's features are read once, and each padded batch of
        videos of similar length goes through both streams' base models and regression nets
        before its proposals are scored. ``joint`` scores one proposal set per video on both
        streams at once (``localize.fusion = joint``): CAS segments of the mean SCP, boundaries
        moved by the mean of the two streams' regressions, Lc the mean of the streams' Lc.

        Returns ``(proposals {kind: {video_id: StreamProposals}}, base outputs {stream:
        {video_id: BaseOutputs}})``; the base outputs are kept only with ``keep_outputs``.
        """
        cfg, loc = self.cfg, self.cfg["localize"]
        want = list(dict.fromkeys(want))
        bad = sorted(set(want) - {"rgb", "flow", "joint"})
        if bad:
            raise AcnError(f"propose: unknown proposal kinds {bad} (rgb, flow, joint)")
        need_both = "joint" in want or cfg["acn"]["scp_source"] == "mean"
        run = [s for s in STREAMS if need_both or s in want]
        lengths = dict(zip(ids, batching._lengths(ds, ids).tolist()))
        self._check_short(ds, ids, lengths)
        order = sorted(ids, key=lambda v: lengths[v])
        batches, cur = [], []
        for vid in order:  # videos of similar length share one padded conv batch
            if cur and (len(cur) + 1) * lengths[vid] > loc["batch_snippets"]:
                batches.append(cur)
                cur = []
            cur.append(vid)
        if cur:
            batches.append(cur)
        props: dict[str, dict[str, StreamProposals]] = {k: {} for k in want}
        kept: dict[str, dict[str, bo.BaseOutputs]] = {s: {} for s in run}
        dev = inference_device(loc["device"])
        share_lc = "joint" in want and ("rgb" in want or "flow" in want)
        # one padding buffer per stream, reused by every batch (a batch's features are not
        # referenced once its proposals are scored) and by later calls
        with torch.inference_mode(), self._models_on(dev, run), \
                self._padding_buffers(run) as buffers:
            for batch in tqdm(batches, desc="localize", disable=not progress, leave=False):
                # not copied: pad_batch copies them into its buffer
                pairs = [ds.features(v, self.feature_dim, copy=False) for v in batch]
                x, regs, outs = {}, {}, {}
                for s in run:
                    sm = self.models[s]
                    # padded on the CPU (scoring reads it there), the networks on ``dev``
                    x[s], mask = batching.pad_batch([p[STREAM_INDEX[s]] for p in pairs],
                                              buffer=buffers[s])
                    xd, md = x[s].to(dev), mask.to(dev)
                    # pad_batch zero-fills the padding: neither model re-masks the input
                    res = sm.base.eval()(xd, md, zero_padded=True)
                    regs[s] = ({a: r.cpu() for a, r in
                                sm.nets(xd, md.sum(1), zero_padded=True).items()}
                               if cfg["acn"]["regression"] else None)
                    scp, att = res.scp.float().cpu().numpy(), res.attention.float().cpu().numpy()
                    vs = res.video_scores.float().cpu().numpy()
                    outs[s] = [bo.BaseOutputs(scp=np.ascontiguousarray(scp[i, :, : lengths[v]]),
                                              attention=np.ascontiguousarray(att[i, : lengths[v]]),
                                              video_scores=vs[i].copy())
                               for i, v in enumerate(batch)]
                for i, vid in enumerate(batch):
                    T = lengths[vid]
                    # this video's Lc tables per stream, kept only where a second scoring
                    # (joint after per-stream) reuses them: they cost memory on long videos
                    lc_cache: dict[str, PrefixIntegral] | None = {} if share_lc else None
                    base = {s: {vid: outs[s][i]} for s in run}
                    if keep_outputs:
                        for s in run:
                            kept[s][vid] = outs[s][i]
                    r_i = {s: {a: (r[i, :, :T] if regs[s] is not None else None)
                               for a, r in (regs[s] or dict.fromkeys(cfg["acn"]["anchors"])).items()}
                           for s in run}
                    for s in ("rgb", "flow"):
                        if s in want:
                            props[s][vid] = self._score_one(
                                x[s][i, :T], self.scored_outputs(base, s)[vid], r_i[s],
                                self.models[s].attention_threshold,
                                lc_cache=lc_cache, lc_keys=[s])
                    if "joint" in want:
                        w = self.rgb_weight()
                        regs_j = {a: (None if r is None else w * r + (1 - w) * r_i["flow"][a])
                                  for a, r in r_i["rgb"].items()}
                        props["joint"][vid] = self._score_one(
                            [x["rgb"][i, :T], x["flow"][i, :T]],
                            mean_outputs(base, vid, w), regs_j,
                            w * self.models["rgb"].attention_threshold
                            + (1 - w) * self.models["flow"].attention_threshold,
                            candidate_scps=([outs["rgb"][i].scp, outs["flow"][i].scp]
                                            if loc["joint_candidates"] == "all" else None),
                            lc_cache=lc_cache, lc_keys=["rgb", "flow"], group_weights=[w, 1 - w])
        return props, kept

    @contextlib.contextmanager
    def _padding_buffers(self, streams: Iterable[str]):
        """``{stream: buffer}`` for ``pad_batch``, kept on this object between calls; taken
        out of it while in use, so that a concurrent call on the same object pads into its
        own buffers instead of overwriting a batch in use."""
        buffers = {s: self._pad_buffers.pop(s, []) for s in streams}
        try:
            yield buffers
        finally:
            self._pad_buffers.update(buffers)

    @contextlib.contextmanager
    def _models_on(self, dev: torch.device, streams: Iterable[str]):
        """Move the streams' base models and regression nets to ``dev`` for a block, and back
        to the CPU after it (everything else, e.g. ``baseline``, expects them there)."""
        if dev.type == "cpu":
            yield
            return
        try:
            for s in streams:
                self.models[s].base.to(dev)
                self.models[s].nets.to(dev)
            yield
        finally:
            for s in streams:
                self.models[s].base.to("cpu")
                self.models[s].nets.to("cpu")

    def _check_short(self, ds: Dataset, ids: list[str], lengths: dict[str, int]) -> None:
        smallest = min(self.cfg["acn"]["anchors"])
        short = [v for v in ids if lengths[v] < smallest]
        if not short:
            return
        msg = (f"{len(short)} video(s) are shorter than the smallest anchor ({smallest} snippets), "
               f"e.g. {short[0]!r} with {lengths[short[0]]} snippets")
        if self.cfg["localize"]["short_videos"] == "error":
            raise AcnError(msg + "; set localize.short_videos=clip to localize them as a whole")
        warnings.warn(msg + "; each is scored as one whole-video proposal", stacklevel=3)

    def _score_one(self, feats: torch.Tensor | list[torch.Tensor], out: bo.BaseOutputs,
                   regs: dict[int, torch.Tensor], attention_threshold: float,
                   candidate_scps: list[np.ndarray] | None = None,
                   lc_cache: dict[str, PrefixIntegral] | None = None,
                   lc_keys: list[str] | None = None,
                   group_weights: list[float] | None = None) -> StreamProposals:
        """Score one video's proposals. ``feats``: ``(T, D)``, or a list of per-stream ``(T, D_k)``
        (joint fusion): then Lc is the mean of the streams' Lc (each stream's cosines count
        equally whatever its feature scale) for CAS segments, and the cosine of the
        concatenated features for anchor proposals. ``candidate_scps``: further ``(C, T)``
        SCPs whose CAS segments join the candidates (scored on ``out.scp`` like the rest).
        ``lc_cache``/``lc_keys``: the Lc prefix tables of each entry of ``feats`` are looked up
        in (or added to) ``lc_cache`` under these keys, so that scoring one video for a stream
        and again for the joint fusion builds each stream's tables once; without it each
        stream's tables are freed as soon as they are used (one stream's at a time).
        ``group_weights``: the weight of each entry of ``feats`` in the mean Lc (default equal;
        a stream of weight 0 is not scored at all)."""
        acn, loc = self.cfg["acn"], self.cfg["localize"]
        groups = feats if isinstance(feats, list) else [feats]
        T = groups[0].shape[0]

        cache = {} if lc_cache is None else lc_cache
        keys = lc_keys or [str(k) for k in range(len(groups))]

        def integral(j: int) -> PrefixIntegral:  # built on first use, once per call at most
            if keys[j] not in cache:
                cache[keys[j]] = feature_integral(groups[j], acn["lc_features"])
            return cache[keys[j]]

        def release(j: int) -> None:  # a table nobody reuses: free it before the next one
            if lc_cache is None:
                cache.pop(keys[j], None)

        regressions = {a: (r if acn["regression"] else None) for a, r in regs.items() if a <= T}
        if not regressions:  # shorter than every anchor: the whole video is the proposal
            regressions = {T: None}
        classes = select_classes(torch.from_numpy(out.video_scores), acn["video_score_threshold"])
        scp = torch.from_numpy(out.scp)
        scp_thr = scp_thresholds(scp, classes, acn["scp_threshold"], acn["scp_threshold_mode"])
        parts = []
        if acn["proposals"] in ("anchors", "both"):
            # one stream: its cached tables; joint: the cosine of the concatenated features
            feats = groups[0] if len(groups) == 1 else torch.cat(groups, 1)
            sp = score_video(feats, scp, regressions, classes,
                             attention=torch.from_numpy(out.attention),
                             attention_threshold=attention_threshold,
                             alpha=acn["alpha"], scp_threshold=scp_thr,
                             score_terms=acn["score_terms"], attention_mode=acn["attention_mode"],
                             lc_features=acn["lc_features"], inflation=acn["inflation"],
                             one_per_position_at_test=loc["one_per_position"],
                             lc_integral=(integral(0) if len(groups) == 1 and classes.numel()
                                          else None))
            parts.append((sp.segments.double(), sp.scores.double(), sp.labels))
        listed = []  # (row in classes, start, end) candidates scored one by one
        if acn["proposals"] in ("cas", "both") and classes.numel():
            cls = classes.numpy()
            listed += [np.stack(cas_candidates(c[cls], acn["cas_thresholds"],
                                               acn["cas_min_length"]), 1)
                       for c in [out.scp, *(candidate_scps or [])]]
        if loc["whole_video"] and classes.numel():
            # where actions fill most of each video (ActivityNet) the whole video is often
            # the best proposal, and -L ranks it among the others
            k = classes.numel()
            listed.append(np.stack([np.arange(k), np.zeros(k, np.int64), np.full(k, T)], 1))
        if listed:
            trip = np.unique(np.concatenate(listed).astype(np.int64), axis=0)
            rows, st, en = trip[:, 0], trip[:, 1], trip[:, 2]
            lab = classes[torch.from_numpy(rows)]
            s2, e2 = regress_segments(torch.from_numpy(st), torch.from_numpy(en), T, regressions)
            # -L is linear in Lc, so the mean of per-stream scores on one SCP is -L with the
            # streams' mean Lc
            gw = group_weights or [1.0 / len(groups)] * len(groups)
            sc = None
            for j in range(len(groups)):  # one stream's Lc tables in memory at a time
                if gw[j] == 0:
                    continue
                part = gw[j] * score_segments(integral(j), scp, lab, s2, e2, acn["inflation"],
                                              acn["alpha"], acn["score_terms"])
                sc = part if sc is None else sc + part
                release(j)
            parts.append((torch.stack([s2, e2], 1), sc, lab))
        if not parts or sum(len(p[1]) for p in parts) == 0:
            return StreamProposals(np.zeros((0, 2)), np.zeros(0), np.zeros(0, dtype=np.int64))
        seg = torch.cat([p[0] for p in parts])
        sc = torch.cat([p[1] for p in parts])
        lab = torch.cat([p[2] for p in parts])
        if loc["video_score_weight"]:
            sc = sc + loc["video_score_weight"] * torch.from_numpy(out.video_scores).double()[lab]
        if loc["nms"] == "greedy":
            keep = nms(seg, sc, lab, iou_threshold=loc["nms_iou"], topk=loc["pre_nms_topk"],
                       max_dets=loc["max_detections"])
        else:
            keep, sc_new = nms(seg, sc, lab, iou_threshold=loc["nms_iou"], method=loc["nms"],
                               sigma=loc["soft_nms_sigma"], topk=loc["pre_nms_topk"],
                               max_dets=loc["max_detections"])
            sc = sc.clone()
            sc[keep] = sc_new
        return StreamProposals(seg[keep].numpy(), sc[keep].numpy(), lab[keep].numpy())

    def fuse(self, rgb: StreamProposals, flow: StreamProposals) -> StreamProposals:
        """Sec. 3.4: all Flow proposals + discounted RGB ones not overlapping same-class Flow."""
        loc = self.cfg["localize"]
        f = loc["fusion_rgb_factor"]
        # "Discount" must lower a score whatever its sign (-L can be negative).
        rgb_scores = np.where(rgb.scores >= 0, rgb.scores * f, rgb.scores / max(f, 1e-12))
        fused = fuse_streams(flow.segments, flow.scores, flow.labels, rgb.segments, rgb_scores,
                             rgb.labels, rgb_factor=1.0, iou_threshold=loc["fusion_iou"])
        return StreamProposals(np.asarray(fused.segments), np.asarray(fused.scores),
                               np.asarray(fused.labels))

    def localize(self, ds: Dataset, video_ids: Iterable[str], streams: Iterable[str] = ("fused",),
                 progress: bool = True, keep_outputs: bool = False
                 ) -> dict[str, dict[str, list[Detection]]]:
        """Detections in SECONDS for each requested stream (``rgb``, ``flow``, ``fused``).

        ``fused`` follows ``localize.fusion``: ``paper`` (Sec. 3.4: Flow proposals plus
        discounted, non-overlapping RGB ones) or ``joint`` (one proposal set scored on both
        streams, see :meth:`propose`). With ``keep_outputs`` the base outputs of every video
        are kept in ``self.last_outputs`` (``{stream: {video_id: BaseOutputs}}``).

        Returns ``{stream: {video_id: [(start_s, end_s, label, score), ...]}}``.
        """
        self.check_dataset(ds, str(ds.root or ds.annotations.name))
        ids = list(video_ids)
        streams = list(streams)
        bad = sorted(set(streams) - {"rgb", "flow", "fused"})
        if bad:
            raise AcnError(f"localize: unknown streams {bad} (rgb, flow, fused)")
        inference_device(self.cfg["localize"]["device"])  # usable here, before any work
        ds.validate(ids, self.feature_dim)  # every video's features, before any work
        joint = self.cfg["localize"]["fusion"] == "joint"
        want = [s for s in ("rgb", "flow") if s in streams or ("fused" in streams and not joint)]
        if "fused" in streams and joint:
            want.append("joint")
        props, self.last_outputs = self.propose(ds, ids, want, progress=progress,
                                                keep_outputs=keep_outputs)
        self._outputs_of = ds if keep_outputs else None
        out: dict[str, dict[str, list[Detection]]] = {}
        for s in streams:
            dets = {}
            for vid in ids:
                if s != "fused":
                    p = props[s][vid]
                elif joint:
                    p = props["joint"][vid]
                else:
                    p = self.fuse(props["rgb"][vid], props["flow"][vid])
                dets[vid] = self.to_seconds(ds, vid, p)
            out[s] = dets
        return out

    def baseline(self, ds: Dataset, ids: list[str], stream: str,
                 cfg: dict | None = None) -> dict[str, list[Detection]]:
        """CAS-thresholding detections from this run's own base models (the in-harness
        baseline): ``stream`` is ``rgb``, ``flow`` or ``both`` (mean of the two streams' CAS)."""
        from acn.baselines import cas_detections

        have = self.last_outputs if self._outputs_of is ds else {}
        def outs(s):  # reuse the outputs kept by the last localize(keep_outputs=True)
            if s in have and all(v in have[s] for v in ids):
                return have[s]
            return self.base_outputs(ds, ids, s)
        if stream == "both":
            both = {s: outs(s) for s in STREAMS}
            outputs = {v: mean_outputs(both, v, self.rgb_weight()) for v in ids}
        else:
            outputs = outs(stream)
        return cas_detections(outputs, ds, cfg)

    def to_seconds(self, ds: Dataset, vid: str, p: StreamProposals) -> list[Detection]:
        video = ds.video(vid)
        scale = video.frames_per_snippet / video.fps
        order = np.argsort(-p.scores, kind="stable")
        return [(float(p.segments[i, 0] * scale), float(min(p.segments[i, 1] * scale,
                                                              video.duration or np.inf)),
                 self.classes[int(p.labels[i])], float(p.scores[i])) for i in order]
