"""A self-trained second stage: snippet pseudo-labels from the first models' output.

The weakly-supervised base models only ever saw video labels. Once they are trained, their
two-stream CAS on the training videos says *where* each labelled action most likely is.

What ``acn train`` runs (``second_stage.rounds`` > 0; off by default, see below):
:func:`cas_pseudo_labels` labels each training snippet from the weighted mean of both
streams' CAS (a labelled class where that class's CAS is near its maximum in the video,
background where every labelled class's CAS is low, ignored elsewhere), and each stream's
base model is trained again with :func:`acn.model.base.snippet_loss` on those labels next to
the video-level loss (:func:`acn.train.base.train_base`'s ``targets``). Each round labels
from the previous round's models; :func:`label_quality` measures the labels against the
training annotations where they have segments, and the run's log keeps it per round.

Measured on the family's four selection members (seed 0, docs/ablation.md): labels of
foreground precision 0.60-0.83 and recall 0.07-0.33 (fg_fraction 0.9, bg_fraction 0.1);
with loss weight 1, fused ACN changed by -0.1 / -0.0 mAP@0.5 / average on the mean and
-1.5 on member 2 (each member's Flow stream gained, its RGB stream lost), so the default
stays off.

Also here, measured and not used: labels from ACN's detections (:func:`pseudo_labels`) and
a fully supervised two-stream classifier trained on them (:class:`SnippetNet`,
:func:`train_snippet_net`, :func:`snippet_cas`). On family member 0 (THUMOS14-like, D=256,
seed 0) detection-based labels reach foreground precision 0.38-0.50 whatever the rule
(confident fraction 0.5-0.95, boundary ignore 1-2, top-3 per class), and a SnippetNet
trained on them gives 16.2 / 19.0 mAP@0.5 / average on the test videos by CAS thresholding,
against 39.5 / 41.7 for the base models' CAS: it learns the labels' errors.

Units: snippets throughout.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from acn.model.normalize import InputNorm
from acn.train.outputs import BaseOutputs

IGNORE = -1

#: Defaults of the second stage (``second_stage`` config section).
DEFAULTS = {
    "score_fraction": 0.5,   # a detection is confident when its score >= this x the best
                             # score of its class in the video
    "boundary_ignore": 1,    # snippets ignored on each side of a confident segment's edges
    "background_cas": 0.2,   # a snippet outside every detection is background when the
                             # labelled classes' CAS is below this x its maximum in the video
    "hidden": 256,
    "epochs": 20,
    "lr": 0.001,
    "weight_decay": 0.0005,
    "dropout": 0.5,
    "batch_videos": 8,
}


def pseudo_labels(segments: np.ndarray, scores: np.ndarray, labels: np.ndarray, T: int,
                  video_classes: Sequence[int], n_classes: int, cas: np.ndarray | None = None,
                  score_fraction: float = 0.5, boundary_ignore: int = 1,
                  background_cas: float = 0.2) -> np.ndarray:
    """Snippet labels of one training video from its detections.

    Args:
        segments: ``(N, 2)`` detections in snippets (start, end; end exclusive, fractional
            values allowed: a snippet ``t`` is inside when ``start <= t + 0.5 < end``).
        scores: ``(N,)``; labels: ``(N,)`` class indices.
        T: snippets in the video; video_classes: its weak (video-level) labels.
        cas: ``(C, T)`` the base model's SCP, for background: snippets outside every
            detection of a labelled class are background only where the labelled classes'
            CAS is below ``background_cas`` times its maximum (None: all of them are).
        score_fraction: detections of a labelled class scoring at least this fraction of the
            class's best in the video are confident; others are only excluded from background.

    Returns:
        ``(T,)`` int64: a class index in ``[0, C)``, ``C`` for background, or ``IGNORE`` (-1):
        snippets claimed by confident detections of two classes, within
        ``boundary_ignore`` of a confident segment's edge, or covered by a non-confident
        detection or by high CAS; no background at all when a labelled class has no
        detection (its action is somewhere unknown).
    """
    out = np.full(T, IGNORE, dtype=np.int64)
    centres = np.arange(T) + 0.5
    keep = np.isin(labels, np.asarray(list(video_classes), dtype=np.int64))
    segments, scores, labels = segments[keep], scores[keep], labels[keep]
    inside = (segments[:, :1] <= centres[None]) & (centres[None] < segments[:, 1:2])  # (N, T)
    any_det = inside.any(0)
    fg = np.zeros((n_classes, T), dtype=bool)
    near_edge = np.zeros(T, dtype=bool)
    for c in np.unique(labels):
        mine = labels == c
        conf = mine & (scores >= score_fraction * scores[mine].max())
        fg[c] = inside[conf].any(0)
        for s, e in segments[conf]:
            for edge in (s, e):
                near_edge |= np.abs(centres - edge) < boundary_ignore
    n_fg = fg.sum(0)
    one = n_fg == 1
    out[one] = fg.argmax(0)[one]
    # a labelled class with no detection occurs somewhere unknown: no background then
    if set(np.unique(labels).tolist()) >= set(video_classes):
        bg = ~any_det
        if cas is not None and len(video_classes):
            c_cas = cas[list(video_classes)].max(0)
            bg &= c_cas < background_cas * max(float(c_cas.max()), 1e-12)
        out[bg] = n_classes
    out[near_edge] = IGNORE
    return out


def cas_pseudo_labels(scp: np.ndarray, video_classes: Sequence[int], n_classes: int,
                      fg_fraction: float = 0.9, bg_fraction: float = 0.1) -> np.ndarray:
    """Snippet labels of one training video from its CAS.

    Args:
        scp: ``(C, T)`` class probabilities (e.g. the weighted mean of both streams' SCP).
        video_classes: the video's weak (video-level) labels, class indices.
        n_classes: C.
        fg_fraction: a snippet is foreground of labelled class ``c`` when ``scp[c, t] >=
            fg_fraction * max_t scp[c]`` (and of no other labelled class).
        bg_fraction: a snippet is background when the labelled classes' highest SCP there
            is below ``bg_fraction`` times its maximum over the video.

    Returns:
        ``(T,)`` int64: a class index, ``n_classes`` for background, or ``IGNORE`` (-1):
        snippets between the two levels, claimed by two classes, or both foreground and
        background (classes of very different scale); all ignored without a labelled class.
    """
    T = scp.shape[1]
    out = np.full(T, IGNORE, dtype=np.int64)
    labs = np.unique(np.asarray(list(video_classes), dtype=np.int64))
    if labs.size == 0 or T == 0:
        return out
    cas = np.asarray(scp, dtype=np.float64)[labs]  # (L, T)
    best = cas.max(1, keepdims=True)
    fg = (cas >= fg_fraction * best) & (best > 0)
    n_fg = fg.sum(0)
    top = cas.max(0)
    bg = top < bg_fraction * top.max()
    one = (n_fg == 1) & ~bg
    out[one] = labs[fg.argmax(0)[one]]
    out[bg & (n_fg == 0)] = n_classes
    return out


def label_quality(targets: Mapping[str, np.ndarray], truth: Mapping[str, np.ndarray],
                  n_classes: int) -> dict[str, float]:
    """Snippet-level precision and recall of pseudo-labels against the ground truth.

    ``targets``/``truth``: ``{video: (T,)}``, ``truth`` in the same coding (class, ``C`` for
    background; no ignore). Foreground precision: of snippets labelled with a class, the
    fraction whose true label is that class; recall: of true action snippets, the fraction
    labelled with their class; background precision: of snippets labelled background, the
    fraction truly background; coverage: fraction of snippets not ignored."""
    lab_fg = hit_fg = true_fg = got_fg = lab_bg = hit_bg = n = kept = 0
    for vid, t in targets.items():
        g = truth[vid]
        n += t.size
        kept += int((t != IGNORE).sum())
        f = (t >= 0) & (t < n_classes)
        lab_fg += int(f.sum())
        hit_fg += int((f & (t == g)).sum())
        gf = g < n_classes
        true_fg += int(gf.sum())
        got_fg += int((gf & (t == g)).sum())
        b = t == n_classes
        lab_bg += int(b.sum())
        hit_bg += int((b & (g == n_classes)).sum())

    def ratio(a: int, b: int) -> float:
        return float(a / b) if b else float("nan")

    return {"foreground_precision": ratio(hit_fg, lab_fg), "foreground_recall": ratio(got_fg, true_fg),
            "background_precision": ratio(hit_bg, lab_bg), "coverage": ratio(kept, n)}


def truth_labels(segments: Sequence[tuple[float, float, int]], T: int, n_classes: int
                 ) -> np.ndarray:
    """``(T,)`` ground-truth snippet labels in :func:`pseudo_labels`' coding from segments
    ``(start, end, class)`` in snippets (overlaps: the later segment wins)."""
    out = np.full(T, n_classes, dtype=np.int64)
    centres = np.arange(T) + 0.5
    for s, e, c in segments:
        out[(s <= centres) & (centres < e)] = c
    return out


class SnippetNet(nn.Module):
    """Per-snippet classifier over both streams: each stream standardised (training
    statistics, kept as buffers), concatenated, two temporal convolutions (kernel 3, dilation
    1 and 2), then ``C + 1`` logits (the last is background).

    ``forward(rgb, flow, lengths)``: ``(B, T, D)`` each -> ``(B, C + 1, T)`` logits."""

    def __init__(self, in_dim: int, n_classes: int, hidden: int = 256, dropout: float = 0.5):
        super().__init__()
        self.in_dim, self.n_classes, self.hidden = int(in_dim), int(n_classes), int(hidden)
        self.norms = nn.ModuleList([InputNorm(in_dim), InputNorm(in_dim)])
        self.conv1 = nn.Conv1d(2 * in_dim, hidden, 3, padding=1)
        self.conv2 = nn.Conv1d(hidden, hidden, 3, padding=2, dilation=2)
        self.out = nn.Conv1d(hidden, n_classes + 1, 1)
        self.drop = nn.Dropout(dropout)

    def kwargs(self) -> dict:
        return {"in_dim": self.in_dim, "n_classes": self.n_classes, "hidden": self.hidden,
                "dropout": self.drop.p}

    def forward(self, rgb: torch.Tensor, flow: torch.Tensor,
                lengths: torch.Tensor | None = None) -> torch.Tensor:
        mask = None
        if lengths is not None:
            t = torch.arange(rgb.shape[1], device=rgb.device)
            mask = (t[None, :] < lengths[:, None]).to(rgb.dtype)[:, :, None]
        x = torch.cat([self.norms[0](rgb, mask), self.norms[1](flow, mask)], 2).transpose(1, 2)
        m = None if mask is None else mask.transpose(1, 2)
        h = torch.relu(self.conv1(self.drop(x)))
        h = h if m is None else h * m
        h = torch.relu(self.conv2(self.drop(h)))
        h = h if m is None else h * m
        return self.out(self.drop(h))


def train_snippet_net(features: Callable[[str], tuple[np.ndarray, np.ndarray]],
                      targets: Mapping[str, np.ndarray], n_classes: int,
                      stats: Sequence[tuple[np.ndarray, np.ndarray]], cfg: Mapping, seed: int,
                      progress: bool = False, desc: str = "second stage"
                      ) -> tuple[SnippetNet, list[float]]:
    """Train a :class:`SnippetNet` on pseudo-labels (cross-entropy, ``IGNORE`` ignored,
    classes weighted by inverse frequency so that background does not swamp the actions).

    ``features``: video id -> ``(rgb (T, D), flow (T, D))``; ``targets``: video id ->
    ``(T,)`` labels; ``stats``: per-stream ``(mean, std)`` of the training videos.
    Returns ``(net, mean loss per epoch)``."""
    cfg = {**DEFAULTS, **cfg}
    ids = sorted(v for v, t in targets.items() if (t != IGNORE).any())
    torch.manual_seed(seed)
    dim = features(ids[0])[0].shape[1]
    net = SnippetNet(dim, n_classes, int(cfg["hidden"]), float(cfg["dropout"]))
    for norm, (mean, std) in zip(net.norms, stats):
        norm.set_statistics(mean, std)
    counts = np.bincount(np.concatenate([targets[v][targets[v] != IGNORE] for v in ids]),
                         minlength=n_classes + 1).astype(np.float64)
    weight = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / (n_classes + 1), 0.0)
    loss_fn = nn.CrossEntropyLoss(weight=torch.tensor(weight, dtype=torch.float32),
                                  ignore_index=IGNORE)
    opt = torch.optim.Adam(net.parameters(), lr=float(cfg["lr"]),
                           weight_decay=float(cfg["weight_decay"]))
    bs = int(cfg["batch_videos"])
    history = []
    rng = np.random.default_rng([seed, 0x5EC])
    for _ in tqdm(range(int(cfg["epochs"])), desc=desc, disable=not progress, leave=False):
        net.train()
        order = rng.permutation(len(ids))
        losses = []
        for b in range(0, len(order), bs):
            batch = [ids[i] for i in order[b:b + bs]]
            pairs = [features(v) for v in batch]
            T = max(p[0].shape[0] for p in pairs)
            x = torch.zeros(2, len(batch), T, dim)
            y = torch.full((len(batch), T), IGNORE, dtype=torch.long)
            lengths = torch.tensor([p[0].shape[0] for p in pairs])
            for i, (p, v) in enumerate(zip(pairs, batch)):
                n = p[0].shape[0]
                x[0, i, :n], x[1, i, :n] = torch.from_numpy(p[0]), torch.from_numpy(p[1])
                y[i, :n] = torch.from_numpy(targets[v])
            loss = loss_fn(net(x[0], x[1], lengths), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        history.append(float(np.mean(losses)))
    return net.eval(), history


@torch.inference_mode()
def snippet_cas(net: SnippetNet, rgb: np.ndarray, flow: np.ndarray,
                k_divisor: float = 8.0) -> BaseOutputs:
    """One video's CAS from a trained :class:`SnippetNet`: SCP ``(C, T)`` the softmax over
    the ``C + 1`` outputs without the background row, attention ``1 - p(background)``,
    video scores the top-k mean of the SCP (:func:`acn.refine.topk_video_scores`)."""
    from acn.refine import topk_video_scores

    logits = net.eval()(torch.from_numpy(np.ascontiguousarray(rgb, np.float32))[None],
                        torch.from_numpy(np.ascontiguousarray(flow, np.float32))[None])[0]
    p = torch.softmax(logits, 0).numpy()
    scp = np.ascontiguousarray(p[:-1], dtype=np.float32)
    return BaseOutputs(scp=scp, attention=(1.0 - p[-1]).astype(np.float32),
                       video_scores=topk_video_scores(scp, k_divisor))
