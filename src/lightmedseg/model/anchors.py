"""Global anchor detector (Section 3.2, Eq. 1): K sample-specific anchors in [0, 1]^3 from the raw input."""

from __future__ import annotations

import torch
from torch import nn

from lightmedseg.model.blocks import group_norm


class GlobalAnchorDetector(nn.Module):
    """``S = sigmoid(MLP(GAP3D(phi(X))))``, S in [0,1]^{B x K x 3} (rows are (d, h, w)).

    phi is three (Conv3D k3 s2 p1, GN_4, SiLU) layers; the paper does not give their width, we use
    ``width`` = C_0 = 8, which gives exactly the paper's 8.6K parameters with the 128-wide MLP.

    Args:
        in_channels: number of input modalities.
        num_anchors: K.
        width: channels of the three encoder layers of phi.
        hidden: hidden width of the two-layer MLP (128 in the paper).
    """

    def __init__(self, in_channels: int, num_anchors: int = 8, width: int = 8, hidden: int = 128) -> None:
        super().__init__()
        self.num_anchors = num_anchors
        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(3):
            layers += [nn.Conv3d(channels, width, 3, 2, padding=1, bias=False), group_norm(width), nn.SiLU()]
            channels = width
        self.phi = nn.Sequential(*layers)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.SiLU(), nn.Linear(hidden, 3 * num_anchors))

    @property
    def conv_blocks(self) -> list[tuple[nn.Conv3d, nn.GroupNorm]]:
        """phi's (conv, GN_4) pairs in order, each followed by a SiLU (a view: ``phi`` keeps the checkpoint names)."""
        return [(self.phi[i], self.phi[i + 1]) for i in range(0, len(self.phi), 3)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        descriptor = self.phi(x).mean(dim=(2, 3, 4))  # GAP3D
        return torch.sigmoid(self.mlp(descriptor)).view(x.shape[0], self.num_anchors, 3)  # Eq. 1
