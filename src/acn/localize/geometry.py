"""1-D segment geometry: temporal intersection-over-union.

Segments are ``(start, end)`` pairs in any consistent unit (snippets inside the model, seconds
at the boundaries). A segment with ``end <= start`` has zero length and, by convention, an IoU
of 0 with everything (itself included) -- never NaN.
"""

from __future__ import annotations

import torch

__all__ = ["segment_iou", "segment_iou_aligned", "iou_from_bounds"]


def iou_from_bounds(
    a_start: torch.Tensor, a_end: torch.Tensor, b_start: torch.Tensor, b_end: torch.Tensor
) -> torch.Tensor:
    """IoU of segments given by broadcastable start/end tensors (result has the broadcast shape)."""
    len_a = (a_end - a_start).clamp_min(0)
    len_b = (b_end - b_start).clamp_min(0)
    inter = (torch.minimum(a_end, b_end) - torch.maximum(a_start, b_start)).clamp_min(0)
    union = len_a + len_b - inter
    valid = (len_a > 0) & (len_b > 0) & (union > 0)
    # Safe denominator so that neither the value nor its gradient becomes NaN.
    safe_union = torch.where(valid, union, torch.ones_like(union))
    return torch.where(valid, inter / safe_union, torch.zeros_like(union))


def segment_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU matrix.

    Args:
        a: (N, 2) segments ``[start, end]``.
        b: (M, 2) segments in the same unit.
    Returns:
        (N, M) IoU values in [0, 1]; 0 wherever either segment has zero length.
    """
    a = torch.as_tensor(a)
    b = torch.as_tensor(b)
    dtype = torch.promote_types(a.dtype, b.dtype)
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    a = a.to(dtype).reshape(-1, 2)
    b = b.to(dtype).reshape(-1, 2)
    return iou_from_bounds(a[:, None, 0], a[:, None, 1], b[None, :, 0], b[None, :, 1])


def segment_iou_aligned(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Element-wise IoU of broadcastable segment tensors of shape (..., 2); returns shape (...)."""
    a = torch.as_tensor(a)
    b = torch.as_tensor(b)
    dtype = torch.promote_types(a.dtype, b.dtype)
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    a = a.to(dtype)
    b = b.to(dtype)
    return iou_from_bounds(a[..., 0], a[..., 1], b[..., 0], b[..., 1])
