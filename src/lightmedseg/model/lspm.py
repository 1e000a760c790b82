"""Local Structural Prior Module (Section 3.3, Eqs. 2-5).

Three parallel branches on the stem output F_0:
  1. texture map T (Eqs. 2-3): where high-frequency structure is;
  2. spatial gating head G (Eq. 4): how complex the learned features are, turned into expert weights;
  3. adaptive feature mixer (Eq. 5): a per-voxel soft mixture of two 1x1x1 expert projections.
"""

from __future__ import annotations

import torch
from torch import nn

from lightmedseg.model.blocks import PAPER_KERNEL, ConvNormAct, KernelLike, as_kernel3, conv1x1, same_padding, widened


class TextureBranch(nn.Module):
    """Branch 1: ``T = sigmoid(Conv1x1(|SiLU(GN_4(DWConv5(F_0))) - F_0|))`` in [0,1]^{B x 1 x ...}.

    ``kernel``: the level's 3^3 kernel; DWConv5 is its widened form (5^3, or 1 x 5 x 5 for (1, 3, 3)).
    """

    def __init__(self, channels: int, kernel: KernelLike = PAPER_KERNEL) -> None:
        super().__init__()
        k5 = widened(kernel)
        self.smooth = ConvNormAct(nn.Conv3d(channels, channels, k5, 1, padding=same_padding(k5), groups=channels,
                                            bias=False), channels)  # Eq. 2
        self.to_map = conv1x1(channels, 1)

    def forward(self, f0: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.to_map(torch.abs(self.smooth(f0) - f0)))  # Eq. 3


class SpatialGatingHead(nn.Module):
    """Branch 2: ``G = sigmoid(psi(F_0))`` (Eq. 4).

    psi: two 3^3 convs (C_0 -> 2C_0 -> 2C_0), each with GN_4 + SiLU (receptive field 5^3), then a 1x1x1
    collapse to one channel. The paper says the second conv "collapses to a single-channel output" but
    also puts GN_4 after it (impossible on one channel) and prices the branch at 10.5K parameters, which
    only the reading with a 2C_0-wide second conv and a separate 1x1x1 collapse reaches (10,449).
    ``kernel`` replaces 3^3 (``model.kernel_sizes``).
    """

    def __init__(self, channels: int, kernel: KernelLike = PAPER_KERNEL) -> None:
        super().__init__()
        wide = 2 * channels
        k, pad = as_kernel3(kernel), same_padding(kernel)
        self.psi = nn.Sequential(
            ConvNormAct(nn.Conv3d(channels, wide, k, 1, padding=pad, bias=False), wide),
            ConvNormAct(nn.Conv3d(wide, wide, k, 1, padding=pad, bias=False), wide),
            conv1x1(wide, 1),
        )

    @property
    def hidden_blocks(self) -> list[ConvNormAct]:
        """psi's 3^3 (conv, GN_4, SiLU) blocks, in order (a view: ``psi`` keeps the checkpoint names)."""
        return list(self.psi[:-1])

    @property
    def collapse(self) -> nn.Conv3d:
        """psi's final 1x1x1 conv to one channel."""
        return self.psi[-1]

    def forward(self, f0: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.psi(f0))


class AdaptiveFeatureMixer(nn.Module):
    """Branch 3: ``F'_0 = alpha_1 * Z_1 + alpha_2 * Z_2`` (Eq. 5), alpha = softmax(Conv1x1(G; 1 -> 2)).

    The experts are 1x1x1 projections C_0 -> C_0 (with bias); with the 1 -> 2 weight projection this is
    2 x 72 + 4 = 148 parameters, the paper's 0.15K.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.to_weights = conv1x1(1, 2)
        self.expert1 = conv1x1(channels, channels)
        self.expert2 = conv1x1(channels, channels)

    def forward(self, f0: torch.Tensor, gate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        alpha = torch.softmax(self.to_weights(gate), dim=1)
        mixed = alpha[:, 0:1] * self.expert1(f0) + alpha[:, 1:2] * self.expert2(f0)
        return mixed, alpha


class LocalStructuralPriorModule(nn.Module):
    """LSPM: emits the texture routing map T and the structurally adapted features F'_0.

    ``kernel``: the 3^3 kernel of F_0's level (``model.kernel_sizes``); the paper's everywhere by default.
    """

    def __init__(self, channels: int = 8, kernel: KernelLike = PAPER_KERNEL) -> None:
        super().__init__()
        self.texture = TextureBranch(channels, kernel)
        self.gating = SpatialGatingHead(channels, kernel)
        self.mixer = AdaptiveFeatureMixer(channels)

    def forward(self, f0: torch.Tensor) -> dict[str, torch.Tensor]:
        texture = self.texture(f0)
        gate = self.gating(f0)
        mixed, alpha = self.mixer(f0, gate)
        return {"features": mixed, "texture": texture, "gate": gate, "expert_weights": alpha}
