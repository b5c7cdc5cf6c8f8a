"""Multi-anchor dilated temporal-conv regression networks (paper Sec. 3.2).

One network per anchor size P, slid along a stream's snippet features::

    Conv1d(D -> F, k=3, dilation d, zero padding d) -> ReLU
    Conv1d(F -> F, k=3, dilation d, zero padding d) -> ReLU
    Conv1d(F -> 2, k=1)                              -> r = (r_s, r_e) per snippet

with F = 256 filters and d = max(1, P // 4) (the paper's d = P/4 is below 1 for P < 4).
The decoding of r into boundaries (Eqs. 5-6) lives in :mod:`acn.localize.proposals`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from acn.model.normalize import InputNorm


def dilation_for(anchor: int) -> int:
    """The paper's d = P/4, floored and at least 1 (P in snippets)."""
    return max(1, int(anchor) // 4)


class AnchorRegressor(nn.Module):
    """The three-layer dilated conv net of one anchor size."""

    def __init__(self, in_dim: int, anchor: int, filters: int = 256, zero_init: bool = True):
        super().__init__()
        d = dilation_for(anchor)
        self.anchor = int(anchor)
        self.conv1 = nn.Conv1d(in_dim, filters, 3, dilation=d, padding=d)
        self.conv2 = nn.Conv1d(filters, filters, 3, dilation=d, padding=d)
        self.out = nn.Conv1d(filters, 2, 1)
        if zero_init:
            # r = 0 decodes to sigmoid(0) - 1/2 = 0: training starts from the plain anchors
            # instead of random offsets of up to +-P/2.
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, D, T) features (zero beyond each video's end); mask: (B, 1, T) float.

        Returns r: (B, 2, T). Intermediate activations are re-zeroed beyond each video's end
        so that a video's output in a padded batch equals its output alone (zero padding).
        """
        h = torch.relu(self.conv1(x))
        if mask is not None:
            h = h * mask
        h = torch.relu(self.conv2(h))
        if mask is not None:
            h = h * mask
        return self.out(h)

    def forward_channels_last(self, x: torch.Tensor, mask: torch.Tensor | None = None
                              ) -> torch.Tensor:
        """Inference only, the same numbers as ``forward``: x (B, D, 1, T) in channels-last
        memory (i.e. a (B, T, D) array, no transposed copy), mask (B, 1, 1, T) float.

        The dilated convolutions run as 1 x 3 conv2d on the channels-last layout, which oneDNN
        runs ~15 % faster on CPU than conv1d on (B, D, T) (measured, D = 1024, 6 anchors) and
        which needs no (B, D, T) copy of the input; activations are updated in place.
        Returns r: (B, 2, T)."""
        d = self.conv1.dilation[0]
        h = F.conv2d(x, self.conv1.weight.unsqueeze(2), self.conv1.bias, padding=(0, d),
                     dilation=(1, d)).relu_()
        if mask is not None:
            h.mul_(mask)
        h = F.conv2d(h, self.conv2.weight.unsqueeze(2), self.conv2.bias, padding=(0, d),
                     dilation=(1, d)).relu_()
        if mask is not None:
            h.mul_(mask)
        return F.conv2d(h, self.out.weight.unsqueeze(2), self.out.bias)[:, :, 0]


class RegressionNets(nn.Module):
    """All anchors of one stream. ``forward`` returns ``{P: r (B, 2, T)}``."""

    def __init__(self, in_dim: int, anchors: list[int], filters: int = 256, zero_init: bool = True,
                 input_norm: bool = False):
        super().__init__()
        if not anchors:
            raise ValueError("at least one anchor size is needed")
        self.in_dim = int(in_dim)
        self.anchors = [int(a) for a in anchors]
        self.filters = int(filters)
        # per-dimension standardisation with the training videos' statistics (buffers; see
        # acn.model.normalize); absent in checkpoints made before it existed
        self.norm = InputNorm(in_dim) if input_norm else None
        self.nets = nn.ModuleDict({str(a): AnchorRegressor(in_dim, a, filters, zero_init)
                                   for a in self.anchors})

    def kwargs(self) -> dict:
        kw = {"in_dim": self.in_dim, "anchors": list(self.anchors), "filters": self.filters}
        if self.norm is not None:
            kw["input_norm"] = True
        return kw

    def set_input_statistics(self, mean, std) -> None:
        """Per-dimension ``(D,)`` mean and std of the training videos (needs input_norm)."""
        if self.norm is None:
            raise ValueError("regression nets built without input_norm take no statistics")
        self.norm.set_statistics(mean, std)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None,
                zero_padded: bool = False) -> dict[int, torch.Tensor]:
        """feats: (B, T, D) padded batch; lengths: (B,) valid snippets per video.

        ``zero_padded``: the caller guarantees ``feats`` is 0 beyond each video's length (as
        ``pad_batch`` writes it), so the input is not masked (a full copy of the batch).
        Without gradients (inference) the convolutions run on the (B, T, D) layout as is
        (``AnchorRegressor.forward_channels_last``); with gradients on one (B, D, T) copy
        (the channels-last backward is ~30 % slower on CPU, measured).
        Returns ``{P: r (B, 2, T)}``."""
        mask = None
        if lengths is not None:
            t = torch.arange(feats.shape[1], device=feats.device)
            mask = (t[None, :] < lengths[:, None]).to(feats.dtype)
        if self.norm is not None:  # a new tensor, zero again at padded positions
            feats = self.norm(feats, None if mask is None else mask[:, :, None])
            zero_padded = True
        if not torch.is_grad_enabled():
            x = feats if (mask is None or zero_padded) else feats * mask[:, :, None]
            x = x.contiguous().transpose(1, 2).unsqueeze(2)  # (B, D, 1, T), channels-last
            m4 = None if mask is None else mask[:, None, None, :]
            return {a: self.nets[str(a)].forward_channels_last(x, m4) for a in self.anchors}
        x = feats.transpose(1, 2)
        if mask is not None:
            mask = mask[:, None, :]
            if not zero_padded:
                x = x * mask
        # one contiguous (B, D, T) copy shared by all anchors: on the transposed layout every
        # anchor's first conv is ~30% slower on CPU (measured, 6 anchors, D = 1024)
        x = x.contiguous()
        return {a: self.nets[str(a)](x, mask) for a in self.anchors}
