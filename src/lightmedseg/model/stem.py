"""Patch-embedding stem (Section 3.1): stride-2 GhostConv3D + GN_4, C_in -> C_0 = 8 at half resolution."""

from __future__ import annotations

import torch
from torch import nn

from lightmedseg.model.blocks import PAPER_KERNEL, ConvKind, KernelLike, StrideLike, group_norm, make_conv3


class PatchEmbeddingStem(nn.Module):
    """``F_0 = GN_4(GhostConv3D_{k3,s2}(X))`` in R^{B x C_0 x D/2 x H/2 x W/2}.

    ``stride`` is 2 in the paper; a per-axis (d, h, w) stride such as (1, 2, 2) keeps the slices of an
    anisotropic volume (the nnFormer-style ACDC plan, docs/architecture.md). ``kernel`` is the conv's kernel on
    the input grid, ``out_kernel`` the ghost's cheap conv's on F_0's grid (3^3 both in the paper).
    """

    def __init__(self, in_channels: int, out_channels: int = 8, conv: ConvKind = "ghost",
                 stride: StrideLike = 2, kernel: KernelLike = PAPER_KERNEL, out_kernel: KernelLike = PAPER_KERNEL) -> None:
        super().__init__()
        self.conv = make_conv3(in_channels, out_channels, stride=stride, kind=conv, kernel=kernel, out_kernel=out_kernel)
        self.norm = group_norm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))
