"""Training the per-stream regression networks with the coherence loss (paper Sec. 3.3).

Per mini-batch of videos: run every anchor's network over the padded batch, then for each
video score all proposals of the selected classes (:func:`acn.localize.proposals.score_video`
in training mode: SCP filtering, one proposal per snippet position, mean L of the kept
ones) and minimise the mean over videos. The paper's recipe: SGD, lr 1e-3 divided by 10 after
each epoch, 3 epochs, 4 videos per batch.

A checkpoint is written atomically after every epoch (weights, optimiser, epoch); training
resumed from it replays the remaining epochs exactly, because the video order of an epoch
depends only on (seed, epoch).
"""

from __future__ import annotations

import math
from typing import Callable, Mapping

import numpy as np
import torch
from tqdm.auto import tqdm

from acn.localize.proposals import score_video, select_classes
from acn.localize.segments import scp_thresholds
from acn.errors import AcnError
from acn.model.regression import RegressionNets
from acn.train import distributed as dist


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The video order of one epoch: a permutation fixed by (seed, epoch)."""
    return np.random.default_rng([seed, epoch, 0xAC4]).permutation(n)


def pad_batch(arrays: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (T_i, D) arrays into a zero-padded (B, T_max, D) tensor and lengths (B,)."""
    lengths = torch.tensor([a.shape[0] for a in arrays], dtype=torch.long)
    out = torch.zeros(len(arrays), int(lengths.max()), arrays[0].shape[1], dtype=torch.float32)
    for i, a in enumerate(arrays):
        out[i, : a.shape[0]] = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    return out, lengths


def training_classes(video_scores: np.ndarray, label_idx: list[int], source: str,
                     threshold: float) -> torch.Tensor:
    """Classes a training video contributes: predicted (video score > threshold, the paper's
    wording) or its ground-truth video labels (weak labels are available in training)."""
    if source == "labels":
        return torch.tensor(sorted(label_idx), dtype=torch.long)
    return select_classes(torch.from_numpy(np.asarray(video_scores)), threshold)


def make_optimizer(nets: torch.nn.Module, cfg: Mapping) -> torch.optim.Optimizer:
    if cfg["optimizer"] == "sgd":
        return torch.optim.SGD(nets.parameters(), lr=cfg["lr"], momentum=cfg["momentum"],
                               weight_decay=cfg["weight_decay"])
    return torch.optim.Adam(nets.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])


def train_regression(
    features: Callable[[str], np.ndarray],
    video_ids: list[str],
    base_outputs: Mapping[str, object],
    labels: Mapping[str, list[int]],
    in_dim: int,
    acn_cfg: Mapping,
    train_cfg: Mapping,
    seed: int,
    progress: bool = True,
    desc: str = "regression",
    checkpoint: Callable[[int, RegressionNets, torch.optim.Optimizer, list], None] | None = None,
    resume: dict | None = None,
    input_stats: tuple[np.ndarray, np.ndarray] | None = None,
    lc_source: Callable[[str], np.ndarray] | None = None,
) -> tuple[RegressionNets, list[dict]]:
    """Train one stream's regression networks.

    Args:
        features: video id -> (T, D) float32 features of this stream.
        video_ids: training videos (never the test subset).
        base_outputs: video id -> object with ``scp`` (C, T), ``video_scores`` (C,).
        labels: video id -> ground-truth class indices (used when class_source = labels).
        acn_cfg: the ``acn`` config section; train_cfg: the ``train`` section.
        checkpoint: called after each epoch with (epoch, nets, optimizer, history).
        resume: a state saved by :mod:`acn.pipeline` (``nets``, ``optimizer``, ``epoch``,
            ``history``) to continue from.
        input_stats: ``(mean, std)``, each ``(D,)``, of this stream on the training videos:
            the nets standardise their input with them (:mod:`acn.model.normalize`).
        lc_source: video id -> (T, H) features Lc is computed on instead of ``features``
            (required by ``acn.lc_features: embedding``: the base model's embedding,
            :func:`acn.train.stages.embedding_source`).
    Returns:
        (nets, history): history holds per-epoch mean loss, proposals kept and the mean
        |offset| / P of the kept proposals (how far regression moved the boundaries).
    """
    if acn_cfg["lc_features"] == "embedding" and lc_source is None:
        raise AcnError("train_regression: acn.lc_features is 'embedding' but no base model "
                       "embedding was given (lc_source)")
    torch.manual_seed(seed)
    nets = RegressionNets(in_dim, list(acn_cfg["anchors"]), filters=acn_cfg["filters"],
                          zero_init=acn_cfg["zero_init"], input_norm=input_stats is not None)
    if input_stats is not None:
        nets.set_input_statistics(*input_stats)
    dist.broadcast_parameters(nets)
    opt = make_optimizer(nets, train_cfg)
    history: list[dict] = []
    start_epoch = 0
    if resume is not None:
        nets.load_state_dict(resume["nets"])
        opt.load_state_dict(resume["optimizer"])
        start_epoch = int(resume["epoch"])
        history = list(resume["history"])
    epochs = int(train_cfg["epochs"])
    bs = int(train_cfg["batch_videos"])
    regress = bool(acn_cfg["regression"])
    for epoch in range(start_epoch, epochs):
        lr = train_cfg["lr"] * train_cfg["lr_decay"] ** epoch
        for g in opt.param_groups:
            g["lr"] = lr
        order = epoch_order(len(video_ids), seed, epoch)
        n_batches = math.ceil(len(order) / bs)
        losses, kept, offsets, short = [], 0, [], 0
        nets.train()
        bar = tqdm(range(n_batches), desc=f"{desc} epoch {epoch + 1}/{epochs}",
                   disable=not progress or not dist.is_main(), leave=False, unit="batch")
        for b in bar:
            # under torchrun each rank takes its share of the same global batch
            ids = dist.shard([video_ids[i] for i in order[b * bs:(b + 1) * bs]])
            if ids:
                feats, lengths = pad_batch([features(v) for v in ids])
                regs = nets(feats, lengths)
                lc_feats = (feats if lc_source is None
                            else pad_batch([lc_source(v) for v in ids])[0])
            terms = []
            for i, vid in enumerate(ids):
                T = int(lengths[i])
                fit = {a: (regs[a][i, :, :T] if regress else None) for a in nets.anchors if a <= T}
                if not fit:  # shorter than every anchor: no proposal to learn from
                    short += 1
                    continue
                out = base_outputs[vid]
                classes = training_classes(out.video_scores, labels[vid], acn_cfg["class_source"],
                                           acn_cfg["video_score_threshold"])
                scp = torch.from_numpy(np.asarray(out.scp))
                thr = scp_thresholds(scp, classes, acn_cfg["scp_threshold"],
                                     acn_cfg["scp_threshold_mode"])
                sp = score_video(
                    lc_feats[i, :T], scp, fit, classes, alpha=acn_cfg["alpha"], scp_threshold=thr,
                    score_terms=acn_cfg["score_terms"], lc_features=acn_cfg["lc_features"],
                    training=True)
                if sp.loss is not None:
                    terms.append(sp.loss)
                    kept += sp.n_kept
                    with torch.no_grad():
                        k = sp.kept
                        anchor = sp.anchor[k].to(sp.segments.dtype)
                        start0 = sp.position[k].to(sp.segments.dtype)
                        moved = (sp.segments[k, 0] - start0).abs() + \
                            (sp.segments[k, 1] - start0 - anchor).abs()
                        offsets.append((moved / (2 * anchor)).detach())
            if dist.is_distributed():
                value = _distributed_step(terms, nets, opt, regress)
                if value is not None:
                    losses.append(value)
                continue
            if not terms:
                continue
            loss = torch.stack(terms).mean()
            if regress and loss.requires_grad:
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{np.mean(losses):.4f}")
        off = torch.cat(offsets) if offsets else torch.zeros(0)
        kept, off_sum, off_n = dist.all_reduce([kept, float(off.double().sum()), off.numel()])
        history.append({"epoch": epoch + 1, "lr": lr, "loss": float(np.mean(losses)) if losses else None,
                        "batches_with_proposals": len(losses), "kept_proposals": int(kept),
                        "videos_shorter_than_every_anchor": short,
                        "mean_abs_offset_over_P": 0.0 if not off_n else
                        off_sum / off_n if dist.is_distributed() else float(off.mean())})
        if checkpoint is not None:
            checkpoint(epoch + 1, nets, opt, history)
    nets.eval()
    return nets, history


def _distributed_step(terms: list[torch.Tensor], nets: RegressionNets,
                      opt: torch.optim.Optimizer, regress: bool) -> float | None:
    """One optimiser step on a global batch split across ranks; returns the batch's mean loss
    (None when no video of the global batch kept a proposal, as the single-process loop skips).

    Each rank backpropagates ``sum(its terms) / K`` with ``K`` the global number of terms, so
    the all-reduced (summed) gradient is that of the single-process ``mean`` over the batch.
    """
    local = torch.stack(terms).sum() if terms else None
    k, total, grad_ranks = dist.all_reduce([
        len(terms), float(local.detach()) if local is not None else 0.0,
        float(local is not None and local.requires_grad)])
    if k == 0:
        return None
    if regress and grad_ranks > 0:
        opt.zero_grad(set_to_none=True)
        if local is not None and local.requires_grad:
            (local / k).backward()
        dist.all_reduce_gradients(nets.parameters())
        opt.step()
    return total / k
