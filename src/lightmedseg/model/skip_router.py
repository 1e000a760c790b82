"""Multi-scale skip fusion (Section 3.5, Eqs. 11-13)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from lightmedseg.model.blocks import conv1x1


def resample(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Trilinear resampling to ``size`` (identity when the size already matches)."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="trilinear", align_corners=False)


class MultiScaleSkipRouter(nn.Module):
    """Learned router over all encoder stages, shared by the two low-resolution decoder stages.

    ``E_hat^(i) = Conv1x1(E^(i); C_i -> width)`` (Eq. 11), each resampled to the decoder level;
    a two-layer 1x1x1 controller (4*width -> width -> M, SiLU between) gives per-voxel logits whose
    softmax over stages (Eq. 12) weights the sum (Eq. 13). Projections + controller = 24.6K parameters
    (paper: 24K). The 64 -> C_j output projection belongs to each decoder stage's skip adapter.
    """

    def __init__(self, encoder_channels: Sequence[int] = (8, 16, 32, 64), width: int = 64) -> None:
        super().__init__()
        self.width = width
        self.project = nn.ModuleList(conv1x1(c, width) for c in encoder_channels)
        n = len(encoder_channels)
        self.controller = nn.Sequential(conv1x1(n * width, width), nn.SiLU(), conv1x1(width, n))

    def forward(self, skips: Sequence[torch.Tensor], size: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Fuse ``skips`` at spatial ``size``; returns (SKIP_j with ``width`` channels, weights B x M x size)."""
        aligned = [resample(proj(e), size) for proj, e in zip(self.project, skips)]  # Eq. 11 + resampling
        weights = torch.softmax(self.controller(torch.cat(aligned, dim=1)), dim=1)  # Eq. 12
        fused = sum(weights[:, i : i + 1] * a for i, a in enumerate(aligned))  # Eq. 13
        return fused, weights
