"""LightMedSeg (paper Section 3): stem -> anchors + LSPM -> FiLM encoder -> skip router -> adaptive decoder -> head."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from lightmedseg.model.anchors import GlobalAnchorDetector
from lightmedseg.model.blocks import ConvKind, Stride3, StrideLike, as_stride3, conv1x1
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


PAPER_STRIDE = 2  # "stride 2 halves all spatial dimensions" (Section 3.1), also each pooling


def stage_strides(strides: Sequence[StrideLike] | None, num_stages: int) -> list[Stride3]:
    """Per-stage (d, h, w) strides: the stem's, then each pooling's; ``None`` is the paper's 2 everywhere."""
    values = [as_stride3(s) for s in (strides if strides is not None else [PAPER_STRIDE] * num_stages)]
    if len(values) != num_stages:
        raise ValueError(f"strides: need {num_stages} entries (the stem and {num_stages - 1} poolings), got {len(values)}")
    return values


def size_divisors(model_config: Mapping[str, Any]) -> tuple[int, int, int]:
    """What each spatial size (d, h, w) must be a multiple of for the network in ``model_config``.

    The product of the stem's and the poolings' strides per axis: (16, 16, 16) for the paper's network,
    (4, 16, 16) for the anisotropic ACDC plan. The UNet baseline downsamples with the same ``strides``;
    the other baselines use 16.
    """
    if model_config.get("architecture", "lightmedseg") not in ("lightmedseg", "unet"):
        return (16, 16, 16)
    n = len(model_config.get("encoder_channels", (8, 16, 32, 64)))
    strides = stage_strides(model_config.get("strides"), n)
    return tuple(math.prod(s[a] for s in strides) for a in range(3))  # type: ignore[return-value]


class LightMedSeg(nn.Module):
    """The LightMedSeg network: B x C_in x D x H x W -> B x N_cls x D x H x W logits.

    Each of D, H, W must be a multiple of the product of the strides along it (16 with the paper's
    stride-2 stem and three 2x poolings; see :func:`size_divisors`).

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
        strides: (d, h, w) stride of the stem and of each pooling (4 entries); ``None`` = 2 everywhere
            (paper). The decoder mirrors them. E.g. ``[[1,2,2],[1,2,2],[2,2,2],[2,2,2]]`` for ACDC.
        upsample_init: "torch" or "fan_in" initialisation of the decoder's transposed convs.
        spb_zero_init: start the spatial position bias (Eq. 15) at zero.
        film_identity_init: start FiLM (Eq. 6) at the identity.
        encoder_norm: GN_4 on each encoder projection before FiLM (reading of Section 3.1).
        router_downsample: "interpolate" (literal) or "pool" for router maps finer than the target.
        deep_supervision: number of coarser decoder stages with a training-only 1x1 head; in training
            mode ``forward`` then returns ``[logits, aux_1, ...]`` from the finest to the coarsest.

    The options after ``anchor_hidden`` are not in the paper; their defaults are the paper-literal
    network, and docs/architecture.md says which reading each preset uses and why.
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
        strides: Sequence[StrideLike] | None = None,
        upsample_init: str = "torch",
        spb_zero_init: bool = False,
        film_identity_init: bool = False,
        encoder_norm: bool = False,
        router_downsample: str = "interpolate",
        deep_supervision: int = 0,
    ) -> None:
        super().__init__()
        if in_channels < 1 or num_classes < 2:
            raise ValueError(f"need in_channels >= 1 and num_classes >= 2, got {in_channels} and {num_classes}")
        encoder_channels = tuple(int(c) for c in encoder_channels)
        n = len(encoder_channels)
        strides3 = stage_strides(strides, n)
        if not 0 <= deep_supervision < n:
            raise ValueError(f"deep_supervision must be in [0, {n - 1}], got {deep_supervision}")
        self.config: dict[str, Any] = dict(
            in_channels=in_channels, num_classes=num_classes, conv=conv, num_anchors=num_anchors,
            use_lspm=use_lspm, use_anchors=use_anchors, use_skip_router=use_skip_router,
            stem_channels=stem_channels, encoder_channels=list(encoder_channels), router_width=router_width,
            router_levels=router_levels, anchor_width=anchor_width, anchor_hidden=anchor_hidden,
            strides=[list(s) for s in strides3], upsample_init=upsample_init, spb_zero_init=spb_zero_init,
            film_identity_init=film_identity_init, encoder_norm=encoder_norm,
            router_downsample=router_downsample, deep_supervision=deep_supervision,
        )
        self.strides = strides3
        self.size_divisor = size_divisors(self.config)
        anchor_dim = 3 * num_anchors if use_anchors else None

        self.stem = PatchEmbeddingStem(in_channels, stem_channels, conv, stride=strides3[0])
        self.anchor_detector = (
            GlobalAnchorDetector(in_channels, num_anchors, anchor_width, anchor_hidden) if use_anchors else None
        )
        self.lspm = LocalStructuralPriorModule(stem_channels) if use_lspm else None
        self.encoder = Encoder(stem_channels, encoder_channels, anchor_dim, conv, pool_strides=strides3[1:],
                               project_norm=encoder_norm, film_identity_init=film_identity_init)

        decoder_channels = encoder_channels[::-1]  # (64, 32, 16, 8)
        self.router_levels = router_levels if use_skip_router else 0
        self.skip_router = (MultiScaleSkipRouter(encoder_channels, router_width, router_downsample)
                            if self.router_levels else None)
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
        # Decoder stage j undoes the encoder's (n-1-j)-th downsampling: the last pooling first, the stem last.
        self.up_strides = strides3[::-1]
        self.decoder = nn.ModuleList(
            DecoderStage(widths[j], widths[j + 1], num_anchors if use_anchors else None, conv,
                         stride=self.up_strides[j], upsample_init=upsample_init, spb_zero_init=spb_zero_init)
            for j in range(n)
        )
        self.head = conv1x1(decoder_channels[-1], num_classes)
        # Deep supervision (nnU-Net style, not in the paper): heads on stages n-2, n-3, ... (finest first).
        self.aux_heads = nn.ModuleList(
            conv1x1(decoder_channels[n - 2 - k], num_classes) for k in range(deep_supervision)
        )

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless x is B x in_channels x D x H x W with sizes the strides divide."""
        if x.dim() != 5:
            raise ValueError(f"expected a 5-D input B x C x D x H x W, got shape {tuple(x.shape)}")
        if x.shape[1] != self.config["in_channels"]:
            raise ValueError(f"model expects {self.config['in_channels']} input channels, got {x.shape[1]}")
        bad = [s for s, m in zip(x.shape[2:], self.size_divisor) if s % m or s == 0]
        if bad:
            raise ValueError(
                f"spatial size {tuple(x.shape[2:])} (d, h, w) is not supported: each dimension must be a positive "
                f"multiple of {self.size_divisor} for strides {[list(s) for s in self.strides]} "
                "(pad the volume, as the predictor does)"
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
        stage_outputs: list[torch.Tensor] = []
        n = len(self.decoder)
        for j, stage in enumerate(self.decoder):
            size = [s * f for s, f in zip(x_dec.shape[2:], self.up_strides[j])]
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
            stage_outputs.append(x_dec)
        logits = self.head(x_dec)
        if self.training and len(self.aux_heads):
            aux = [head(stage_outputs[n - 2 - k]) for k, head in enumerate(self.aux_heads)]
            return [logits, *aux]
        if not return_intermediates:
            return logits
        extras.update(router_weights=router_weights, decoder_path_weights=path_weights)
        return logits, extras
