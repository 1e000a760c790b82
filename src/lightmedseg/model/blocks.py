"""Building blocks shared by several LightMedSeg modules (paper Sections 3.1, 3.4, 3.6).

GhostConv3D, the squeeze-and-excitation block and the FiLM projection are written here because
MONAI has no 3D ghost convolution and its SE block (``monai.networks.blocks.ChannelSELayer``) uses a
fixed reduction ratio, whereas the paper fixes the bottleneck width to ``max(4, floor(C/8))``.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence, Union

import torch
from torch import nn

ConvKind = Literal["ghost", "standard"]
Stride3 = tuple[int, int, int]
StrideLike = Union[int, Sequence[int]]


def as_stride3(stride: StrideLike) -> Stride3:
    """``2`` -> ``(2, 2, 2)``; a (d, h, w) sequence is checked and returned as a tuple of positive ints."""
    values = (stride,) * 3 if isinstance(stride, int) else tuple(int(s) for s in stride)
    if len(values) != 3 or any(s < 1 for s in values):
        raise ValueError(f"a stride must be a positive int or three positive ints (d, h, w), got {stride!r}")
    return values  # type: ignore[return-value]


def group_norm(channels: int, groups: int = 4) -> nn.GroupNorm:
    """GN_4 of the paper: group normalisation with four groups (fewer if ``channels`` < 4)."""
    return nn.GroupNorm(min(groups, channels), channels)


class GhostConv3d(nn.Module):
    """GhostConv3D with ghost ratio rho = 2 (Section 3.1, after GhostNet [8]).

    A (possibly strided) Conv3D makes ``ceil(out/2)`` primary maps; a depthwise 3^3 conv (stride 1)
    makes the remaining ghost maps from them; both are concatenated. No normalisation here: the
    callers add GN_4 where the paper does (stem, Eq. 20).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: StrideLike = 1) -> None:
        super().__init__()
        primary = (out_channels + 1) // 2
        ghost = out_channels - primary
        self.primary = nn.Conv3d(in_channels, primary, kernel_size, as_stride3(stride), padding=kernel_size // 2)
        self.cheap = nn.Conv3d(primary, ghost, 3, 1, padding=1, groups=math.gcd(primary, ghost))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.primary(x)
        return torch.cat([y, self.cheap(y)], dim=1)


def make_conv3(in_channels: int, out_channels: int, stride: StrideLike = 1, kind: ConvKind = "ghost") -> nn.Module:
    """A 3^3 convolution as GhostConv3D (paper default) or a dense Conv3D ("Standard Conv" variant)."""
    if kind == "ghost":
        return GhostConv3d(in_channels, out_channels, 3, stride)
    if kind == "standard":
        return nn.Conv3d(in_channels, out_channels, 3, as_stride3(stride), padding=1)
    raise ValueError(f"conv must be 'ghost' or 'standard', got {kind!r}")


def conv1x1(in_channels: int, out_channels: int, bias: bool = True) -> nn.Conv3d:
    """Pointwise 1x1x1 Conv3D."""
    return nn.Conv3d(in_channels, out_channels, 1, bias=bias)


def depthwise3(channels: int, bias: bool = True) -> nn.Conv3d:
    """Depthwise 3^3 Conv3D, stride 1, padding 1, groups = channels."""
    return nn.Conv3d(channels, channels, 3, 1, padding=1, groups=channels, bias=bias)


class ConvNormAct(nn.Sequential):
    """``SiLU(GN_4(conv(x)))``, the pattern of Eqs. 2, 7, 19-21.

    Convolutions built for this block carry no bias (``bias=False`` at the call sites): the group
    norm that follows re-centres the groups, so a bias would be largely redundant. This is also the
    reading that matches the paper's per-module parameter counts (Section 3.3 branch 1: 1,025 ~ 1K).
    """

    def __init__(self, conv: nn.Module, channels: int) -> None:
        super().__init__(conv, group_norm(channels), nn.SiLU())

    # Named views of the three children (state_dict keys stay "0", "1", "2": checkpoint names unchanged).
    @property
    def conv(self) -> nn.Module:
        """The convolution (a Conv3d or a GhostConv3d)."""
        return self[0]

    @property
    def norm(self) -> nn.GroupNorm:
        """The GN_4 after the convolution."""
        return self[1]


class SqueezeExcite3d(nn.Module):
    """Squeeze-and-excitation (Eq. 10): ``sigma(W2 SiLU(W1 GAP(x))) * x`` with b = max(4, C // 8)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bottleneck = max(4, channels // 8)
        self.w1 = nn.Linear(channels, self.bottleneck, bias=False)
        self.w2 = nn.Linear(self.bottleneck, channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeeze = x.mean(dim=(2, 3, 4))
        excite = torch.sigmoid(self.w2(nn.functional.silu(self.w1(squeeze))))
        return x * excite[:, :, None, None, None]


class FiLM(nn.Module):
    """Anchor-conditioned FiLM (Eq. 6): ``(1 + W_gamma s) * x + W_beta s`` with s = flatten(S).

    ``identity_init`` starts W_gamma = W_beta = 0, so the block is the identity at initialisation (the
    reading the paper's "(1 + gamma)" form suggests; see docs/architecture.md, "Initialisation").
    """

    def __init__(self, anchor_dim: int, channels: int, identity_init: bool = False) -> None:
        super().__init__()
        self.w_gamma = nn.Linear(anchor_dim, channels, bias=False)
        self.w_beta = nn.Linear(anchor_dim, channels, bias=False)
        if identity_init:
            nn.init.zeros_(self.w_gamma.weight)
            nn.init.zeros_(self.w_beta.weight)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        gamma = self.w_gamma(s)[:, :, None, None, None]
        beta = self.w_beta(s)[:, :, None, None, None]
        return (1.0 + gamma) * x + beta
