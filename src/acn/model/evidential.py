"""DELU-style evidential learning for the base model (``base.evidential_weight``).

DELU (Chen et al., ECCV 2022) treats the class logits as evidence for a Dirichlet
distribution and uses its uncertainty twice:

* **video level**: the video's logits are the mean over its top-k snippets by attention of
  the attention-suppressed logits (a snippet's logits pulled toward their minimum where the
  attention is low). Their evidence ``e = exp(logit)`` gives ``alpha = e + 1`` and strength
  ``S = sum alpha``; the loss is the expected log loss ``sum_c g_c (log S - log alpha_c)``
  over the labelled classes, each weighted by its share of ``1 / alpha`` (the class with the
  least evidence most) and the whole video by its certainty ``1 - u`` (``u = C / S``): a
  video whose top snippets are mostly background (little evidence) moves the model less.
* **snippet level** (needs a background class): each snippet's uncertainty ``u_t`` from its
  suppressed logits' evidence ranks the snippets, and the attention is pulled toward
  "not background", ``|1 - sigmoid(att_t) - p_bg,t|``, with weights that move over training
  from the least uncertain snippets to the most (easy to hard).

Everything here is our own formulation of the paper's idea; shapes are ``(B, C', T)`` logits
(``C' = C`` action classes, plus one background column where the model has one),
``(B, T)`` raw attention logits and a ``(B, T)`` bool mask of real snippets.
"""

from __future__ import annotations

import torch

#: ``exp`` of a logit is clamped to this range before it is evidence (DELU's bound): beyond
#: it the Dirichlet is certain anyway and ``exp`` would overflow in float32.
LOGIT_CLAMP = 10.0


def suppressed_logits(logits: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    """``(B, C', T)``: each snippet's logits pulled toward their minimum over classes by its
    attention probability: ``sigmoid(att) * (logits - min) + min``. A background snippet
    (low attention) then carries little evidence for any class."""
    low = logits.min(1, keepdim=True).values
    return torch.sigmoid(attention)[:, None, :] * (logits - low) + low


def evidence_strength(logits: torch.Tensor, dim: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """``(alpha, S)``: Dirichlet parameters ``exp(clamped logits) + 1`` and their sum over
    ``dim`` (kept as a size-1 dimension)."""
    alpha = torch.exp(logits.clamp(-LOGIT_CLAMP, LOGIT_CLAMP)) + 1.0
    return alpha, alpha.sum(dim, keepdim=True)


def topk_by_attention(values: torch.Tensor, attention: torch.Tensor, mask: torch.Tensor,
                      k: torch.Tensor) -> torch.Tensor:
    """``(B, C')``: the mean of ``values`` (B, C', T) over each video's ``k[b]`` real snippets
    of highest attention."""
    z = attention.detach().masked_fill(~mask, float("-inf"))
    rank = torch.empty_like(z, dtype=torch.long)
    order = torch.argsort(z, dim=1, descending=True)
    rank.scatter_(1, order, torch.arange(z.shape[1], device=z.device).expand_as(order))
    w = ((rank < k[:, None]) & mask).to(values.dtype) / k[:, None].to(values.dtype)
    return torch.einsum("bct,bt->bc", values, w)


def evidential_video_loss(video_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``(B,)`` uncertainty-weighted evidential log loss of each video.

    video_logits: ``(B, C)`` action-class logits; labels: ``(B, C)`` multi-hot (every row has
    a positive). The weights ``g`` (each label's share of ``1/alpha`` over the labels, times
    the number of labels and the certainty ``1 - u``) are constants of the step: they choose
    where the gradient goes, not what it is."""
    C = video_logits.shape[1]
    alpha, S = evidence_strength(video_logits)
    u = C / S                                                        # (B, 1)
    inv = labels / alpha
    g = (1.0 - u) * labels.sum(1, keepdim=True) * inv / inv.sum(1, keepdim=True).clamp_min(1e-12)
    return (g.detach() * (torch.log(S) - torch.log(alpha))).sum(1)


def snippet_uncertainty(logits: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(B, T)`` Dirichlet uncertainty ``C / S_t`` of each snippet's logits (B, C', T)."""
    _, S = evidence_strength(logits, dim=1)
    return num_classes / S[:, 0]


def course_weights(uncertainty: torch.Tensor, mask: torch.Tensor, progress: float,
                   amplitude: float = 0.7) -> torch.Tensor:
    """``(B, T)`` easy-to-hard weights: a snippet of rank r among its video's n real snippets
    by ascending uncertainty sits at ``theta = 2 (r + 0.5) / n - 1`` in (-1, 1) and weighs
    ``1 - amplitude * tanh(theta * (1 - 2 progress))``: at the start of training (progress 0)
    the least uncertain snippets weigh most, at the end (1) the most uncertain. 0 on
    padding."""
    z = uncertainty.detach().masked_fill(~mask, float("inf"))
    order = torch.argsort(z, dim=1)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(z.shape[1], device=z.device).expand_as(order))
    n = mask.sum(1, keepdim=True).clamp_min(1).to(uncertainty.dtype)
    theta = 2.0 * (rank.to(uncertainty.dtype) + 0.5) / n - 1.0
    w = 1.0 - amplitude * torch.tanh(theta * (1.0 - 2.0 * progress))
    return w * mask.to(uncertainty.dtype)


def uncertainty_guide_loss(logits: torch.Tensor, attention: torch.Tensor, mask: torch.Tensor,
                           num_classes: int, progress: float,
                           amplitude: float = 0.7) -> torch.Tensor:
    """``(B,)`` per video: the course-weighted mean over real snippets of
    ``|1 - sigmoid(att_t) - p_bg,t|`` (``p_bg`` the softmax probability of the background
    column, the last of ``logits`` (B, C + 1, T)), ranked by the suppressed logits'
    uncertainty."""
    u = snippet_uncertainty(suppressed_logits(logits, attention), num_classes)
    w = course_weights(u, mask, progress, amplitude)
    p_bg = torch.softmax(logits, dim=1)[:, -1]
    gap = (1.0 - torch.sigmoid(attention) - p_bg).abs()
    return (w * gap).sum(1) / mask.sum(1).clamp_min(1).to(gap.dtype)
