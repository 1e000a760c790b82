"""Multi-scale skip fusion (Section 3.5, Eqs. 11-13)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from lightmedseg.model.blocks import conv1x1


DOWNSAMPLE_MODES = ("interpolate", "pool")


def is_finer(shape: Sequence[int], size: Sequence[int]) -> bool:
    """True when a map of spatial ``shape`` is at least as fine as ``size`` on every axis and finer on one."""
    return all(s >= t for s, t in zip(shape, size)) and tuple(shape) != tuple(size)


def resample(x: torch.Tensor, size: Sequence[int], downsample: str = "interpolate") -> torch.Tensor:
    """Bring ``x`` to spatial ``size``: trilinear, or average pooling for finer maps with ``downsample="pool"``.

    Section 3.5 says the stage maps are "trilinearly upsampled"; for maps finer than the target that
    cannot apply literally. "interpolate" (trilinear both ways) is the literal reading; "pool" averages
    every source voxel of a target cell instead of sampling between two (docs/architecture.md).
    """
    if tuple(x.shape[2:]) == tuple(size):
        return x
    if downsample == "pool" and is_finer(x.shape[2:], size):
        return average_pool_to(x, size)
    return F.interpolate(x, size=tuple(size), mode="trilinear", align_corners=False)


def average_pool_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Average pooling of a finer map onto ``size`` (an integer factor per axis, as between encoder levels).

    A fixed kernel = stride rather than adaptive pooling: the factor between two levels does not depend on
    the input size, and a constant kernel exports to ONNX / OpenVINO with dynamic spatial axes.
    """
    kernel = tuple(int(s) // int(t) for s, t in zip(x.shape[2:], size))
    return F.avg_pool3d(x, kernel, kernel)


class MultiScaleSkipRouter(nn.Module):
    """Learned router over all encoder stages, shared by the two low-resolution decoder stages.

    ``E_hat^(i) = Conv1x1(E^(i); C_i -> width)`` (Eq. 11), each resampled to the decoder level;
    a two-layer 1x1x1 controller (4*width -> width -> M, SiLU between) gives per-voxel logits whose
    softmax over stages (Eq. 12) weights the sum (Eq. 13). Projections + controller = 24.6K parameters
    (paper: 24K). The 64 -> C_j output projection belongs to each decoder stage's skip adapter.
    """

    def __init__(self, encoder_channels: Sequence[int] = (8, 16, 32, 64), width: int = 64,
                 downsample: str = "interpolate") -> None:
        super().__init__()
        if downsample not in DOWNSAMPLE_MODES:
            raise ValueError(f"router downsample must be one of {DOWNSAMPLE_MODES}, got {downsample!r}")
        self.width = width
        self.downsample = downsample
        self.project = nn.ModuleList(conv1x1(c, width) for c in encoder_channels)
        n = len(encoder_channels)
        self.controller = nn.Sequential(conv1x1(n * width, width), nn.SiLU(), conv1x1(width, n))

    @property
    def controller_hidden(self) -> nn.Conv3d:
        """The controller's first 1x1 (M*width -> width), followed by a SiLU (``controller`` keeps the checkpoint names)."""
        return self.controller[0]

    @property
    def controller_out(self) -> nn.Conv3d:
        """The controller's second 1x1 (width -> M): the per-stage logits of Eq. 12."""
        return self.controller[2]

    def forward(self, skips: Sequence[torch.Tensor], size: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Fuse ``skips`` at spatial ``size``; returns (SKIP_j with ``width`` channels, weights B x M x size)."""
        aligned = [resample(proj(e), size, self.downsample) for proj, e in zip(self.project, skips)]  # Eq. 11 + resampling
        weights = torch.softmax(self.controller(torch.cat(aligned, dim=1)), dim=1)  # Eq. 12
        fused = sum(weights[:, i : i + 1] * a for i, a in enumerate(aligned))  # Eq. 13
        return fused, weights
