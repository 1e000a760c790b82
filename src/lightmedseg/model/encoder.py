"""Four-stage encoder with anchor FiLM, texture routing and SE (Section 3.4, Eqs. 6-10)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from lightmedseg.model.blocks import (
    PAPER_KERNEL,
    ConvKind,
    ConvNormAct,
    FiLM,
    KernelLike,
    SqueezeExcite3d,
    StrideLike,
    as_stride3,
    conv1x1,
    group_norm,
    local_conv3,
    make_conv3,
)
from lightmedseg.model.skip_router import resample


class EncoderStage(nn.Module):
    """One stage: ``E = SE(T*Z_detail + (1-T)*Z_smooth)`` on ``F_cond = (1+gamma)*Ghost(F) + beta``.

    Args:
        in_channels: C_{i-1}.
        out_channels: C_i.
        anchor_dim: 3K, the length of the flattened anchors; ``None`` removes FiLM ("w/o Anchors").
        conv: "ghost" or "standard" for the projection.
        project_norm: GN_4 after the projection, before FiLM (a reading of Section 3.1's "concatenated and
            normalized via Group Normalization"; the literal Eq. 6 has none).
        film_identity_init: FiLM starts as the identity (W_gamma = W_beta = 0).
        kernel: the kernel of the stage's 3^3 convs (projection and detail path; ``model.kernel_sizes``).
        dense_local_convs: the detail path's conv (Eq. 7) dense instead of depthwise (:func:`local_conv3`).
    """

    def __init__(self, in_channels: int, out_channels: int, anchor_dim: int | None, conv: ConvKind = "ghost",
                 project_norm: bool = False, film_identity_init: bool = False,
                 kernel: KernelLike = PAPER_KERNEL, dense_local_convs: bool = False) -> None:
        super().__init__()
        self.project = make_conv3(in_channels, out_channels, kind=conv, kernel=kernel)
        self.project_norm = group_norm(out_channels) if project_norm else None
        self.film = FiLM(anchor_dim, out_channels, film_identity_init) if anchor_dim else None
        self.detail = ConvNormAct(local_conv3(out_channels, dense_local_convs, kernel), out_channels)  # Eq. 7
        self.smooth = conv1x1(out_channels, out_channels)  # Eq. 8
        self.se = SqueezeExcite3d(out_channels)  # Eq. 10

    def forward(self, x: torch.Tensor, anchors_flat: torch.Tensor | None, texture: torch.Tensor | None) -> torch.Tensor:
        cond = self.project(x)
        if self.project_norm is not None:
            cond = self.project_norm(cond)
        if self.film is not None:
            cond = self.film(cond, anchors_flat)  # Eq. 6
        detail, smooth = self.detail(cond), self.smooth(cond)
        if texture is None:
            # "w/o LSPM": no texture map exists; both paths are kept and averaged (a fixed gate of 1/2).
            routed = 0.5 * (detail + smooth)
        else:
            routed = smooth + texture * (detail - smooth)  # Eq. 9, T*detail + (1-T)*smooth
        return self.se(routed)


class Encoder(nn.Module):
    """Stages with widths ``channels`` (8, 16, 32, 64); max pooling before stages 2-4.

    ``pool_strides`` gives each pooling's (d, h, w) kernel = stride: (2, 2, 2) three times in the paper,
    (1, 2, 2), (2, 2, 2), (2, 2, 2) in the anisotropic ACDC plan. ``kernels``: each stage's 3^3 kernel
    (``None``: 3^3 everywhere, the paper's). ``dense_local_convs``: see :class:`EncoderStage`.
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int] = (8, 16, 32, 64),
        anchor_dim: int | None = 24,
        conv: ConvKind = "ghost",
        pool_strides: Sequence[StrideLike] | None = None,
        project_norm: bool = False,
        film_identity_init: bool = False,
        kernels: Sequence[KernelLike] | None = None,
        dense_local_convs: bool = False,
    ) -> None:
        super().__init__()
        self.channels = tuple(channels)
        widths = (in_channels, *channels)
        kernels = list(kernels) if kernels is not None else [PAPER_KERNEL] * len(channels)
        if len(kernels) != len(channels):
            raise ValueError(f"need {len(channels)} stage kernels for {len(channels)} stages, got {len(kernels)}")
        self.stages = nn.ModuleList(
            EncoderStage(widths[i], widths[i + 1], anchor_dim, conv, project_norm, film_identity_init, kernels[i],
                         dense_local_convs)
            for i in range(len(channels))
        )
        strides = [as_stride3(s) for s in (pool_strides or [2] * (len(channels) - 1))]
        if len(strides) != len(channels) - 1:
            raise ValueError(f"need {len(channels) - 1} pooling strides for {len(channels)} stages, got {len(strides)}")
        self.pool_strides = strides
        self.pools = nn.ModuleList(nn.MaxPool3d(s, s) for s in strides)

    def forward(
        self, x: torch.Tensor, anchors_flat: torch.Tensor | None, texture: torch.Tensor | None
    ) -> list[torch.Tensor]:
        """Return the skip features E^(1..4), from the highest resolution to the bottleneck."""
        skips: list[torch.Tensor] = []
        for i, stage in enumerate(self.stages):
            if i > 0:
                x = self.pools[i - 1](x)
            t_i = None
            if texture is not None:
                t_i = resample(texture, x.shape[2:])
            x = stage(x, anchors_flat, t_i)
            skips.append(x)
        return skips
