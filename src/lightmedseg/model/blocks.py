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
Kernel3 = tuple[int, int, int]
KernelLike = Union[int, Sequence[int]]
PAPER_KERNEL: Kernel3 = (3, 3, 3)  # every "3^3" convolution of Sections 3.1-3.6


def as_stride3(stride: StrideLike) -> Stride3:
    """``2`` -> ``(2, 2, 2)``; a (d, h, w) sequence is checked and returned as a tuple of positive ints."""
    values = (stride,) * 3 if isinstance(stride, int) else tuple(int(s) for s in stride)
    if len(values) != 3 or any(s < 1 for s in values):
        raise ValueError(f"a stride must be a positive int or three positive ints (d, h, w), got {stride!r}")
    return values  # type: ignore[return-value]


def as_kernel3(kernel: KernelLike) -> Kernel3:
    """``3`` -> ``(3, 3, 3)``; a (d, h, w) sequence of odd positive ints is checked and returned as a tuple.

    Odd sizes only: every convolution here pads to keep its input's size ('same' padding, ``k // 2``).
    """
    values = (kernel,) * 3 if isinstance(kernel, int) else tuple(int(k) for k in kernel)
    if len(values) != 3 or any(k < 1 or k % 2 == 0 for k in values):
        raise ValueError(f"a kernel size must be an odd positive int or three of them (d, h, w), got {kernel!r}")
    return values  # type: ignore[return-value]


def same_padding(kernel: KernelLike) -> Kernel3:
    """The padding that keeps the size of a stride-1 convolution with ``kernel``: ``k // 2`` per axis."""
    return tuple(k // 2 for k in as_kernel3(kernel))  # type: ignore[return-value]


def widened(kernel: KernelLike, by: int = 2) -> Kernel3:
    """The kernel of a wider convolution at the same level: ``k + by`` along each axis that has extent (the
    LSPM's 5^3 depthwise conv, Eq. 2, is ``widened((3, 3, 3))``), 1 along an in-plane-only axis."""
    return tuple(k + by if k > 1 else 1 for k in as_kernel3(kernel))  # type: ignore[return-value]


def level_kernels(kernel_sizes: Sequence[KernelLike] | None, num_stages: int) -> list[Kernel3]:
    """The (d, h, w) kernel of the 3^3 convs on each resolution level: the input's grid, then each encoder
    stage's (``num_stages + 1`` entries); ``None`` is the paper's 3^3 everywhere."""
    values = [as_kernel3(k) for k in (kernel_sizes if kernel_sizes is not None else [PAPER_KERNEL] * (num_stages + 1))]
    if len(values) != num_stages + 1:
        raise ValueError(f"kernel_sizes: need {num_stages + 1} entries (the input's grid and {num_stages} stages), "
                         f"got {len(values)}")
    return values


def group_norm(channels: int, groups: int = 4) -> nn.GroupNorm:
    """GN_4 of the paper: group normalisation with four groups (fewer if ``channels`` < 4)."""
    return nn.GroupNorm(min(groups, channels), channels)


class GhostConv3d(nn.Module):
    """GhostConv3D with ghost ratio rho = 2 (Section 3.1, after GhostNet [8]).

    A (possibly strided) Conv3D makes ``ceil(out/2)`` primary maps; a depthwise 3^3 conv (stride 1)
    makes the remaining ghost maps from them; both are concatenated. No normalisation here: the
    callers add GN_4 where the paper does (stem, Eq. 20).

    ``kernel_size`` is the primary conv's; ``cheap_kernel_size`` (default: the same) the depthwise conv's, which
    runs at the output's resolution (they differ in a strided stem with per-level kernels).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: KernelLike = 3, stride: StrideLike = 1,
                 cheap_kernel_size: KernelLike | None = None) -> None:
        super().__init__()
        primary = (out_channels + 1) // 2
        ghost = out_channels - primary
        cheap = kernel_size if cheap_kernel_size is None else cheap_kernel_size
        self.primary = nn.Conv3d(in_channels, primary, as_kernel3(kernel_size), as_stride3(stride),
                                 padding=same_padding(kernel_size))
        self.cheap = nn.Conv3d(primary, ghost, as_kernel3(cheap), 1, padding=same_padding(cheap),
                               groups=math.gcd(primary, ghost))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.primary(x)
        return torch.cat([y, self.cheap(y)], dim=1)


def make_conv3(in_channels: int, out_channels: int, stride: StrideLike = 1, kind: ConvKind = "ghost",
               kernel: KernelLike = PAPER_KERNEL, out_kernel: KernelLike | None = None) -> nn.Module:
    """A 3^3 convolution as GhostConv3D (paper default) or a dense Conv3D ("Standard Conv" variant).

    ``kernel`` replaces 3^3 (e.g. (1, 3, 3) on thick-slice levels, ``model.kernel_sizes``); ``out_kernel`` is the
    ghost's cheap conv's kernel where it runs at another level than the primary conv (a strided stem).
    """
    if kind == "ghost":
        return GhostConv3d(in_channels, out_channels, kernel, stride, cheap_kernel_size=out_kernel)
    if kind == "standard":
        return nn.Conv3d(in_channels, out_channels, as_kernel3(kernel), as_stride3(stride), padding=same_padding(kernel))
    raise ValueError(f"conv must be 'ghost' or 'standard', got {kind!r}")


def local_conv3(channels: int, dense: bool = False, kernel: KernelLike = PAPER_KERNEL) -> nn.Conv3d:
    """The channel-preserving 3^3 conv of Eq. 7 (encoder detail path) and Eq. 19 (decoder local path), no bias.

    Depthwise in the paper's text (Sections 3.4 and 3.6); ``dense`` makes it a full Conv3D, the reading of the
    "Standard Conv" variant whose count is the paper's 0.66M (docs/architecture.md, "Standard Conv" reading).
    """
    if not dense:
        return depthwise3(channels, bias=False, kernel=kernel)
    return nn.Conv3d(channels, channels, as_kernel3(kernel), 1, padding=same_padding(kernel), bias=False)


def conv1x1(in_channels: int, out_channels: int, bias: bool = True) -> nn.Conv3d:
    """Pointwise 1x1x1 Conv3D."""
    return nn.Conv3d(in_channels, out_channels, 1, bias=bias)


def depthwise3(channels: int, bias: bool = True, kernel: KernelLike = PAPER_KERNEL) -> nn.Conv3d:
    """Depthwise 3^3 Conv3D (or ``kernel``), stride 1, 'same' padding, groups = channels."""
    return nn.Conv3d(channels, channels, as_kernel3(kernel), 1, padding=same_padding(kernel), groups=channels, bias=bias)


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
