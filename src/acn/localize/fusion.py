"""RGB/Flow proposal fusion (ACN Sec. 3.4): Flow is primary, RGB auxiliary.

Every Flow proposal is kept. Every RGB proposal's score is multiplied by ``rgb_factor``
(1/2 in the paper) and the RGB proposal is kept iff its largest IoU with the Flow proposals of
the same class is below ``iou_threshold`` (0.4). The result is the union.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from acn.localize.geometry import segment_iou

__all__ = ["FLOW", "RGB", "FusedProposals", "max_iou_same_class", "fuse_streams"]

FLOW = 0
RGB = 1


@dataclass
class FusedProposals:
    """Fused detections of one video; N rows (all Flow rows first, then the kept RGB rows).

    segments: (N, 2), in the unit of the inputs. scores: (N,). labels: (N,) long.
    stream: (N,) long, ``FLOW`` (0) or ``RGB`` (1). source: (N,) long, row index in the input
    of that stream. Torch tensors or numpy arrays, matching the inputs.
    """

    segments: torch.Tensor | np.ndarray
    scores: torch.Tensor | np.ndarray
    labels: torch.Tensor | np.ndarray
    stream: torch.Tensor | np.ndarray
    source: torch.Tensor | np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def _t(x, dtype=None) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(np.asarray(x)))
    return t.to(dtype) if dtype is not None else t


def max_iou_same_class(query: torch.Tensor, query_labels: torch.Tensor | None,
                       ref: torch.Tensor, ref_labels: torch.Tensor | None,
                       chunk_size: int = 4096) -> torch.Tensor:
    """For each query segment (N, 2), its largest IoU with the ``ref`` segments (M, 2) of the
    same label (all refs when labels are None); 0 when there are none. Returns (N,)."""
    n = query.shape[0]
    out = torch.zeros(n, dtype=torch.promote_types(query.dtype, ref.dtype), device=query.device)
    if n == 0 or ref.shape[0] == 0:
        return out
    for lo in range(0, n, chunk_size):  # bounds the (chunk, M) IoU matrix
        iou = segment_iou(query[lo:lo + chunk_size], ref)
        if query_labels is not None and ref_labels is not None:
            same = query_labels[lo:lo + chunk_size, None] == ref_labels[None, :]
            iou = torch.where(same, iou, torch.zeros_like(iou))
        out[lo:lo + chunk_size] = iou.max(1).values
    return out


def fuse_streams(flow_segments, flow_scores, flow_labels, rgb_segments, rgb_scores, rgb_labels,
                 rgb_factor: float = 0.5, iou_threshold: float = 0.4,
                 class_aware: bool = True) -> FusedProposals:
    """Fuse the proposals of the two streams of one video (Sec. 3.4).

    Args:
        flow_segments: (Nf, 2), flow_scores: (Nf,), flow_labels: (Nf,) -- all kept.
        rgb_segments: (Nr, 2), rgb_scores: (Nr,), rgb_labels: (Nr,).
        rgb_factor: RGB scores are multiplied by this (paper: divided by 2).
        iou_threshold: an RGB proposal is kept iff its max IoU with (same-class) Flow
            proposals is strictly below this.
        class_aware: compare an RGB proposal with Flow proposals of its class only (the paper's
            wording); False compares with all Flow proposals.
    Returns:
        ``FusedProposals``; numpy arrays if ``flow_segments`` is a numpy array, else tensors.
    """
    is_numpy = not isinstance(flow_segments, torch.Tensor)
    fseg = _t(flow_segments).reshape(-1, 2)
    rseg = _t(rgb_segments).reshape(-1, 2)
    fdtype = torch.promote_types(fseg.dtype, rseg.dtype)
    if not fdtype.is_floating_point:
        fdtype = torch.float64
    fseg, rseg = fseg.to(fdtype), rseg.to(device=fseg.device, dtype=fdtype)
    fsc = _t(flow_scores).reshape(-1).to(fseg.device)
    rsc = _t(rgb_scores).reshape(-1).to(fseg.device)
    sdtype = torch.promote_types(fsc.dtype, rsc.dtype)
    if not sdtype.is_floating_point:
        sdtype = torch.float64
    fsc, rsc = fsc.to(sdtype), rsc.to(sdtype)
    flab = _t(flow_labels).reshape(-1).to(device=fseg.device, dtype=torch.long)
    rlab = _t(rgb_labels).reshape(-1).to(device=fseg.device, dtype=torch.long)
    for name, seg, sc, lab in (("flow", fseg, fsc, flab), ("rgb", rseg, rsc, rlab)):
        if not (seg.shape[0] == sc.shape[0] == lab.shape[0]):
            raise ValueError(f"fuse_streams: {name} segments/scores/labels lengths differ: "
                             f"{seg.shape[0]}, {sc.shape[0]}, {lab.shape[0]}")

    overlap = max_iou_same_class(rseg, rlab if class_aware else None,
                                 fseg, flab if class_aware else None)
    keep = torch.nonzero(overlap < iou_threshold).flatten()
    nf = fseg.shape[0]
    fused = FusedProposals(
        segments=torch.cat([fseg, rseg[keep]]),
        scores=torch.cat([fsc, rsc[keep] * rgb_factor]),
        labels=torch.cat([flab, rlab[keep]]),
        stream=torch.cat([torch.full((nf,), FLOW, dtype=torch.long, device=fseg.device),
                          torch.full((keep.numel(),), RGB, dtype=torch.long,
                                     device=fseg.device)]),
        source=torch.cat([torch.arange(nf, device=fseg.device), keep]),
    )
    if is_numpy:
        fused = FusedProposals(*(getattr(fused, f).cpu().numpy() for f in
                                 ("segments", "scores", "labels", "stream", "source")))
    return fused
