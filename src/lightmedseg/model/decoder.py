"""Adaptive decoder (Section 3.6, Eqs. 14-21): position-biased upsampling, skip fusion, 3-path gating, SE."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from lightmedseg.model.blocks import (
    ConvKind,
    ConvNormAct,
    SqueezeExcite3d,
    StrideLike,
    as_stride3,
    conv1x1,
    depthwise3,
    make_conv3,
)


def anchor_offset_maps(anchors: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """P_{j,k}[d,h,w] = (d/D - s_kd) + (h/H - s_kh) + (w/W - s_kw), stacked to B x K x D x H x W (Eq. 14).

    Built axis by axis from three 1-D arrays and summed by broadcasting, as the paper describes.
    """
    b, k, _ = anchors.shape
    axes = []
    for axis, n in enumerate(size):
        ramp = torch.arange(n, device=anchors.device, dtype=anchors.dtype) / n
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = n
        axes.append(ramp.view(shape) - anchors[:, :, axis].view(b, k, 1, 1, 1))
    return axes[0] + axes[1] + axes[2]


class SpatialPositionBias(nn.Module):
    """SPB_j = Conv1x1(stack_k P_{j,k}; K -> C_j) (Eq. 15). Reference form; see fast path for the closed form.

    ``zero_init`` starts the projection at zero: the bias is learned from nothing instead of starting
    3-12x larger than the upsampled features it is added to (docs/architecture.md, "Initialisation").
    """

    def __init__(self, num_anchors: int, channels: int, zero_init: bool = False) -> None:
        super().__init__()
        self.proj = conv1x1(num_anchors, channels)
        if zero_init:
            nn.init.zeros_(self.proj.weight)
            nn.init.zeros_(self.proj.bias)

    def forward(self, anchors: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        return self.proj(anchor_offset_maps(anchors, size))


class DecoderStage(nn.Module):
    """One decoder stage j.

    ``U = ConvT_{2,2}(x)``; ``D_in = Conv1x1([U + SPB, SKIP])`` (Eq. 16);
    ``pi = softmax(Conv1x1(D_in; C -> 3))`` (Eq. 17); ``D_gated = sum_p pi_p F_p(D_in)`` (Eqs. 18-21); SE.

    Args:
        stride: the upsampling factor, kernel = stride (2 in the paper; per axis, e.g. (1, 2, 2), to
            mirror an anisotropic encoder).
        upsample_init: "torch" (PyTorch's default, whose fan-in for ConvTranspose3d is C_out * k^3, so
            every upsampling shrinks the signal) or "fan_in" (N(0, 1/C_in) at the true fan-in, zero bias).
        spb_zero_init: start the spatial position bias at zero.
    """

    num_paths = 3

    def __init__(self, in_channels: int, out_channels: int, num_anchors: int | None, conv: ConvKind = "ghost",
                 stride: StrideLike = 2, upsample_init: str = "torch", spb_zero_init: bool = False) -> None:
        super().__init__()
        self.stride = as_stride3(stride)
        self.up = nn.ConvTranspose3d(in_channels, out_channels, self.stride, self.stride)
        if upsample_init == "fan_in":
            # kernel = stride: every output voxel sees exactly one input voxel per input channel.
            nn.init.normal_(self.up.weight, std=in_channels ** -0.5)
            nn.init.zeros_(self.up.bias)
        elif upsample_init != "torch":
            raise ValueError(f"upsample_init must be 'torch' or 'fan_in', got {upsample_init!r}")
        self.spb = SpatialPositionBias(num_anchors, out_channels, spb_zero_init) if num_anchors else None
        self.fuse = conv1x1(2 * out_channels, out_channels)  # Eq. 16
        self.gate = conv1x1(out_channels, self.num_paths)  # Eq. 17
        self.path_local = ConvNormAct(depthwise3(out_channels, bias=False), out_channels)  # Eq. 19
        self.path_context = ConvNormAct(make_conv3(out_channels, out_channels, kind=conv), out_channels)  # Eq. 20
        self.path_channel = ConvNormAct(conv1x1(out_channels, out_channels, bias=False), out_channels)  # Eq. 21
        self.se = SqueezeExcite3d(out_channels)

    def forward(
        self, x: torch.Tensor, skip: torch.Tensor, anchors: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        u = self.up(x)
        if self.spb is not None:
            u = u + self.spb(anchors, u.shape[2:])
        d_in = self.fuse(torch.cat([u, skip], dim=1))
        pi = torch.softmax(self.gate(d_in), dim=1)
        gated = (
            pi[:, 0:1] * self.path_local(d_in)
            + pi[:, 1:2] * self.path_context(d_in)
            + pi[:, 2:3] * self.path_channel(d_in)
        )  # Eq. 18
        return self.se(gated), pi
