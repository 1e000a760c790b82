"""Adaptive decoder (Section 3.6, Eqs. 14-21): position-biased upsampling, skip fusion, 3-path gating, SE.

:class:`Decoder` is the whole path from the encoder's skips to the logits: it mirrors the
:class:`~lightmedseg.model.encoder.Encoder` (widths, strides), selects each stage's skip source, and owns
the skip adapters, the bottleneck, the stages and the heads. It also defines the size divisor every other
module uses (:func:`size_divisor`).

``lightmedseg/fast/graph.py`` re-implements this forward by hand from the same parameters (the fast
training and torch-inference path). It is the oracle that must change with this module: a change here
needs the same change there, an entry in ``fast.supports`` when the rewrite cannot follow, and the
equivalence tests (tests/test_fast_equivalence.py, test_fast_training.py, test_fast_contract.py) passing.
"""

from __future__ import annotations

import math
from typing import Sequence, Union

import torch
from torch import nn

from lightmedseg.model.blocks import (
    PAPER_KERNEL,
    ConvKind,
    ConvNormAct,
    KernelLike,
    SqueezeExcite3d,
    Stride3,
    StrideLike,
    as_stride3,
    conv1x1,
    level_kernels,
    local_conv3,
    make_conv3,
)
from lightmedseg.model.skip_router import resample

ROUTER, STEM = "router", "stem"
SkipSource = Union[int, str]  # ROUTER, STEM, or the index of an encoder stage


def size_divisor(strides: Sequence[StrideLike]) -> Stride3:
    """What each spatial size (d, h, w) must be a multiple of: the per-axis product of the downsampling strides.

    The one definition behind :attr:`Decoder.size_divisor`, :func:`lightmedseg.model.network.size_divisors`
    and every padding rule downstream (predictor, figures, demo, export).
    """
    values = [as_stride3(s) for s in strides]
    return tuple(math.prod(s[a] for s in values) for a in range(3))  # type: ignore[return-value]


def anchor_offset_maps(anchors: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """P_{j,k}[d,h,w] = (d/D - s_kd) + (h/H - s_kh) + (w/W - s_kw), stacked to B x K x D x H x W (Eq. 14).

    Built axis by axis from three 1-D arrays and summed by broadcasting, as the paper describes.
    """
    b, k, _ = anchors.shape
    axes = []
    for axis, n in enumerate(size):
        ramp = torch.arange(n, device=anchors.device, dtype=anchors.dtype) / n
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = n
        axes.append(ramp.view(shape) - anchors[:, :, axis].view(b, k, 1, 1, 1))
    return axes[0] + axes[1] + axes[2]


class SpatialPositionBias(nn.Module):
    """SPB_j = Conv1x1(stack_k P_{j,k}; K -> C_j) (Eq. 15). Reference form; see fast path for the closed form.

    ``zero_init`` starts the projection at zero: the bias is learned from nothing instead of starting
    3-12x larger than the upsampled features it is added to (docs/architecture.md, "Initialisation").
    """

    def __init__(self, num_anchors: int, channels: int, zero_init: bool = False) -> None:
        super().__init__()
        self.proj = conv1x1(num_anchors, channels)
        if zero_init:
            nn.init.zeros_(self.proj.weight)
            nn.init.zeros_(self.proj.bias)

    def forward(self, anchors: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        return self.proj(anchor_offset_maps(anchors, size))


def _transposed_conv(in_channels: int, out_channels: int, stride: Stride3, init: str) -> nn.ConvTranspose3d:
    """ConvTranspose3d with kernel = stride (per axis; stride 1 is a 1x1x1 conv), initialised as ``init`` says:
    "torch" (PyTorch's default) or "fan_in" (N(0, 1/C_in), zero bias: kernel = stride, so every output voxel
    sees exactly one input voxel per input channel)."""
    up = nn.ConvTranspose3d(in_channels, out_channels, stride, stride)
    if init == "fan_in":
        nn.init.normal_(up.weight, std=in_channels ** -0.5)
        nn.init.zeros_(up.bias)
    elif init != "torch":
        raise ValueError(f"upsample_init must be 'torch' or 'fan_in', got {init!r}")
    return up


class DecoderStage(nn.Module):
    """One decoder stage j.

    ``U = ConvT_{2,2}(x)``; ``D_in = Conv1x1([U + SPB, SKIP])`` (Eq. 16);
    ``pi = softmax(Conv1x1(D_in; C -> 3))`` (Eq. 17); ``D_gated = sum_p pi_p F_p(D_in)`` (Eqs. 18-21); SE.

    Args:
        stride: the upsampling factor, kernel = stride (2 in the paper; per axis, e.g. (1, 2, 2), to
            mirror an anisotropic encoder; (1, 1, 1) makes ``up`` a 1x1x1 conv, for a stage that stays put).
        upsample_init: "torch" (PyTorch's default, whose fan-in for ConvTranspose3d is C_out * k^3, so
            every upsampling shrinks the signal) or "fan_in" (N(0, 1/C_in) at the true fan-in, zero bias).
        spb_zero_init: start the spatial position bias at zero.
        kernel: the kernel of the 3^3 convs of the local and context paths (Eqs. 19-20), at the stage's
            output resolution (``model.kernel_sizes``).
        dense_local_convs: the local path's conv (Eq. 19) dense instead of depthwise (``local_conv3``).
    """

    num_paths = 3

    def __init__(self, in_channels: int, out_channels: int, num_anchors: int | None, conv: ConvKind = "ghost",
                 stride: StrideLike = 2, upsample_init: str = "torch", spb_zero_init: bool = False,
                 kernel: KernelLike = PAPER_KERNEL, dense_local_convs: bool = False) -> None:
        super().__init__()
        self.stride = as_stride3(stride)
        self.up = _transposed_conv(in_channels, out_channels, self.stride, upsample_init)
        self.spb = SpatialPositionBias(num_anchors, out_channels, spb_zero_init) if num_anchors else None
        self.fuse = conv1x1(2 * out_channels, out_channels)  # Eq. 16
        self.gate = conv1x1(out_channels, self.num_paths)  # Eq. 17
        self.path_local = ConvNormAct(local_conv3(out_channels, dense_local_convs, kernel), out_channels)  # Eq. 19
        self.path_context = ConvNormAct(make_conv3(out_channels, out_channels, kind=conv, kernel=kernel),
                                        out_channels)  # Eq. 20
        self.path_channel = ConvNormAct(conv1x1(out_channels, out_channels, bias=False), out_channels)  # Eq. 21
        self.se = SqueezeExcite3d(out_channels)

    def forward(
        self, x: torch.Tensor, skip: torch.Tensor, anchors: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        u = self.up(x)
        if self.spb is not None:
            u = u + self.spb(anchors, u.shape[2:])
        d_in = self.fuse(torch.cat([u, skip], dim=1))
        pi = torch.softmax(self.gate(d_in), dim=1)
        gated = (
            pi[:, 0:1] * self.path_local(d_in)
            + pi[:, 1:2] * self.path_context(d_in)
            + pi[:, 2:3] * self.path_channel(d_in)
        )  # Eq. 18
        return self.se(gated), pi


class SkipAdapter(nn.Module):
    """Brings one skip source to decoder stage j: ``resample(Conv1x1(source; C_src -> C_j))``.

    For the router levels the source is the fused 64-channel SKIP_j (the paper's final 64 -> C_j
    projection); otherwise it is the spatially corresponding encoder map, or the stem output for the
    last stage, projected and trilinearly upsampled to the input resolution as Section 3.5 describes (used
    at its own resolution when that stage stays at the stem's, ``final_transposed_conv``).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.proj = conv1x1(in_channels, out_channels)

    def forward(self, source: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        return resample(self.proj(source), size)


class Decoder(nn.Module):
    """Bottleneck -> n decoder stages -> 1x1 head, mirroring ``encoder`` (Sections 3.5-3.6).

    Stage j undoes the encoder's (n-1-j)-th downsampling (the last pooling first, the stem last) with the
    encoder's widths in reverse. Its skip source (:attr:`skip_sources`) is the router's fused map for the
    first ``router_levels`` stages, else the same-scale encoder stage n-2-j, and the stem output F_0 for
    the last stage; a :class:`SkipAdapter` brings it to the stage's width and size.

    With ``final_transposed_conv`` (the other reading of Section 3.6, docs/architecture.md reading 1) the last
    stage does not undo the stem's stride: it stays at the stem's resolution (its "upsampling" is a 1x1x1
    transposed conv, i.e. a 1x1x1 conv, and F_0 is its skip as it is), and after the 1x1 head a transposed conv
    with kernel = stride = the stem's stride (:attr:`final_up`) restores the input resolution.

    Args:
        encoder: the encoder it mirrors (its ``channels`` and ``pool_strides`` are read).
        stem_channels, stem_stride: width of F_0 and the stem's stride (undone by the last stage).
        num_classes: output classes of the head.
        num_anchors: K for the spatial position bias; ``None`` without anchors.
        conv, upsample_init, spb_zero_init: see :class:`DecoderStage`.
        router_width, router_levels: channels of the router's fused map and how many stages use it
            (0: no router, every stage takes its same-scale encoder map).
        deep_supervision: coarser stages with a training-only 1x1 head (stages n-2, n-3, ...).
        final_transposed_conv: last stage at the stem's resolution, then head and a final transposed conv
            (see above); False: the last stage upsamples to the input resolution and the head is a 1x1 only.
        kernel_sizes: the 3^3 kernel of each resolution level, the input's grid first, then the encoder
            stages' (n + 1 entries; ``None``: 3^3 everywhere; :func:`~lightmedseg.model.blocks.level_kernels`).
            Each stage takes its output level's kernel.
        dense_local_convs: see :class:`DecoderStage`.

    The parameters after the encoder were attributes of ``LightMedSeg`` before this class existed; their
    checkpoint names are kept (see ``LightMedSeg``'s state-dict hooks).
    """

    def __init__(
        self,
        encoder: nn.Module,
        stem_channels: int,
        stem_stride: StrideLike,
        num_classes: int,
        num_anchors: int | None,
        conv: ConvKind = "ghost",
        router_width: int = 64,
        router_levels: int = 2,
        upsample_init: str = "torch",
        spb_zero_init: bool = False,
        deep_supervision: int = 0,
        final_transposed_conv: bool = False,
        kernel_sizes: Sequence[KernelLike] | None = None,
        dense_local_convs: bool = False,
    ) -> None:
        super().__init__()
        encoder_channels = tuple(encoder.channels)
        n = len(encoder_channels)
        kernels = level_kernels(kernel_sizes, n)
        if not 0 <= deep_supervision < n:
            raise ValueError(f"deep_supervision must be in [0, {n - 1}], got {deep_supervision}")
        self.widths = encoder_channels[::-1]  # (64, 32, 16, 8)
        undone: list[Stride3] = [as_stride3(stem_stride), *encoder.pool_strides][::-1]  # the last one: the stem's
        self.size_divisor = size_divisor(undone)
        # What stage j upsamples by, and what the final transposed conv after the head does (None: no such conv).
        self.final_stride: Stride3 | None = undone[-1] if final_transposed_conv else None
        self.strides: list[Stride3] = undone[:-1] + [(1, 1, 1)] if final_transposed_conv else undone
        self.router_levels = router_levels
        self.skip_sources: list[SkipSource] = [
            ROUTER if j < router_levels else (n - 2 - j if j < n - 1 else STEM) for j in range(n)
        ]
        source_width = {ROUTER: router_width, STEM: stem_channels, **dict(enumerate(encoder_channels))}
        # Registration order = the order of model.parameters() (optimiser state in checkpoints relies on it).
        self.skip_adapters = nn.ModuleList(
            SkipAdapter(source_width[src], self.widths[j]) for j, src in enumerate(self.skip_sources)
        )
        self.bottleneck = conv1x1(encoder_channels[-1], encoder_channels[-1])
        widths = (encoder_channels[-1], *self.widths)
        # Stage j's output is on encoder level n-2-j (kernels[n-1-j]); the last stage's on the input grid
        # (kernels[0]), or on F_0's (kernels[1]) when it stays at the stem's resolution.
        stage_kernels = [kernels[n - 1 - j] for j in range(n - 1)]
        stage_kernels.append(kernels[1] if final_transposed_conv else kernels[0])
        self.stages = nn.ModuleList(
            DecoderStage(widths[j], widths[j + 1], num_anchors, conv, stride=self.strides[j],
                         upsample_init=upsample_init, spb_zero_init=spb_zero_init, kernel=stage_kernels[j],
                         dense_local_convs=dense_local_convs)
            for j in range(n)
        )
        self.head = conv1x1(self.widths[-1], num_classes)
        self.final_up = (_transposed_conv(num_classes, num_classes, self.final_stride, upsample_init)
                         if self.final_stride is not None else None)
        # Deep supervision (nnU-Net style, not in the paper): heads on stages n-2, n-3, ... (finest first).
        self.aux_stages = [n - 2 - k for k in range(deep_supervision)]
        self.aux_heads = nn.ModuleList(conv1x1(self.widths[s], num_classes) for s in self.aux_stages)

    def stage_size(self, j: int, bottleneck_size: Sequence[int]) -> list[int]:
        """Spatial size of stage j's output for a bottleneck (deepest encoder map) of ``bottleneck_size``."""
        size = list(bottleneck_size)
        for stride in self.strides[: j + 1]:
            size = [s * f for s, f in zip(size, stride)]
        return size

    def router_sizes(self, bottleneck_size: Sequence[int]) -> list[list[int]]:
        """The sizes at which the stages fed by the skip router need its fused map, in stage order."""
        return [self.stage_size(j, bottleneck_size) for j, src in enumerate(self.skip_sources) if src == ROUTER]

    def select_skip(self, j: int, skips: Sequence[torch.Tensor], f0: torch.Tensor,
                    routed: Sequence[torch.Tensor] = ()) -> torch.Tensor:
        """Stage j's skip source: the router's fused map, an encoder map or the stem output."""
        source = self.skip_sources[j]
        if source == ROUTER:
            return routed[j]  # the router stages come first
        return f0 if source == STEM else skips[source]

    def forward(
        self, skips: Sequence[torch.Tensor], f0: torch.Tensor, anchors: torch.Tensor | None,
        routed: Sequence[torch.Tensor] = (),
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``([logits, aux_1, ...], path_weights)``; the aux logits only in training mode with deep supervision.

        ``routed``: the skip router's fused maps at :meth:`router_sizes` (the router is a module of its own,
        Section 3.5, called by the network); ``path_weights``: each stage's pi (Eq. 17).
        """
        x = self.bottleneck(skips[-1])
        path_weights, stage_outputs = [], []
        for j, stage in enumerate(self.stages):
            size = [s * f for s, f in zip(x.shape[2:], self.strides[j])]
            skip = self.skip_adapters[j](self.select_skip(j, skips, f0, routed), size)
            x, pi = stage(x, skip, anchors)
            path_weights.append(pi)
            stage_outputs.append(x)
        logits = self.head(x)
        outputs = [self.final_up(logits) if self.final_up is not None else logits]
        if self.training:
            outputs += [head(stage_outputs[s]) for s, head in zip(self.aux_stages, self.aux_heads)]
        return outputs, path_weights
