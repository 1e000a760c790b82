"""LightMedSeg (paper Section 3): stem -> anchors + LSPM -> FiLM encoder -> skip router -> adaptive decoder -> head.

The fast path (``lightmedseg/fast/graph.py``) is a hand-written second implementation of this forward that
reads the same parameters; it is what training (``train.fast``) and torch inference run. It is the oracle
that must change with the model: a new constructor option or a changed forward here needs the same change
there, or an entry in ``lightmedseg.fast.supports`` (which then sends the model down this reference path),
and tests/test_fast_contract.py, test_fast_equivalence.py, test_fast_training.py and test_model_options.py
must pass.
"""

from __future__ import annotations

import inspect
import re
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from lightmedseg.io_utils import json_plain
from lightmedseg.model.anchors import GlobalAnchorDetector
from lightmedseg.model.blocks import ConvKind, KernelLike, Stride3, StrideLike, as_stride3, level_kernels
from lightmedseg.model.decoder import Decoder, SkipAdapter, size_divisor
from lightmedseg.model.encoder import Encoder
from lightmedseg.model.lspm import LocalStructuralPriorModule
from lightmedseg.model.skip_router import MultiScaleSkipRouter
from lightmedseg.model.stem import PatchEmbeddingStem

__all__ = ["LightMedSeg", "SkipAdapter", "PAPER_STRIDE", "PAPER_SIZE_DIVISOR", "stage_strides", "level_kernels",
           "size_divisors"]

PAPER_STRIDE = 2  # "stride 2 halves all spatial dimensions" (Section 3.1), also each pooling
DEFAULT_ENCODER_CHANNELS = (8, 16, 32, 64)


def stage_strides(strides: Sequence[StrideLike] | None, num_stages: int) -> list[Stride3]:
    """Per-stage (d, h, w) strides: the stem's, then each pooling's; ``None`` is the paper's 2 everywhere."""
    values = [as_stride3(s) for s in (strides if strides is not None else [PAPER_STRIDE] * num_stages)]
    if len(values) != num_stages:
        raise ValueError(f"strides: need {num_stages} entries (the stem and {num_stages - 1} poolings), got {len(values)}")
    return values


DEFAULT_ARCHITECTURE = "lightmedseg"  # model.architecture when a config names none (else a MONAI baseline)


def size_divisors(model_config: Mapping[str, Any]) -> tuple[int, int, int]:
    """What each spatial size (d, h, w) must be a multiple of for the network in ``model_config``.

    The product of the stem's and the poolings' strides per axis (:func:`~lightmedseg.model.decoder.size_divisor`,
    the same rule as ``LightMedSeg.size_divisor``): (16, 16, 16) for the paper's network, (4, 16, 16) for the
    anisotropic ACDC plan. The UNet baseline downsamples with the same ``strides``; the other baselines
    use the paper's divisor.
    """
    if model_config.get("architecture", DEFAULT_ARCHITECTURE) not in (DEFAULT_ARCHITECTURE, "unet"):
        return PAPER_SIZE_DIVISOR
    n = len(model_config.get("encoder_channels", DEFAULT_ENCODER_CHANNELS))
    return size_divisor(stage_strides(model_config.get("strides"), n))


PAPER_SIZE_DIVISOR = size_divisors({})  # (16, 16, 16): stride-2 stem and three 2x poolings

# Checkpoint names. The parameters after the encoder were LightMedSeg attributes before the Decoder module
# existed; state_dict() still writes those names and load_state_dict() accepts both, so every model file
# (shipped or in a run folder) stays readable by this and by older versions. (module path, checkpoint name)
_CHECKPOINT_NAMES = (
    ("decoder.skip_adapters.", "skip_adapters."),
    ("decoder.bottleneck.", "bottleneck."),
    ("decoder.stages.", "decoder."),
    ("decoder.head.", "head."),
    ("decoder.aux_heads.", "aux_heads."),
    ("decoder.final_up.", "final_up."),  # new with final_transposed_conv; named like the head it follows
)
_LEGACY_STAGE = re.compile(r"decoder\.(\d)")


def _rename_keys(state: dict, prefix: str, rename) -> None:
    """Rename the keys under ``prefix`` in place, keeping the order of all keys."""
    items = list(state.items())
    state.clear()
    for key, value in items:
        if key.startswith(prefix):
            key = prefix + rename(key[len(prefix):])
        state[key] = value


def _to_checkpoint_name(name: str) -> str:
    for module_path, checkpoint_name in _CHECKPOINT_NAMES:
        if name.startswith(module_path):
            return checkpoint_name + name[len(module_path):]
    return name


def _from_checkpoint_name(name: str) -> str:
    if _LEGACY_STAGE.match(name):
        return "decoder.stages." + name[len("decoder."):]
    for module_path, checkpoint_name in _CHECKPOINT_NAMES:
        if checkpoint_name != "decoder." and name.startswith(checkpoint_name):
            return module_path + name[len(checkpoint_name):]
    return name


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
        final_transposed_conv: the other reading of Section 3.6 (docs/architecture.md, reading 1): the last
            decoder stage stays at the stem's resolution (D/2; a 1x1x1 conv instead of its upsampling, F_0
            as its skip unresampled), the 1x1x1 head maps it to N_cls and a final ConvTranspose3d with kernel
            = stride = the stem's stride restores the input resolution. False (default): the last stage
            upsamples to the input resolution and the head is a 1x1x1 conv only.
        kernel_sizes: the (d, h, w) kernel that replaces 3^3 on each resolution level: the input's grid (the
            stem's conv and a full-resolution last decoder stage), then each encoder stage's level (its
            encoder stage and the decoder stage whose output is there; level 0 also holds the LSPM, whose
            5^3 depthwise conv becomes the widened kernel, 1 x 5 x 5 for 1 x 3 x 3). ``None`` = 3^3 everywhere
            (paper). nnU-Net's rule for thick slices: in-plane kernels (1, 3, 3) until the in-plane spacing
            comes within 2x of the slice spacing, e.g. ``[[1,3,3],[1,3,3],[3,3,3],[3,3,3],[3,3,3]]`` for ACDC.
        dense_local_convs: the depthwise 3^3 convs of the encoder's detail path (Eq. 7) and the decoder's local
            path (Eq. 19) become dense Conv3Ds. With ``conv="standard"`` this is the reading of the paper's
            "Standard Conv" variant whose count is its 0.66M (659,114 with 4 input channels; the
            ``standard_paper`` variant); False (default): depthwise, as Sections 3.4 and 3.6 write them.

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
        final_transposed_conv: bool = False,
        kernel_sizes: Sequence[KernelLike] | None = None,
        dense_local_convs: bool = False,
    ) -> None:
        super().__init__()
        if in_channels < 1 or num_classes < 2:
            raise ValueError(f"need in_channels >= 1 and num_classes >= 2, got {in_channels} and {num_classes}")
        # Every constructor argument is kept as an attribute of its own name (`config` reads them back),
        # the two sequences in their normal form: a tuple of widths, a (d, h, w) stride per stage.
        for name, value in dict(locals()).items():
            if name in _constructor_names(type(self)):
                setattr(self, name, value)
        self.encoder_channels = tuple(int(c) for c in encoder_channels)
        self.strides = stage_strides(strides, len(self.encoder_channels))
        kernels = level_kernels(kernel_sizes, len(self.encoder_channels))
        self.kernel_sizes = kernels if kernel_sizes is not None else None  # None stays None: old configs unchanged

        self.stem = PatchEmbeddingStem(in_channels, stem_channels, conv, stride=self.strides[0], kernel=kernels[0],
                                       out_kernel=kernels[1])
        self.anchor_detector = (
            GlobalAnchorDetector(in_channels, num_anchors, anchor_width, anchor_hidden) if use_anchors else None
        )
        self.lspm = LocalStructuralPriorModule(stem_channels, kernels[1]) if use_lspm else None
        anchor_dim = 3 * num_anchors if use_anchors else None
        self.encoder = Encoder(stem_channels, self.encoder_channels, anchor_dim, conv, pool_strides=self.strides[1:],
                               project_norm=encoder_norm, film_identity_init=film_identity_init, kernels=kernels[1:],
                               dense_local_convs=dense_local_convs)
        levels = router_levels if use_skip_router else 0
        self.skip_router = (MultiScaleSkipRouter(self.encoder_channels, router_width, router_downsample)
                            if levels else None)
        self.decoder = Decoder(self.encoder, stem_channels, self.strides[0], num_classes,
                               num_anchors if use_anchors else None, conv, router_width, levels,
                               upsample_init, spb_zero_init, deep_supervision, final_transposed_conv, kernels,
                               dense_local_convs)
        _register_state_dict_hooks(self)

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments (JSON-ready): ``LightMedSeg(**model.config)`` builds the same network.

        Read from the constructor's signature, so a new option appears here (and in checkpoints) by being a
        parameter of ``__init__`` stored under its own name.
        """
        return {name: json_plain(getattr(self, name)) for name in _constructor_names(type(self))}

    @property
    def size_divisor(self) -> Stride3:
        """What each spatial size (d, h, w) must be a multiple of (16, 16, 16 for the paper's network)."""
        return self.decoder.size_divisor

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless x is B x in_channels x D x H x W with sizes the strides divide."""
        if x.dim() != 5:
            raise ValueError(f"expected a 5-D input B x C x D x H x W, got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"model expects {self.in_channels} input channels, got {x.shape[1]}")
        bad = [s for s, m in zip(x.shape[2:], self.size_divisor) if s % m or s == 0]
        if bad:
            raise ValueError(
                f"spatial size {tuple(x.shape[2:])} (d, h, w) is not supported: each dimension must be a positive "
                f"multiple of {self.size_divisor} for strides {[list(s) for s in self.strides]} "
                "(pad the volume, as the predictor does)"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The logits, B x N_cls x D x H x W.

        One exception, for training: in training mode with ``deep_supervision > 0`` it returns the list
        ``[logits, aux_1, ...]`` (finest to coarsest) that the deep-supervision loss takes, nnU-Net style.
        It is ``forward`` (not a separate method) because DDP only synchronises gradients of what runs
        through the wrapped module's ``__call__``. In eval mode, or without deep supervision, it is always
        one tensor. Anchors, texture map and routing weights: :meth:`forward_with_intermediates`.
        """
        outputs, _ = self._run(x)
        return outputs if len(outputs) > 1 else outputs[0]

    def forward_with_intermediates(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        """``(logits, intermediates)``: the logits of :meth:`forward` (the full-resolution ones) and a dict with
        ``anchors`` (B x K x 3 or None), ``texture`` (T, B x 1 x ... or None), ``complexity`` (G),
        ``lspm_weights`` (the mixer's alpha), ``router_weights`` (per router stage) and
        ``decoder_path_weights`` (pi per decoder stage)."""
        outputs, extras = self._run(x)
        return outputs[0], extras

    def _run(self, x: torch.Tensor) -> tuple[list[torch.Tensor], dict[str, Any]]:
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
        routed, router_weights = [], []
        if self.skip_router is not None:
            for size in self.decoder.router_sizes(skips[-1].shape[2:]):
                fused, weights = self.skip_router(skips, size)
                routed.append(fused)
                router_weights.append(weights)
        outputs, path_weights = self.decoder(skips, f0, anchors, routed)
        extras.update(router_weights=router_weights, decoder_path_weights=path_weights)
        return outputs, extras


def _constructor_names(cls: type) -> list[str]:
    """The parameter names of ``cls.__init__``, in order, without ``self``."""
    return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]


def _save_with_checkpoint_names(module, state_dict, prefix, local_metadata) -> None:
    _rename_keys(state_dict, prefix, _to_checkpoint_name)


def _load_either_name(module, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs) -> None:
    _rename_keys(state_dict, prefix, _from_checkpoint_name)


def _register_state_dict_hooks(model: nn.Module) -> None:
    """state_dict() writes the checkpoint names of :data:`_CHECKPOINT_NAMES`; load_state_dict() reads both forms.

    Module-level hooks, so that the model still pickles (``torch.save(model)``, multiprocessing).
    """
    # public names since torch 2.5; the private ones (same hook signatures) before
    register_save = getattr(model, "register_state_dict_post_hook", None) or model._register_state_dict_hook
    register_save(_save_with_checkpoint_names)
    if hasattr(model, "register_load_state_dict_pre_hook"):
        model.register_load_state_dict_pre_hook(_load_either_name)
    else:
        model._register_load_state_dict_pre_hook(_load_either_name, with_module=True)
