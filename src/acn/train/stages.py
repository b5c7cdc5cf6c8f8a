"""One stream's stages of :meth:`acn.pipeline.ACN.fit`, and the files they leave in a run folder.

- the base stage: :func:`fit_base` trains the stream's base model on the training videos,
  predicts them and calibrates the attention threshold; :func:`reuse_base` takes a finished
  one from a run folder (this run resumed, or ``base_from``);
- the regression stage: :func:`fit_regression` trains the stream's regression nets, with a
  state file after every epoch for ``--resume``;
- :class:`StreamModel`: what the stages give a stream for test time.

The functions take the :class:`~acn.pipeline.ACN` being fitted as ``model`` (its config,
log, class list and feature width); regression checkpoints load with ``weights_only=True``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from acn import selection
from acn.batching import STREAM_INDEX, STREAMS
from acn.data.features import Dataset
from acn.errors import AcnError
from acn.fileio import save_torch, verify_checksum
from acn.model.regression import RegressionNets
from acn.train import distributed as dist
from acn.train import second_stage
from acn.train.base import load_base_checkpoint, predict_base, save_base_checkpoint, train_base
from acn.train.outputs import (
    BaseOutputs,
    calibrate_attention,
    classification_map,
    load_outputs,
    mean_outputs,
    save_outputs,
)
from acn.train.regression import train_regression


@dataclass
class StreamModel:
    """Everything one stream needs at test time."""

    base: torch.nn.Module
    nets: RegressionNets
    attention_threshold: float


def input_statistics(module: torch.nn.Module) -> tuple[np.ndarray, np.ndarray] | None:
    """``(mean, std)`` a model standardises its input with, or None (no ``norm``)."""
    norm = getattr(module, "norm", None)
    if norm is None:
        return None
    return norm.mean.cpu().numpy().copy(), (1.0 / norm.inv_std).cpu().numpy()


def save_checkpoint(path: Path, obj: dict) -> None:
    save_torch(path, obj)  # atomic, with a SHA-256 sidecar checked by load_checkpoint


def load_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise AcnError(f"{path}: checkpoint not found (was the run trained to the end?)")
    verify_checksum(path, "checkpoint")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a corrupt file here
        first = str(e).splitlines()[0] if str(e) else ""
        raise AcnError(f"{path}: not a readable acn checkpoint ({type(e).__name__}: "
                       f"{first})") from None


def check_compatible(model, meta: dict, where: Path) -> None:
    """A base checkpoint's class list and feature width must be ``model``'s."""
    if meta.get("classes") != model.classes:
        raise AcnError(f"{where}: checkpoint was trained on a different class list "
                       f"({len(meta.get('classes', []))} classes) than the dataset "
                       f"({len(model.classes)})")
    if int(meta.get("feature_dim", -1)) != model.feature_dim:
        raise AcnError(f"{where}: checkpoint expects {meta.get('feature_dim')}-d features, "
                       f"the dataset has {model.feature_dim}-d")


def load_nets(ck: dict, where: Path) -> RegressionNets:
    """The regression nets of a checkpoint dict saved by :func:`fit_regression`."""
    try:
        nets = RegressionNets(**ck["kwargs"])
        nets.load_state_dict(ck["state_dict"])
    except (KeyError, RuntimeError, TypeError) as e:
        raise AcnError(f"{where}: regression checkpoint does not fit ({e})") from None
    return nets.eval()


def stream_recipe(model, stream: str) -> dict:
    """``base.per_stream[stream]``: the base-recipe overrides chosen for this stream."""
    per = model.cfg["base"]["per_stream"] or {}
    if not isinstance(per, dict) or not all(isinstance(per.get(s, {}), dict) for s in STREAMS):
        raise AcnError(f"base.per_stream must map rgb/flow to recipe overrides, got {per!r}")
    return dict(per.get(stream) or {})


def reuse_base(model, src: Path, run: Path, stream: str, ids: list[str], base_path: Path,
               main: bool) -> tuple[torch.nn.Module, dict[str, BaseOutputs], float]:
    """The base stage of one stream, finished in the run folder ``src`` (this run, resumed,
    or ``base_from``): its base model, the base outputs of the training videos ``ids`` and
    its attention threshold; copied into ``run`` when ``src`` is another folder. Config
    values ``model.cfg`` leaves null take what that run chose with these base models."""
    cfg = model.cfg
    net, meta = load_base_checkpoint(src / "checkpoints" / f"{stream}_base.pt")
    check_compatible(model, meta, base_path)
    for sec, key in selection.CHOSEN_FALLBACKS:
        if cfg[sec][key] is None:  # what that run chose with these base models
            cfg[sec][key] = meta.get("config", {}).get(sec, {}).get(key)
    outputs = load_outputs(src / "base_outputs" / stream, ids)
    threshold = float(meta["attention_threshold"])
    if src != run and main:
        save_base_checkpoint(base_path, net, {**meta, "config": cfg})
    return net, outputs, threshold


def fit_base(model, ds: Dataset, ids: list[str], stream: str, si: int, base_cfg: dict,
             stats: tuple[np.ndarray, np.ndarray] | None, run: Path, base_path: Path,
             progress: bool, main: bool, targets: dict[str, np.ndarray] | None = None
             ) -> tuple[torch.nn.Module, dict[str, BaseOutputs], float]:
    """The base stage of one stream: its base model trained on the training videos ``ids``
    (recipe ``base_cfg`` with the stream's chosen overrides), their base outputs and the
    attention threshold calibrated on them; written to ``run`` and logged in ``model.log``,
    with a warning when the model did not learn. ``targets``: the second stage's snippet
    pseudo-labels (:func:`second_stage_labels`), trained on with weight
    ``second_stage.loss_weight``."""
    t0 = time.perf_counter()
    cfg = model.cfg
    seed = int(cfg["seed"])
    recipe = {**base_cfg, **stream_recipe(model, stream)}
    net, info = train_base(ds, ids, stream, recipe, seed=seed + si,
                           progress=progress, device=dist.train_device(),
                           input_stats=stats, targets=targets,
                           target_weight=float(cfg["second_stage"]["loss_weight"]))
    net.cpu()
    # every rank predicts every training video: ~1% of training's cost, and the
    # regression stage (sharded per batch) needs any video's outputs on any rank
    outputs = predict_base(net, ds, ids, stream)
    threshold = calibrate_attention(outputs, cfg["base"]["attention_percentile"])
    cls_map = classification_map(outputs, ds, ids)
    if main:
        save_outputs(run / "base_outputs" / stream, outputs)
        save_base_checkpoint(base_path, net, {
            "config": cfg, "classes": model.classes, "stream": stream,
            "feature_dim": model.feature_dim, "attention_threshold": threshold})
    ok = selection.learned(cls_map, cfg["select"]["min_train_map"])
    sel_s = model.log.get("selection", {}).get("streams", {}).get(stream, {})
    model.log[f"{stream}_base"] = {
        "seconds": round(time.perf_counter() - t0, 2),
        "train_classification_map": cls_map, "learned": ok,
        # of the same recipe trained without the carved videos (None: no carving)
        "carved_validation_map": sel_s.get("validation_map"),
        "attention_threshold": threshold, "recipe": stream_recipe(model, stream),
        "losses": info.get("losses"), "processes": dist.world_size()}
    if not ok:
        msg = selection.not_learned_message(
            stream, cls_map, sel_s.get("validation_map"), info.get("losses"),
            len(sel_s.get("tried", [])) or 1)
        model.log[f"{stream}_base"]["warning"] = msg
        if main:
            warnings.warn(msg, stacklevel=3)  # at the caller of ACN.fit
    return net, outputs, threshold


def second_stage_labels(model, ds: Dataset, ids: list[str],
                        outputs: dict[str, dict[str, BaseOutputs]]) -> tuple[dict, dict]:
    """One second-stage round's snippet pseudo-labels of the training videos ``ids``, from
    the weighted mean (``localize.rgb_weight``) of both streams' base ``outputs``
    (:func:`acn.train.second_stage.cas_pseudo_labels`), and what to log of them: the
    fraction labelled and, over the videos whose annotations have segments, snippet-level
    precision and recall (:func:`acn.train.second_stage.label_quality`)."""
    ss = model.cfg["second_stage"]
    C, w = len(model.classes), model.rgb_weight()
    targets, truth = {}, {}
    for vid in ids:
        video = ds.video(vid)
        classes = [ds.annotations.class_index(lab, f"video {vid}") for lab in video.labels]
        scp = mean_outputs(outputs, vid, w).scp
        targets[vid] = second_stage.cas_pseudo_labels(scp, classes, C, float(ss["fg_fraction"]),
                                                      float(ss["bg_fraction"]))
        if video.segments:
            per_s = video.fps / video.frames_per_snippet
            truth[vid] = second_stage.truth_labels(
                [(g.start * per_s, g.end * per_s, ds.annotations.class_index(g.label, vid))
                 for g in video.segments], scp.shape[1], C)
    labelled = np.concatenate([t for t in targets.values()]) if targets else np.zeros(0)
    info = {"rgb_weight": w, "labelled": float((labelled != second_stage.IGNORE).mean())
            if labelled.size else 0.0,
            "foreground": float(((labelled >= 0) & (labelled < C)).mean()) if labelled.size
            else 0.0, "videos_with_segments": len(truth)}
    if truth:
        q = second_stage.label_quality({v: targets[v] for v in truth}, truth, C)
        info.update({k: round(v, 4) for k, v in q.items()})
    return targets, info


def embedding_source(base: torch.nn.Module, features: Callable[[str], np.ndarray]
                     ) -> Callable[[str], np.ndarray]:
    """``video id -> (T, H)`` float32 embedding of the features ``features(video id)`` by the
    base model ``base`` in eval mode (:meth:`acn.model.base.BaseModel.embed`), computed once
    per video: what Lc is computed on under ``acn.lc_features: embedding``."""
    cache: dict[str, np.ndarray] = {}

    def embedding(vid: str) -> np.ndarray:
        if vid not in cache:
            x = torch.from_numpy(np.ascontiguousarray(features(vid), dtype=np.float32))[None]
            with torch.inference_mode():
                h = base.eval().embed(x, torch.ones(x.shape[:2], dtype=torch.bool))
            cache[vid] = h[0].float().numpy()
        return cache[vid]

    return embedding


def lc_source_for(cfg: dict, base: torch.nn.Module, features: Callable[[str], np.ndarray]
                  ) -> Callable[[str], np.ndarray] | None:
    """:func:`embedding_source` under ``acn.lc_features: embedding``, else None (Lc on the
    features the regression nets read)."""
    return embedding_source(base, features) if cfg["acn"]["lc_features"] == "embedding" else None


def fit_regression(model, ds, ids, stream, si, outputs, labels, ckdir, resume, progress):
    """The regression stage of one stream: its nets trained on the training videos
    (``outputs``: the base outputs its proposals are scored on), with a state file after every
    epoch; with ``resume`` a finished stage is loaded and an unfinished one continued."""
    cfg = model.cfg
    final = ckdir / f"{stream}_regression.pt"
    state_path = ckdir / f"{stream}_regression_state.pt"
    if resume and final.is_file():
        return load_nets(load_checkpoint(final), final)
    state = None
    if resume and state_path.is_file():
        state = load_checkpoint(state_path)
        if state.get("config") != cfg:
            raise AcnError(f"{state_path}: saved with a different config; resume needs the "
                           "same config (or start a new run folder)")
    col = STREAM_INDEX[stream]
    cache: dict[str, np.ndarray] = {}

    def feats(vid: str) -> np.ndarray:
        if vid not in cache:
            cache[vid] = ds.features(vid, model.feature_dim)[col]
        return cache[vid]

    def checkpoint(epoch, nets, opt, history):
        if not dist.is_main():
            return
        save_checkpoint(state_path, {"nets": nets.state_dict(), "optimizer": opt.state_dict(),
                                     "epoch": epoch, "history": history, "config": cfg})

    t0 = time.perf_counter()
    nets, history = train_regression(
        feats, ids, outputs, labels, model.feature_dim, cfg["acn"], cfg["train"],
        seed=int(cfg["seed"]) + 10 + si, progress=progress, desc=f"{stream} regression",
        checkpoint=checkpoint, resume=state,
        input_stats=(input_statistics(model.models[stream].base)
                     if cfg["data"]["standardize"] else None),
        lc_source=lc_source_for(cfg, model.models[stream].base, feats))
    if dist.is_main():
        save_checkpoint(final, {"state_dict": nets.state_dict(), "kwargs": nets.kwargs(),
                                "config": cfg, "classes": model.classes, "stream": stream,
                                "history": history})
    model.log[f"{stream}_regression"] = {"seconds": round(time.perf_counter() - t0, 2),
                                         "history": history}
    return nets
