"""Adaptive decoder (Section 3.6, Eqs. 14-21): position-biased upsampling, skip fusion, 3-path gating, SE."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from lightmedseg.model.blocks import (
    ConvKind,
    ConvNormAct,
    SqueezeExcite3d,
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
    """SPB_j = Conv1x1(stack_k P_{j,k}; K -> C_j) (Eq. 15). Reference form; see fast path for the closed form."""

    def __init__(self, num_anchors: int, channels: int) -> None:
        super().__init__()
        self.proj = conv1x1(num_anchors, channels)

    def forward(self, anchors: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        return self.proj(anchor_offset_maps(anchors, size))


class DecoderStage(nn.Module):
    """One decoder stage j.

    ``U = ConvT_{2,2}(x)``; ``D_in = Conv1x1([U + SPB, SKIP])`` (Eq. 16);
    ``pi = softmax(Conv1x1(D_in; C -> 3))`` (Eq. 17); ``D_gated = sum_p pi_p F_p(D_in)`` (Eqs. 18-21); SE.
    """

    num_paths = 3

    def __init__(self, in_channels: int, out_channels: int, num_anchors: int | None, conv: ConvKind = "ghost") -> None:
        super().__init__()
        self.up = nn.ConvTranspose3d(in_channels, out_channels, 2, 2)
        self.spb = SpatialPositionBias(num_anchors, out_channels) if num_anchors else None
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
