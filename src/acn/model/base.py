"""The weakly-supervised base model: per-snippet class predictions and attention per stream.

ACN reads three things from a base model for each stream of each video: the Snippet-level
Classification Prediction SCP ``(C, T)`` (probabilities), an attention value per snippet
``(T,)`` and video-level class scores ``(C,)``. The paper took them from a released
UntrimmedNet; :class:`BaseModel` is trained here from video-level labels only.

Two heads (``head=``):

* ``"untrimmednet"`` (soft selection, UntrimmedNet): a classification module gives per-snippet
  class logits, ``SCP = softmax over classes``; a selection module gives one class-agnostic
  attention logit per snippet; the video prediction is the SCP pooled over time with the
  softmax of the attention (``pool="probs"``) or the softmax of the attention-pooled logits
  (``pool="logits"``). The raw attention logits are the attention output.
* ``"topk_mil"`` (W-TALC / STPN style): per-snippet class logits, the video logit of a class is
  the mean of its top-k snippet logits with ``k = max(1, ceil(T / k_divisor))``; SCP is the
  softmax over classes or the sigmoid of the logits (``scp=``); attention is the maximum class
  logit (``attention="max_logit"``) or a separate class-agnostic branch (``attention="branch"``)
  trained by an extra soft-selection loss.

Both heads are trained with the cross-entropy between the softmax of the video logits and the
L1-normalised multi-hot video labels (:func:`video_loss`).

Optional background class (``background=True``, BaS-Net / CoLA-inspired): one extra class
logit. Snippets the video prediction does not select (``untrimmednet``: pooled with the softmax
of the *negated* attention; ``topk_mil``: the bottom-k snippets) are trained to predict
"background", so the SCP of background snippets goes to the background row instead of being
spread over the action classes. The outputs drop the background row (action SCP then sums to
at most 1 over classes) and the video scores are renormalised over the action classes.

Everything the model needs is a constructor keyword (:attr:`BaseModel.kwargs`), so a
checkpoint rebuilds it with ``BaseModel(**kwargs)``. Padding never changes a video's outputs:
features are zeroed at padded positions before every temporal convolution (the same zeros a
convolution pads with at the video's end) and every pooling over time is masked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from acn.errors import AcnError
from acn.model.normalize import InputNorm

HEADS = ("untrimmednet", "topk_mil")
SCP_ACTIVATIONS = ("softmax", "sigmoid")
ATTENTIONS = ("branch", "max_logit")
POOLS = ("probs", "logits")

# Large negative instead of -inf: keeps softmax/sort finite (and gradients NaN-free) when a
# row is fully masked.
_NEG = -1e9


@dataclass
class BaseForward:
    """Outputs of :meth:`BaseModel.forward` for a padded batch of B videos of max length T.

    Values at padded positions (``mask == False``) are meaningless and must be cut away.

    Attributes:
        scp: ``(B, C, T)`` snippet class probabilities (softmax over the C action classes, or
            per-class sigmoid).
        attention: ``(B, T)`` raw (unnormalised) attention logits per snippet.
        video_scores: ``(B, C)`` video-level class probabilities (sum to 1 over classes).
        video_logits: ``(B, C')`` logits whose softmax :func:`video_loss` compares with the
            labels (``C' = C + 1`` with a background class).
        aux_logits: extra ``(B, C')`` logits with their own targets (see :func:`video_loss`):
            ``topk_mil`` attention branch; ``None`` when absent.
        background_logits: ``(B, C + 1)`` logits of the non-selected snippets, trained to
            predict the background class; ``None`` without a background class.
    """

    scp: torch.Tensor
    attention: torch.Tensor
    video_scores: torch.Tensor
    video_logits: torch.Tensor
    aux_logits: torch.Tensor | None = None
    background_logits: torch.Tensor | None = None


def masked_softmax(logits: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax over ``dim`` that gives exactly 0 weight to positions where ``mask`` is False."""
    z = logits.masked_fill(~mask, _NEG)
    return torch.softmax(z, dim=dim) * mask


def soft_select(values: torch.Tensor, attention: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Attention-weighted mean over time (UntrimmedNet soft selection).

    Args:
        values: ``(B, C, T)`` per-snippet values (class probabilities or logits).
        attention: ``(B, T)`` raw attention logits.
        mask: ``(B, T)`` bool, True on real snippets.

    Returns:
        ``(B, C)``: ``sum_t softmax_t(attention) * values[:, :, t]`` over real snippets only.
    """
    w = masked_softmax(attention, mask, dim=1)  # (B, T)
    return torch.einsum("bct,bt->bc", values, w)


def topk_counts(lengths: torch.Tensor, k_divisor: float) -> torch.Tensor:
    """``k = max(1, ceil(T / k_divisor))`` per video; ``lengths`` is ``(B,)`` snippets."""
    return torch.clamp(torch.ceil(lengths.to(torch.float64) / k_divisor), min=1).to(torch.long)


def topk_mean(logits: torch.Tensor, mask: torch.Tensor, k: torch.Tensor,
              largest: bool = True) -> torch.Tensor:
    """Mean of the ``k[b]`` largest (or smallest) values over time of each video and class.

    Args:
        logits: ``(B, C, T)``; mask ``(B, T)`` bool; k ``(B,)`` long, ``1 <= k[b] <= T_b``.

    Returns:
        ``(B, C)``. Vectorised over videos with different k: the ``max(k)`` largest values
        in order (a partial sort, ~3x cheaper than a full one at k = T / 8), then the prefix
        sum read at ``k - 1``.
    """
    sign = 1.0 if largest else -1.0
    z = (sign * logits).masked_fill(~mask[:, None, :], _NEG)
    srt = torch.topk(z, int(k.max()), dim=2, sorted=True).values
    csum = torch.cumsum(srt, dim=2)
    idx = (k - 1).view(-1, 1, 1).expand(-1, logits.shape[1], 1)
    return sign * torch.gather(csum, 2, idx).squeeze(2) / k.view(-1, 1).to(logits.dtype)


class BaseModel(nn.Module):
    """UntrimmedNet-style soft-selection model (or top-k MIL) for one stream.

    Args:
        feature_dim: D, width of the stream's snippet features.
        num_classes: C, number of action classes.
        hidden: width of the shared trunk (Conv1d + ReLU + dropout); 0 = no trunk (linear heads
            on the input features).
        kernel_size: temporal kernel of the trunk convolution (1 or 3; odd).
        dropout: dropout on the trunk output (the hidden activations) during training.
        input_dropout: dropout on the input features during training (element-wise; costly
            on the CPU for D = 1024: one random number per feature value).
        head: ``"untrimmednet"`` or ``"topk_mil"``.
        k_divisor: top-k MIL: ``k = max(1, ceil(T / k_divisor))``.
        scp: top-k MIL SCP activation, ``"softmax"`` (over classes) or ``"sigmoid"``; the
            UntrimmedNet head always uses softmax.
        attention: top-k MIL attention, ``"max_logit"`` or ``"branch"``.
        pool: UntrimmedNet pooling, ``"probs"`` (pool snippet probabilities; the video logits
            are their log) or ``"logits"`` (pool snippet logits, then softmax).
        background: add a background class trained on non-selected snippets.
        input_norm: standardise the input per dimension with statistics of the training
            videos (:class:`~acn.model.normalize.InputNorm`, set by ``set_input_statistics``;
            stored as buffers). False for checkpoints made before it existed.
    """

    def __init__(self, feature_dim: int, num_classes: int, hidden: int = 256,
                 kernel_size: int = 1, dropout: float = 0.5, input_dropout: float = 0.0,
                 head: str = "untrimmednet",
                 k_divisor: float = 8.0, scp: str = "softmax", attention: str = "branch",
                 pool: str = "probs", background: bool = False,
                 input_norm: bool = False) -> None:
        super().__init__()
        if head not in HEADS:
            raise AcnError(f"base model: unknown head {head!r}; choose one of {list(HEADS)}")
        if scp not in SCP_ACTIVATIONS:
            raise AcnError(f"base model: unknown scp activation {scp!r}; choose one of "
                           f"{list(SCP_ACTIVATIONS)}")
        if attention not in ATTENTIONS:
            raise AcnError(f"base model: unknown attention {attention!r}; choose one of "
                           f"{list(ATTENTIONS)}")
        if pool not in POOLS:
            raise AcnError(f"base model: unknown pool {pool!r}; choose one of {list(POOLS)}")
        if head == "untrimmednet" and scp != "softmax":
            raise AcnError("base model: the untrimmednet head pools softmax probabilities; "
                           "scp='sigmoid' needs head='topk_mil'")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise AcnError(f"base model: kernel_size must be odd and >= 1, got {kernel_size}")
        if feature_dim < 1 or num_classes < 1 or hidden < 0:
            raise AcnError(f"base model: bad sizes feature_dim={feature_dim}, "
                           f"num_classes={num_classes}, hidden={hidden}")
        for name, p in (("dropout", dropout), ("input_dropout", input_dropout)):
            if not 0.0 <= p < 1.0:
                raise AcnError(f"base model: {name} must be in [0, 1), got {p}")
        if k_divisor <= 0:
            raise AcnError(f"base model: k_divisor must be > 0, got {k_divisor}")
        self.kwargs: dict[str, Any] = {
            "feature_dim": int(feature_dim), "num_classes": int(num_classes),
            "hidden": int(hidden), "kernel_size": int(kernel_size), "dropout": float(dropout),
            "input_dropout": float(input_dropout), "head": head, "k_divisor": float(k_divisor),
            "scp": scp, "attention": attention, "pool": pool, "background": bool(background)}
        if input_norm:  # only then: older checkpoints' kwargs and state dicts stay loadable
            self.kwargs["input_norm"] = True
        self.norm = InputNorm(feature_dim) if input_norm else None
        self.num_classes = num_classes
        self.head = head
        self.k_divisor = float(k_divisor)
        self.scp_activation = scp
        self.attention_mode = attention
        self.pool = pool
        self.background = bool(background)
        n_out = num_classes + int(background)

        self.drop = nn.Dropout(dropout)
        self.in_drop = nn.Dropout(input_dropout) if input_dropout > 0 else nn.Identity()
        if hidden > 0:
            self.trunk: nn.Module | None = nn.Conv1d(feature_dim, hidden, kernel_size,
                                                     padding=kernel_size // 2)
            width = hidden
        else:
            self.trunk = None
            width = feature_dim
        self.classifier = nn.Conv1d(width, n_out, 1)
        needs_branch = head == "untrimmednet" or attention == "branch"
        self.selector = nn.Conv1d(width, 1, 1) if needs_branch else None
        if self.selector is not None:
            # Start from uniform attention (mean pooling over time): the classifier first
            # learns from every snippet, the selection sharpens later. With a random start the
            # attention can lock onto context snippets early; on THUMOS14-like synthetic data
            # that spread RGB video mAP over 0.83-0.93 across seeds, zero init gave 0.92-0.93.
            nn.init.zeros_(self.selector.weight)
            nn.init.zeros_(self.selector.bias)

    def set_input_statistics(self, mean, std) -> None:
        """Per-dimension ``(D,)`` mean and std of the training videos (needs input_norm)."""
        if self.norm is None:
            raise AcnError("base model: built without input_norm; it takes no statistics")
        self.norm.set_statistics(mean, std)

    def forward(self, features: torch.Tensor, mask: torch.Tensor,
                zero_padded: bool = False) -> BaseForward:
        """Run a padded batch.

        Args:
            features: ``(B, T, D)`` float snippet features (anything at padded positions).
            mask: ``(B, T)`` bool, True on real snippets; every video has at least one.
            zero_padded: the caller guarantees ``features`` is 0 at padded positions (as
                ``pad_batch`` writes it): they are then not zeroed again (a full copy).

        Returns:
            :class:`BaseForward` (scp ``(B, C, T)``, attention ``(B, T)``, video scores
            ``(B, C)``, video logits).
        """
        x = self.embed(features, mask, zero_padded)
        logits = _conv_last(self.classifier, x).transpose(1, 2)  # (B, C', T)
        att = _conv_last(self.selector, x).squeeze(2) if self.selector is not None else None
        if self.head == "untrimmednet":
            return self._untrimmednet(logits, att, mask)
        return self._topk(logits, att, mask)

    def embed(self, features: torch.Tensor, mask: torch.Tensor,
              zero_padded: bool = False) -> torch.Tensor:
        """The snippet embedding the heads read: ``(B, T, H)`` (H = ``hidden``, or D without a
        trunk), 0 at padded positions. In eval mode (no dropout) it is what ``acn.lc_features:
        embedding`` computes Lc on: the features as the trained model separates them."""
        # Channels-last (B, T, D) throughout: a kernel-1 convolution is then one GEMM, with no
        # transposed copy of the wide input. Zeroing padded snippets makes them look exactly
        # like the zeros a k=3 convolution pads a video's ends with.
        m = mask[:, :, None].to(features.dtype)
        if self.norm is not None:  # standardised, and zero again at padded positions
            x = self.in_drop(self.norm(features, m))
        else:
            x = self.in_drop(features if zero_padded else features * m)
        if self.trunk is not None:
            x = self.drop(F.relu(_conv_last(self.trunk, x))) * m
        return x

    def _untrimmednet(self, logits: torch.Tensor, att: torch.Tensor,
                      mask: torch.Tensor) -> BaseForward:
        C = self.num_classes
        if self.pool == "probs":
            probs = torch.softmax(logits, dim=1)
            pooled = soft_select(probs, att, mask)
            video_logits = torch.log(pooled.clamp_min(1e-12))
            bg_logits = (torch.log(soft_select(probs, -att, mask).clamp_min(1e-12))
                         if self.background else None)
        else:
            pooled_logits = soft_select(logits, att, mask)
            video_logits = pooled_logits
            bg_logits = soft_select(logits, -att, mask) if self.background else None
        scp = torch.softmax(logits, dim=1)[:, :C]
        video_scores = torch.softmax(video_logits[:, :C], dim=1)
        return BaseForward(scp=scp, attention=att, video_scores=video_scores,
                           video_logits=video_logits, background_logits=bg_logits)

    def _topk(self, logits: torch.Tensor, att: torch.Tensor | None,
              mask: torch.Tensor) -> BaseForward:
        C = self.num_classes
        k = topk_counts(mask.sum(1), self.k_divisor)
        video_logits = topk_mean(logits, mask, k)
        bg_logits = None
        if self.background:
            # The least action-like snippets (lowest max action logit) should be background:
            # mean logits over the bottom-k snippets by their best action logit.
            act = logits[:, :C].max(1).values
            w = _bottomk_weights(act, mask, k)
            bg_logits = torch.einsum("bct,bt->bc", logits, w)
        if self.scp_activation == "softmax":
            scp = torch.softmax(logits, dim=1)[:, :C]
        else:
            scp = torch.sigmoid(logits[:, :C])
        aux = None
        if self.attention_mode == "branch":
            aux = soft_select(logits, att, mask)
            attention = att
        else:
            attention = logits[:, :C].max(1).values
        video_scores = torch.softmax(video_logits[:, :C], dim=1)
        return BaseForward(scp=scp, attention=attention, video_scores=video_scores,
                           video_logits=video_logits, aux_logits=aux,
                           background_logits=bg_logits)


def _conv_last(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """Apply a Conv1d to channels-last ``(B, T, D)`` input, returning ``(B, T, D_out)``."""
    if conv.kernel_size[0] == 1:
        return F.linear(x, conv.weight[:, :, 0], conv.bias)
    return conv(x.transpose(1, 2)).transpose(1, 2)


def _bottomk_weights(values: torch.Tensor, mask: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` weights ``1/k`` on the k smallest real values of each row, 0 elsewhere."""
    z = values.detach().masked_fill(~mask, -_NEG)
    order = torch.argsort(z, dim=1)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(z.shape[1], device=z.device).expand_as(order))
    sel = (rank < k[:, None]) & mask
    return sel.to(values.dtype) / k[:, None].to(values.dtype)


def label_targets(labels: torch.Tensor) -> torch.Tensor:
    """L1-normalise multi-hot ``(B, C)`` labels into target distributions over classes."""
    return labels / labels.sum(1, keepdim=True).clamp_min(1.0)


def video_loss(out: BaseForward, labels: torch.Tensor, background: bool = False) -> torch.Tensor:
    """Cross-entropy of the video prediction against L1-normalised multi-hot labels.

    Args:
        out: the model's forward outputs for B videos.
        labels: ``(B, C)`` multi-hot float video labels (every row has a positive).
        background: whether the model has a background class (``C + 1`` logits).

    Returns:
        Scalar mean loss over the batch: the main head's CE, plus the same CE for the
        ``topk_mil`` attention branch, plus (with a background class) the CE of the
        non-selected snippets' prediction against "background only".
    """
    target = label_targets(labels)
    if background:
        target = torch.cat([target, torch.zeros_like(target[:, :1])], dim=1)
    loss = _soft_ce(out.video_logits, target)
    if out.aux_logits is not None:
        loss = loss + _soft_ce(out.aux_logits, target)
    if out.background_logits is not None:
        bg = torch.zeros_like(target)
        bg[:, -1] = 1.0
        loss = loss + _soft_ce(out.background_logits, bg)
    return loss


def snippet_loss(out: BaseForward, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Snippet-level loss on pseudo-labels (the second stage, :mod:`acn.train.second_stage`).

    Args:
        out: the model's forward outputs for B videos of padded length T.
        targets: ``(B, T)`` int64: a class index in ``[0, C)``, ``C`` for background, or any
            negative value to ignore the snippet (padding included).
        mask: ``(B, T)`` bool, True on real snippets.

    Returns:
        Scalar, the mean over the B videos of each video's mean negative log SCP of the
        labelled class over its foreground snippets plus the mean binary cross-entropy of its
        attention logits (1 on foreground, 0 on background) over its labelled snippets; a
        video with nothing labelled adds 0. Per video, so that a batch split across
        processes (:mod:`acn.train.distributed`) sums to the same loss.
    """
    C = out.scp.shape[1]
    targets = torch.where(mask, targets, torch.full_like(targets, -1))
    fg = (targets >= 0) & (targets < C)
    known = fg | (targets == C)
    log_p = torch.log(out.scp.clamp_min(1e-8)).gather(1, targets.clamp(0, C - 1)[:, None])[:, 0]
    cls = -(log_p * fg).sum(1) / fg.sum(1).clamp_min(1)
    att = F.binary_cross_entropy_with_logits(out.attention, fg.to(out.attention.dtype),
                                             reduction="none")
    return (cls + (att * known).sum(1) / known.sum(1).clamp_min(1)).mean()


def _soft_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # For pool="probs" the logits are log-probabilities already; log_softmax leaves them
    # unchanged (they sum to 1 in probability), so one formula serves every head.
    return -(target * torch.log_softmax(logits, dim=1)).sum(1).mean()


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

