"""Training, inference and storage of the weakly-supervised base model.

One :class:`~acn.model.base.BaseModel` is trained per stream (RGB, Flow) from video-level
labels only (:func:`train_base`); :func:`predict_base` turns it into the per-video
:class:`~acn.train.outputs.BaseOutputs` (SCP ``(C, T)``, attention ``(T,)``, video scores
``(C,)``) that ACN's proposal stage and the CAS baselines read; :func:`save_base_checkpoint`
and :func:`load_base_checkpoint` keep it in a ``weights_only`` file. Units: snippets
throughout.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from acn.batching import _check_stream, _epoch_batches, _ids, _lengths, _StreamReader, pad_batch
from acn.config import over_defaults
from acn.data.annotations import Video
from acn.data.features import Dataset
from acn.errors import AcnError
from acn.fileio import save_torch, verify_checksum
from acn.model.base import BaseModel, snippet_loss, video_loss
from acn.model.normalize import feature_statistics
from acn.train import distributed as dist
from acn.train.outputs import BaseOutputs, label_matrix

#: Default hyper-parameters of :func:`train_base`. Every key:
#:
#: - ``head``: ``"untrimmednet"`` (soft selection, the paper's base model) or ``"topk_mil"``.
#: - ``hidden``: width of the shared Conv1d trunk (0 = linear heads on the features).
#: - ``kernel_size``: temporal kernel of the trunk (1 = per-snippet; 3 = sees neighbours).
#: - ``dropout``: dropout on the trunk output (hidden activations).
#: - ``input_dropout``: element-wise dropout on the input features.
#: - ``k_divisor``: top-k MIL: ``k = max(1, ceil(T / k_divisor))``.
#: - ``scp``: top-k MIL SCP activation, ``"softmax"`` or ``"sigmoid"``.
#: - ``attention``: top-k MIL attention, ``"branch"`` or ``"max_logit"``.
#: - ``pool``: UntrimmedNet pooling of ``"probs"`` or ``"logits"``.
#: - ``background``: add a background class trained on the non-selected snippets.
#: - ``epochs``: fixed number of passes over the training videos (no early stopping).
#: - ``batch_size``: videos per mini-batch.
#: - ``lr``: AdamW learning rate.
#: - ``weight_decay``: AdamW decoupled weight decay.
#: - ``lr_schedule``: ``"constant"`` or ``"cosine"`` (cosine decay to 0 over all steps).
#: - ``grad_clip``: max gradient norm (0 = off).
#: - ``max_len``: training crop: a longer video is cut to a random window of this many
#:   snippets each epoch (W-TALC uses 750); 0 = never crop.
#: - ``bucket``: batches per length bucket: each epoch the shuffled videos are split into
#:   groups of ``bucket * batch_size``, sorted by length inside a group and cut into batches,
#:   so a batch pads little yet batches still vary from epoch to epoch.
#: - ``cache_mb``: keep the training stream in RAM when it needs at most this many MiB
#:   (0 = always read from the store).
#:
#: Why these values (measured on ``acn.data.synth.synthesize("thumos14", dim=1024)``, 200
#: train / 212 test videos, video classification mAP on the synthetic test subset, 1 CPU
#: thread): the selection branch starts at zero (uniform attention; see
#: :class:`~acn.model.base.BaseModel`), which removed a seed lottery (RGB 0.83-0.93 -> 0.92-0.93
#: over 3 seeds). With it, weight decay 1e-3 vs 0.3 gives the same classification mAP (RGB
#: 0.924 vs 0.927, Flow ~0.95) and 0.3 slightly better CAS localisation; batch 4 instead of 8
#: keeps classification and raises CAS-baseline mAP@0.5 (RGB 14.4 -> 16.8); 40 epochs helped
#: Flow localisation, not RGB classification, so 30. lr 1e-4 underfits (0.65), 3e-3 is worse
#: than 1e-3. Single-seed screens made before zero init (RGB, reference 0.83): hidden 0 (0.74)
#: and 128 (0.82), dropout 0.7 (0.81), input dropout 0.5 (0.76, and 8x slower on the CPU),
#: kernel 3 (0.76, 3x slower), logit pooling (0.81), the top-k MIL head (0.74) and the
#: background class (0.62) showed no gain. Final recipe, 3 training seeds: RGB 0.930 +- 0.004,
#: Flow 0.949 +- 0.003 (synth seed 1: RGB 0.898, Flow 0.960); one stream trains in 1.5-2 min
#: on one thread of a busy 2-core machine.
#:
#: The head: with this recipe the top-k MIL head's CAS localizes better than soft selection's
#: (validation split carved from the THUMOS14-timeline training videos, 3 seeds, two-stream
#: CAS baseline mAP@0.5 31.7 vs 28.8, and ACN on top of it 33.0 vs 29.7; docs/ablation.md), so
#: it is the default; ``head="untrimmednet"`` is the paper's model.
DEFAULT_BASE_CONFIG: dict[str, Any] = {
    "head": "topk_mil",
    "hidden": 256,
    "kernel_size": 1,
    "dropout": 0.5,
    "input_dropout": 0.0,
    "k_divisor": 8,
    "scp": "softmax",
    "attention": "branch",
    "pool": "probs",
    "background": False,
    "epochs": 30,
    "batch_size": 4,
    "lr": 1e-3,
    "weight_decay": 0.3,
    "lr_schedule": "cosine",
    "grad_clip": 10.0,
    "max_len": 750,
    "bucket": 4,
    "cache_mb": 2048,
}

_MODEL_KEYS = ("hidden", "kernel_size", "dropout", "input_dropout", "head", "k_divisor", "scp",
               "attention", "pool", "background")


# -- configuration ---------------------------------------------------------------------------
def resolve_base_config(cfg: dict[str, Any] | None) -> dict[str, Any]:
    """Merge ``cfg`` over :data:`DEFAULT_BASE_CONFIG`; unknown keys raise :class:`AcnError`."""
    out = over_defaults(cfg, DEFAULT_BASE_CONFIG, "base model config")
    for key in ("epochs", "batch_size", "bucket"):
        if not isinstance(out[key], int) or out[key] < 1:
            raise AcnError(f"base model config: {key} must be a positive integer, got {out[key]!r}")
    for key in ("max_len", "cache_mb"):
        if not isinstance(out[key], int) or out[key] < 0:
            raise AcnError(f"base model config: {key} must be an integer >= 0, got {out[key]!r}")
    for key in ("lr", "weight_decay", "grad_clip"):
        if not isinstance(out[key], (int, float)) or out[key] < 0 or not math.isfinite(out[key]):
            raise AcnError(f"base model config: {key} must be a number >= 0, got {out[key]!r}")
    if out["lr"] <= 0:
        raise AcnError(f"base model config: lr must be > 0, got {out['lr']!r}")
    if out["lr_schedule"] not in ("constant", "cosine"):
        raise AcnError(f"base model config: lr_schedule must be 'constant' or 'cosine', got "
                       f"{out['lr_schedule']!r}")
    return out


def build_model(cfg: dict[str, Any], feature_dim: int, num_classes: int,
                input_stats: tuple[np.ndarray, np.ndarray] | None = None) -> BaseModel:
    """A fresh :class:`BaseModel` for a resolved config; with ``input_stats`` (``(D,)`` mean
    and std of the training videos) it standardises its input with them."""
    model = BaseModel(feature_dim=feature_dim, num_classes=num_classes,
                      input_norm=input_stats is not None, **{k: cfg[k] for k in _MODEL_KEYS})
    if input_stats is not None:
        model.set_input_statistics(*input_stats)
    return model


def stream_statistics(ds: Dataset, video_ids: Iterable[str | Video], stream: str
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension ``(D,)`` mean and std of one stream over every snippet of ``video_ids``
    (pass TRAINING videos only; see :mod:`acn.model.normalize`)."""
    col = _check_stream(stream)
    dim = ds.feature_dim()
    return feature_statistics(ds.features(v, dim, copy=False)[col] for v in _ids(video_ids))


# -- training --------------------------------------------------------------------------------
def train_base(ds: Dataset, video_ids: Iterable[str | Video], stream: str,
               cfg: dict[str, Any] | None, seed: int, progress: bool = True,
               device: str | torch.device = "cpu",
               input_stats: tuple[np.ndarray, np.ndarray] | None = None,
               targets: Mapping[str, np.ndarray] | None = None, target_weight: float = 0.0
               ) -> tuple[BaseModel, dict[str, Any]]:
    """Train a base model for one stream from video-level labels.

    Args:
        ds: the dataset (only ``video_ids`` are read; pass training-subset videos only).
        video_ids: training videos (ids or :class:`Video`); unlabelled ones are skipped.
        stream: ``"rgb"`` or ``"flow"``.
        cfg: hyper-parameters over :data:`DEFAULT_BASE_CONFIG`.
        seed: seeds the weights, dropout, crops and batch order (deterministic on CPU).
        progress: show a tqdm bar over epochs.
        device: torch device.
        input_stats: ``(mean, std)``, each ``(D,)``, of the stream on the training videos
            (:func:`stream_statistics`): the model standardises its input with them.
        targets: the second stage's snippet pseudo-labels, ``{video_id: (T,) int64}`` (a
            class, ``C`` for background, ``-1`` ignored; :mod:`acn.train.second_stage`):
            with ``target_weight > 0``, ``target_weight`` times :func:`snippet_loss` is added
            to the video-level loss (videos missing from ``targets`` add nothing).

    Returns:
        ``(model, info)``: the trained model in eval mode; ``info`` holds the resolved
        ``config``, per-epoch mean ``losses``, ``seconds``, ``num_videos``, ``feature_dim``,
        ``classes`` and ``stream``.
    """
    _check_stream(stream)
    cfg = resolve_base_config(cfg)
    ids = _ids(video_ids)
    y_all = label_matrix(ds, ids)
    keep = y_all.sum(1) > 0
    if not keep.all():
        skipped = [v for v, k in zip(ids, keep) if not k]
        warnings.warn(f"base model: {len(skipped)} training videos have no video-level label "
                      f"and are skipped (e.g. {skipped[:3]})", stacklevel=2)
    ids = [v for v, k in zip(ids, keep) if k]
    if not ids:
        raise AcnError(f"{ds.root or ds.annotations.name}: no labelled training video")
    y_all = y_all[keep]
    lengths = _lengths(ds, ids)
    dim = ds.feature_dim()
    cache = cfg["cache_mb"] > 0 and lengths.sum() * dim * 4 <= cfg["cache_mb"] * 2**20
    read = _StreamReader(ds, stream, dim, cache)
    crop_lengths = np.minimum(lengths, cfg["max_len"]) if cfg["max_len"] else lengths

    use_targets = targets is not None and target_weight > 0
    if use_targets:
        for vid, n in zip(ids, lengths):
            t = targets.get(vid)
            if t is not None and len(t) != n:
                raise AcnError(f"base model: pseudo-labels of video {vid} have {len(t)} "
                               f"snippets, its features {n}")
    rng = np.random.default_rng(seed)
    n_batches = math.ceil(len(ids) / cfg["batch_size"])
    total_steps = cfg["epochs"] * n_batches
    losses: list[float] = []
    t0 = time.perf_counter()
    # Weights and dropout draw from torch's global RNG: seed it inside a fork so the caller's
    # RNG state is left as it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(cfg, dim, len(ds.classes), input_stats).to(device)
        dist.broadcast_parameters(model)
        if dist.rank() > 0:  # own dropout masks per rank (rank 0 keeps the single-process stream)
            torch.manual_seed(seed + 7919 * dist.rank())
        opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"],
                                weight_decay=cfg["weight_decay"])
        sched = (torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps)))
            if cfg["lr_schedule"] == "cosine" else None)
        model.train()
        bar = tqdm(range(cfg["epochs"]), desc=f"base {stream}",
                   disable=not progress or not dist.is_main(), leave=False)
        for _ in bar:
            tot, n = 0.0, 0
            for b in _epoch_batches(crop_lengths, cfg["batch_size"], cfg["bucket"], rng):
                # Crop starts are drawn for the whole global batch on every rank (same RNG
                # stream as a single process); each rank then runs its share of the batch.
                starts = [int(rng.integers(0, lengths[i] - cfg["max_len"] + 1))
                          if cfg["max_len"] and lengths[i] > cfg["max_len"] else 0 for i in b]
                mine = dist.shard(range(len(b)))
                opt.zero_grad(set_to_none=True)
                part = 0.0
                if mine:
                    feats, tgts = [], []
                    for j in mine:
                        a = read(ids[b[j]])
                        t = targets.get(ids[b[j]]) if use_targets else None
                        if t is None:
                            t = np.full(a.shape[0], -1, dtype=np.int64)
                        if cfg["max_len"] and a.shape[0] > cfg["max_len"]:
                            a = a[starts[j]: starts[j] + cfg["max_len"]]
                            t = t[starts[j]: starts[j] + cfg["max_len"]]
                        feats.append(a)
                        tgts.append(t)
                    x, mask = pad_batch(feats, device)
                    labels = torch.from_numpy(y_all[b[mine]]).to(device)
                    out = model(x, mask)
                    loss = video_loss(out, labels, background=model.background)
                    if use_targets:
                        tt = torch.full(mask.shape, -1, dtype=torch.long)
                        for j, t in enumerate(tgts):
                            tt[j, :len(t)] = torch.from_numpy(np.asarray(t, dtype=np.int64))
                        loss = loss + target_weight * snippet_loss(out, tt.to(device), mask)
                    # weighted by this rank's share: the summed gradients are the batch mean's
                    (loss * (len(mine) / len(b)) if len(mine) < len(b) else loss).backward()
                    part = loss.item() * len(mine)
                (part,) = dist.all_reduce_gradients(model.parameters(), [part])
                if cfg["grad_clip"] > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
                opt.step()
                if sched is not None:
                    sched.step()
                tot += part
                n += len(b)
            losses.append(tot / n)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
    model.eval()
    info = {"config": cfg, "losses": losses, "seconds": time.perf_counter() - t0,
            "num_videos": len(ids), "feature_dim": dim, "classes": list(ds.classes),
            "stream": stream}
    return model, info


# -- inference -------------------------------------------------------------------------------
def predict_base(model: BaseModel, ds: Dataset, video_ids: Iterable[str | Video], stream: str,
                 batch_size: int = 16, progress: bool = False) -> dict[str, BaseOutputs]:
    """Run a trained base model on whole videos (no cropping).

    Videos are batched by similar length to pad little; padding does not change outputs.

    Returns:
        ``{video_id: BaseOutputs}`` with scp ``(C, T)``, attention ``(T,)``, video scores
        ``(C,)``, all float32 numpy, T the video's full snippet count.
    """
    _check_stream(stream)
    ids = _ids(video_ids)
    if batch_size < 1:
        raise AcnError(f"predict_base: batch_size must be >= 1, got {batch_size}")
    dim = int(model.kwargs["feature_dim"])
    if len(ds.classes) != model.num_classes:
        raise AcnError(f"{ds.root or ds.annotations.name}: dataset has {len(ds.classes)} "
                       f"classes but the base model was trained on {model.num_classes}")
    lengths = _lengths(ds, ids)
    order = np.argsort(lengths, kind="stable")
    device = next(model.parameters()).device
    read = _StreamReader(ds, stream, dim, cache=False)
    was_training = model.training
    model.eval()
    out: dict[str, BaseOutputs] = {}
    try:
        with torch.inference_mode():
            starts = range(0, len(ids), batch_size)
            for s in tqdm(starts, desc=f"predict {stream}", disable=not progress, leave=False):
                b = order[s: s + batch_size]
                feats = [read(ids[i]) for i in b]
                x, mask = pad_batch(feats, device)
                res = model(x, mask)
                scp = res.scp.float().cpu().numpy()
                att = res.attention.float().cpu().numpy()
                vs = res.video_scores.float().cpu().numpy()
                for j, i in enumerate(b):
                    T = feats[j].shape[0]
                    out[ids[i]] = BaseOutputs(scp=np.ascontiguousarray(scp[j, :, :T]),
                                              attention=np.ascontiguousarray(att[j, :T]),
                                              video_scores=vs[j].copy())
    finally:
        model.train(was_training)
    return {vid: out[vid] for vid in ids}


CHECKPOINT_FORMAT = "acn-base-model"


def save_base_checkpoint(path: str | Path, model: BaseModel, meta: dict[str, Any]) -> None:
    """Write weights + constructor kwargs + ``meta`` to one file, atomically.

    ``meta`` (resolved config, class list, calibrated threshold, stream, feature dim, ...)
    may hold only str, int, float, bool, None, lists and dicts, so the file loads with
    ``torch.load(path, weights_only=True)``.
    """
    meta = _plain(meta, "meta")
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    blob = {"format": CHECKPOINT_FORMAT, "version": 1, "model_kwargs": dict(model.kwargs),
            "state_dict": state, "meta": meta}
    save_torch(Path(path), blob)  # atomic, with a SHA-256 sidecar checked on load


def load_base_checkpoint(path: str | Path, device: str | torch.device = "cpu"
                         ) -> tuple[BaseModel, dict[str, Any]]:
    """Rebuild a model saved by :func:`save_base_checkpoint`; returns ``(model, meta)``."""
    path = Path(path)
    if not path.is_file():
        raise AcnError(f"{path}: base model checkpoint not found")
    verify_checksum(path, "checkpoint")
    try:
        blob = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for corrupt/unsafe files
        raise AcnError(f"{path}: not a readable acn checkpoint ({type(e).__name__}: "
                       f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
        raise AcnError(f"{path}: not an acn base model checkpoint")
    try:
        model = BaseModel(**blob["model_kwargs"])
        model.load_state_dict(blob["state_dict"])
    except (TypeError, RuntimeError, KeyError) as e:
        raise AcnError(f"{path}: checkpoint does not match the base model ({e})") from None
    model.to(device).eval()
    return model, blob.get("meta", {})


def _plain(obj: Any, where: str) -> Any:
    """A copy of ``obj`` made of str/int/float/bool/None/lists/dicts (numpy scalars and arrays
    converted), or :class:`AcnError` naming what cannot go into a weights_only checkpoint."""
    if obj is None or isinstance(obj, (str, bool)):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise AcnError(f"checkpoint {where}: key {k!r} is not a string")
            out[k] = _plain(v, f"{where}[{k!r}]")
        return out
    raise AcnError(f"checkpoint {where}: {type(obj).__name__} cannot be stored in a "
                   "weights_only checkpoint (use str, int, float, bool, lists, dicts)")
