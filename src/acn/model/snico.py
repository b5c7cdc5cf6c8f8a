"""Snippet contrast (SniCo, CoLA: Zhang et al., CVPR 2021) for the base models.

CoLA sharpens a weakly-supervised model's snippet embedding with a contrastive loss on
snippets mined from its own actionness: per video, the ``T // easy_ratio`` snippets of
highest actionness are *easy action*, the as many of lowest *easy background*. Thresholding
the min-max normalised actionness at ½ gives an action mask; the band that an erosion of
``erode`` snippets removes from it is *hard action* (inside an action, near its edge), the band
that a dilation of ``dilate`` snippets adds is *hard background* (just outside). Of each band
the ``T // hard_ratio`` least typical snippets are kept (lowest actionness inside, highest
outside). The loss is two InfoNCE terms on L2-normalised embeddings at temperature ``tau``:
the mean hard-action embedding against the mean easy-action one (positive) and every
easy-background snippet (negatives), and the mirror for hard background.

Why here: ACN's coherence term Lc compares the base model's embedding inside and around a
proposal (``acn.lc_features: embedding``); an embedding trained to tell action from the
background next to it is what Lc needs at boundaries. Units: snippets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["mine_snippets", "snico_loss"]


def _morph(mask: torch.Tensor, size: int, dilate: bool) -> torch.Tensor:
    """Binary dilation (or erosion) of a ``(T,)`` bool mask by a window of ``size`` snippets."""
    if size <= 1:
        return mask
    x = mask.to(torch.float32)[None, None]
    if not dilate:
        x = 1.0 - x
    # an even window is centred one snippet to the left, as max_pool1d pads it
    y = F.max_pool1d(F.pad(x, (size // 2, (size - 1) // 2), value=0.0), size, stride=1)[0, 0]
    return y > 0.5 if dilate else y < 0.5


def mine_snippets(actionness: torch.Tensor, easy_ratio: int = 5, hard_ratio: int = 20,
                  erode: int = 3, dilate: int = 6
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Indices of easy action, easy background, hard action and hard background snippets of
    one video from its ``(T,)`` actionness (any real scale); ``None`` when the video is too
    short for ``T // hard_ratio >= 1`` or a band is empty (the video adds no loss)."""
    T = actionness.shape[0]
    k_easy, k_hard = T // easy_ratio, T // hard_ratio
    if k_easy < 1 or k_hard < 1:
        return None
    a = actionness.detach().float()
    order = torch.argsort(a, descending=True)
    easy_act, easy_bg = order[:k_easy], order[-k_easy:]
    lo, hi = a.min(), a.max()
    if not bool(hi > lo):
        return None
    mask = (a - lo) / (hi - lo) > 0.5
    hard_act_band = mask & ~_morph(mask, erode, dilate=False)
    hard_bg_band = _morph(mask, dilate, dilate=True) & ~mask
    ia, ib = torch.nonzero(hard_act_band)[:, 0], torch.nonzero(hard_bg_band)[:, 0]
    if ia.numel() == 0 or ib.numel() == 0:
        return None
    hard_act = ia[torch.argsort(a[ia])[:k_hard]]                  # least action-like inside
    hard_bg = ib[torch.argsort(a[ib], descending=True)[:k_hard]]  # most action-like outside
    return easy_act, easy_bg, hard_act, hard_bg


def _nce(query: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor,
         tau: float) -> torch.Tensor:
    """InfoNCE of one ``(H,)`` query with one positive and ``(K, H)`` negatives (unit norm)."""
    logits = torch.cat([(query * positive).sum()[None], negatives @ query]) / tau
    return -torch.log_softmax(logits, dim=0)[0]


def snico_loss(embedding: torch.Tensor, actionness: torch.Tensor, mask: torch.Tensor,
               easy_ratio: int = 5, hard_ratio: int = 20, erode: int = 3, dilate: int = 6,
               tau: float = 0.07) -> torch.Tensor:
    """Mean SniCo loss over a padded batch.

    Args:
        embedding: ``(B, T, H)`` snippet embeddings (gradients flow into them).
        actionness: ``(B, T)`` per-snippet actionness the snippets are mined by (detached).
        mask: ``(B, T)`` bool, True on real snippets.

    Returns:
        Scalar: the mean over videos that yield every kind of snippet (0 when none does, with
        a gradient path so that ``backward`` still works).
    """
    terms = []
    for i in range(embedding.shape[0]):
        T = int(mask[i].sum())
        mined = mine_snippets(actionness[i, :T], easy_ratio, hard_ratio, erode, dilate)
        if mined is None:
            continue
        ea, eb, ha, hb = mined
        z = F.normalize(embedding[i, :T], dim=1)
        q_ha = F.normalize(z[ha].mean(0), dim=0)
        q_hb = F.normalize(z[hb].mean(0), dim=0)
        p_ea = F.normalize(z[ea].mean(0), dim=0)
        p_eb = F.normalize(z[eb].mean(0), dim=0)
        terms.append(_nce(q_ha, p_ea, z[eb], tau) + _nce(q_hb, p_eb, z[ea], tau))
    if not terms:
        return embedding.sum() * 0.0
    return torch.stack(terms).mean()
