"""Per-dimension input standardisation, fitted on the training videos and stored in the model.

Users bring features of every kind: I3D (ReLU-pooled, mean ~0.4), CLIP (signed, norm ~1),
features scaled by 1/50 or 40x, with large offsets. A network with a fixed learning rate and
weight decay learns on some of these and not on others (a Flow stream at 1/50 scale never
left its initial loss). :class:`InputNorm` maps every stream to zero mean and unit variance
per dimension with statistics of the TRAINING videos, so training and inference see the same
scale-free input whatever the features' scale, offset or sparsity. The statistics are buffers:
they travel in the checkpoint with the weights.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from acn.errors import AcnError

#: A dimension's std is at least this fraction of the median std over dimensions: a dimension
#: that is (nearly) constant on the training videos is not blown up into huge values on a
#: test video where it happens to vary.
STD_FLOOR = 1e-2


def feature_statistics(arrays: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std over every snippet of ``arrays``.

    Args:
        arrays: ``(T_i, D)`` feature arrays (one per video; float, memory-mapped is fine).

    Returns:
        ``(mean, std)``, each ``(D,)`` float32; std floored at :data:`STD_FLOOR` times the
        median std (at least 1e-12). Sums in float64, centred on the first snippet so that a
        large common offset loses no precision.
    """
    shift = s1 = s2 = None
    n = 0
    for a in arrays:
        a = np.asarray(a)
        if a.ndim != 2 or a.shape[0] == 0:
            continue
        if shift is None:
            shift = a[0].astype(np.float64)
            s1 = np.zeros_like(shift)
            s2 = np.zeros_like(shift)
        z = a.astype(np.float64) - shift
        s1 += z.sum(0)
        s2 += np.einsum("td,td->d", z, z)
        n += a.shape[0]
    if shift is None or n == 0:
        raise AcnError("feature statistics: no snippet to compute them on")
    mean_z = s1 / n
    var = np.maximum(s2 / n - mean_z ** 2, 0.0)
    std = np.sqrt(var)
    floor = max(STD_FLOOR * float(np.median(std)), 1e-12)
    return ((shift + mean_z).astype(np.float32), np.maximum(std, floor).astype(np.float32))


class InputNorm(nn.Module):
    """``(x - mean) / std`` per feature dimension, zero again at padded positions.

    Args:
        dim: D, the feature width. The statistics start as identity (mean 0, std 1) until
            :meth:`set_statistics` is called (or a state dict with them is loaded).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("inv_std", torch.ones(dim))

    def set_statistics(self, mean: np.ndarray | torch.Tensor, std: np.ndarray | torch.Tensor
                       ) -> None:
        mean = torch.as_tensor(np.asarray(mean, np.float32))
        std = torch.as_tensor(np.asarray(std, np.float32))
        if mean.shape != self.mean.shape or std.shape != self.mean.shape:
            raise AcnError(f"input statistics have shapes {tuple(mean.shape)} / "
                           f"{tuple(std.shape)}, the model expects ({self.mean.shape[0]},)")
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all() and (std > 0).all()):
            raise AcnError("input statistics must be finite with a positive std")
        self.mean.copy_(mean)
        self.inv_std.copy_(1.0 / std)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: ``(B, T, D)``; mask: ``(B, T, 1)`` float (1 on real snippets) or None.

        Returns a new ``(B, T, D)`` tensor; padded positions are 0 (a zero-padded convolution
        then pads with the training mean, as it would pad with 0 on standardised input)."""
        y = (x - self.mean) * self.inv_std
        return y if mask is None else y * mask
