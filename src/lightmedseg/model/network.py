"""LightMedSeg (paper Section 3): stem -> anchors + LSPM -> FiLM encoder -> skip router -> adaptive decoder -> head."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from lightmedseg.model.anchors import GlobalAnchorDetector
from lightmedseg.model.blocks import ConvKind, conv1x1
from lightmedseg.model.decoder import DecoderStage
from lightmedseg.model.encoder import Encoder
from lightmedseg.model.lspm import LocalStructuralPriorModule
from lightmedseg.model.skip_router import MultiScaleSkipRouter, resample
from lightmedseg.model.stem import PatchEmbeddingStem


class SkipAdapter(nn.Module):
    """Brings one skip source to decoder stage j: ``resample(Conv1x1(source; C_src -> C_j))``.

    For the router levels the source is the fused 64-channel SKIP_j (the paper's final 64 -> C_j
    projection); otherwise it is the spatially corresponding encoder map, or the stem output for the
    full-resolution stage, projected and trilinearly upsampled as Section 3.5 describes.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.proj = conv1x1(in_channels, out_channels)

    def forward(self, source: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        return resample(self.proj(source), size)


class LightMedSeg(nn.Module):
    """The LightMedSeg network: B x C_in x D x H x W -> B x N_cls x D x H x W logits.

    D, H and W must be multiples of 16 (stride-2 stem and three 2x poolings).

    Args:
        in_channels: imaging modalities (4 for BraTS, 1 for ACDC).
        num_classes: output classes including background.
        conv: "ghost" (paper default) or "standard" (dense 3^3 convs; Tables 1-2 and Table 4 "w/o GhostConv3D").
        num_anchors: K, anchors predicted by the global anchor detector (8, 16 or 32 in Table 4).
        use_lspm: keep the LSPM (Table 4 "w/o LSPM" sets False: F'_0 = F_0, fixed 1/2 routing gate).
        use_anchors: keep the anchor detector, FiLM and spatial position bias (Table 4 "w/o Anchors").
        use_skip_router: learned multi-scale router at the two low-resolution decoder stages; False uses
            the same-scale encoder feature there (Table 4 "w/o Skip Router").
        stem_channels: C_0 (8).
        encoder_channels: C_1..C_4 (8, 16, 32, 64); the decoder mirrors them.
        router_width: common width of the router projections (64).
        router_levels: how many low-resolution decoder stages use the router (2).
        anchor_width: channels of the anchor detector's conv encoder (8, see docs/architecture.md).
        anchor_hidden: hidden width of the anchor MLP (128).
    """

    def __init__(
        self,
        in_channels: int = 4,
        num_classes: int = 4,
        conv: ConvKind = "ghost",
        num_anchors: int = 8,
        use_lspm: bool = True,
        use_anchors: bool = True,
        use_skip_router: bool = True,
        stem_channels: int = 8,
        encoder_channels: Sequence[int] = (8, 16, 32, 64),
        router_width: int = 64,
        router_levels: int = 2,
        anchor_width: int = 8,
        anchor_hidden: int = 128,
    ) -> None:
        super().__init__()
        if in_channels < 1 or num_classes < 2:
            raise ValueError(f"need in_channels >= 1 and num_classes >= 2, got {in_channels} and {num_classes}")
        encoder_channels = tuple(int(c) for c in encoder_channels)
        self.config: dict[str, Any] = dict(
            in_channels=in_channels, num_classes=num_classes, conv=conv, num_anchors=num_anchors,
            use_lspm=use_lspm, use_anchors=use_anchors, use_skip_router=use_skip_router,
            stem_channels=stem_channels, encoder_channels=list(encoder_channels), router_width=router_width,
            router_levels=router_levels, anchor_width=anchor_width, anchor_hidden=anchor_hidden,
        )
        self.size_divisor = 2 ** len(encoder_channels)
        anchor_dim = 3 * num_anchors if use_anchors else None

        self.stem = PatchEmbeddingStem(in_channels, stem_channels, conv)
        self.anchor_detector = (
            GlobalAnchorDetector(in_channels, num_anchors, anchor_width, anchor_hidden) if use_anchors else None
        )
        self.lspm = LocalStructuralPriorModule(stem_channels) if use_lspm else None
        self.encoder = Encoder(stem_channels, encoder_channels, anchor_dim, conv)

        decoder_channels = encoder_channels[::-1]  # (64, 32, 16, 8)
        n = len(decoder_channels)
        self.router_levels = router_levels if use_skip_router else 0
        self.skip_router = MultiScaleSkipRouter(encoder_channels, router_width) if self.router_levels else None
        adapters = []
        for j in range(n):
            if j < self.router_levels:
                source_channels = router_width
            elif j < n - 1:
                source_channels = encoder_channels[n - 2 - j]  # same-scale encoder stage E^(4-j)
            else:
                source_channels = stem_channels  # full-resolution stage: the stem output F_0
            adapters.append(SkipAdapter(source_channels, decoder_channels[j]))
        self.skip_adapters = nn.ModuleList(adapters)

        self.bottleneck = conv1x1(encoder_channels[-1], encoder_channels[-1])
        widths = (encoder_channels[-1], *decoder_channels)
        self.decoder = nn.ModuleList(
            DecoderStage(widths[j], widths[j + 1], num_anchors if use_anchors else None, conv) for j in range(n)
        )
        self.head = conv1x1(decoder_channels[-1], num_classes)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless x is B x in_channels x D x H x W with D, H, W multiples of 16."""
        if x.dim() != 5:
            raise ValueError(f"expected a 5-D input B x C x D x H x W, got shape {tuple(x.shape)}")
        if x.shape[1] != self.config["in_channels"]:
            raise ValueError(f"model expects {self.config['in_channels']} input channels, got {x.shape[1]}")
        bad = [s for s in x.shape[2:] if s % self.size_divisor or s == 0]
        if bad:
            raise ValueError(
                f"spatial size {tuple(x.shape[2:])} is not supported: every dimension must be a positive "
                f"multiple of {self.size_divisor} (pad the volume, as the predictor does)"
            )

    def forward(self, x: torch.Tensor, return_intermediates: bool = False):
        self.check_input(x)
        f0 = self.stem(x)
        anchors = self.anchor_detector(x) if self.anchor_detector is not None else None
        anchors_flat = anchors.flatten(1) if anchors is not None else None
        extras: dict[str, Any] = {"anchors": anchors}
        if self.lspm is not None:
            lspm = self.lspm(f0)
            features, texture = lspm["features"], lspm["texture"]
            extras.update(texture=texture, complexity=lspm["gate"], lspm_weights=lspm["expert_weights"])
        else:
            features, texture = f0, None
            extras.update(texture=None, complexity=None, lspm_weights=None)

        skips = self.encoder(features, anchors_flat, texture)
        x_dec = self.bottleneck(skips[-1])
        router_weights, path_weights = [], []
        n = len(self.decoder)
        for j, stage in enumerate(self.decoder):
            size = [2 * s for s in x_dec.shape[2:]]
            if j < self.router_levels:
                source, w = self.skip_router(skips, size)
                router_weights.append(w)
            elif j < n - 1:
                source = skips[n - 2 - j]
            else:
                source = f0
            skip = self.skip_adapters[j](source, size)
            x_dec, pi = stage(x_dec, skip, anchors)
            path_weights.append(pi)
        logits = self.head(x_dec)
        if not return_intermediates:
            return logits
        extras.update(router_weights=router_weights, decoder_path_weights=path_weights)
        return logits, extras
