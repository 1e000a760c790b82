"""The fast LightMedSeg forward: the reference maths, re-associated so fewer full-size tensors exist.

``fast_logits(model, x)`` reads the parameters of a reference :class:`LightMedSeg` and computes the
same logits. The exact rewrites (all linear algebra, no approximation beyond float rounding):

* Eqs. 14-16: ``Conv1x1([ConvT(x) + SPB, SKIP])`` becomes ``ConvT'(x_aug) + W_s SKIP``: ConvT' is the
  transposed conv composed with the fusion's first half, and the position bias (closed form of
  :func:`folding.position_bias_terms`, no K x D x H x W stack) plus every bias ride in it as two
  extra input channels (see :func:`_upsample_fused`); no concatenation at full size.
* Skip adapters: the adapter 1x1 and the fusion's skip half are one 1x1, applied on the coarse grid
  before trilinear upsampling (1x1 convs commute with interpolation, whose weights sum to one).
* Router (Eqs. 11-13): ``Conv1x1(cat(aligned))`` is a sum of per-stage 1x1s; the fused 64-wide skip is
  only ever seen through the adapter and fusion 1x1s, so it is formed directly at the decoder width;
  finer sources are downsampled before projecting, coarser ones projected before upsampling.
* SE scales are folded into the next transposed conv / the head (batch of one); the mixer's softmax
  over two experts is a sigmoid of the logit difference; at inference the ghost conv's halves are
  normalised separately (GN groups never straddle them) instead of being concatenated.
* Channels-last 3D throughout, gradients included (:class:`_ChannelsLastGrad`).

Where nothing is gained the reference submodules are called unchanged. ``inplace=True`` (inference
only) lets elementwise chains reuse buffers.
"""

from __future__ import annotations

import contextvars
from typing import Any, Callable, NamedTuple, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from lightmedseg.fast.autograd import depthwise_conv3d, group_norm_act, router_mix, squeeze_excite
from lightmedseg.fast.folding import (
    axis_ramps,
    compose_pointwise,
    compose_transpose,
    pointwise_matrix,
    position_bias_terms,
)
from lightmedseg.model.blocks import GhostConv3d, SqueezeExcite3d
from lightmedseg.model.decoder import ROUTER
from lightmedseg.model.skip_router import is_finer, resample


# -- the contract with lightmedseg.model ----------------------------------------------------------------------
# Every LightMedSeg constructor option, and the values of it this rewrite computes exactly (None: any value
# the constructor accepts; init-only options never change the forward). A new option, or a new value of one,
# is refused by `supports` until it is implemented here and added, with a case in tests/test_fast_contract.py.
HANDLED_OPTIONS: dict[str, Callable[[Any], bool] | None] = {
    "in_channels": None, "num_classes": None, "num_anchors": None, "stem_channels": None,
    "encoder_channels": None, "router_width": None, "router_levels": None, "anchor_width": None,
    "anchor_hidden": None, "strides": None, "deep_supervision": None,
    "use_lspm": None, "use_anchors": None, "use_skip_router": None, "encoder_norm": None,
    "conv": lambda v: v in ("ghost", "standard"),
    "router_downsample": lambda v: v in ("interpolate", "pool"),
    "upsample_init": None, "spb_zero_init": None, "film_identity_init": None,  # initialisation only
    "final_transposed_conv": None,
    "kernel_sizes": None,  # read from each conv module (kernel, padding), like every conv here
    "dense_local_convs": None,  # likewise: groups are read from the conv module
}


class Support(NamedTuple):
    """``ok, reason = supports(model)``: whether :func:`fast_logits` computes ``model``'s forward, and if not why."""

    ok: bool
    reason: str


def supports(model: nn.Module) -> Support:
    """Check ``model`` against what this rewrite handles (:data:`HANDLED_OPTIONS`).

    Callers (the trainer with ``train.fast``, the torch inference backend) run the reference forward
    when this says no, and log the reason once.
    """
    from lightmedseg.model.network import LightMedSeg

    if type(model) is not LightMedSeg:  # a MONAI baseline, or a subclass whose forward may differ
        return Support(False, f"the fast path rewrites LightMedSeg only, not {type(model).__name__}")
    config = model.config
    unknown = sorted(set(config) - set(HANDLED_OPTIONS))
    if unknown:
        return Support(False, f"option(s) {unknown} are not handled by lightmedseg/fast/graph.py")
    for name, accepts in HANDLED_OPTIONS.items():
        if accepts is not None and not accepts(config[name]):
            return Support(False, f"{name}={config[name]!r} is not handled by lightmedseg/fast/graph.py")
    return Support(True, "")


def _bias(conv: nn.Module) -> torch.Tensor:
    """A conv's bias, or zeros when it has none (convs feeding a group norm carry no bias)."""
    if conv.bias is not None:
        return conv.bias
    return conv.weight.new_zeros(conv.weight.shape[1] if isinstance(conv, nn.ConvTranspose3d) else conv.weight.shape[0])


class _ChannelsLastGrad(torch.autograd.Function):
    """Identity whose backward hands on the gradient in channels-last layout.

    Channel slices (ghost concatenation, shared 1x1 convs) and some norm backwards produce gradients
    that are not channels-last-dense; oneDNN then converts or falls back to a much slower kernel for
    the conv backward (up to 10x measured for the depthwise convs). Torch has no layout hint for
    gradients, hence this hand-written identity.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return grad.contiguous(memory_format=torch.channels_last_3d)


def _cl_grad(y: torch.Tensor) -> torch.Tensor:
    """``y``, with a channels-last gradient when the call runs channels-last (a layout concern only: the
    contiguous form, which graph engines trace, has no custom autograd node in it)."""
    if (_CHANNELS_LAST.get() and y.requires_grad and y.dim() == 5
            and y.is_contiguous(memory_format=torch.channels_last_3d)):
        return _ChannelsLastGrad.apply(y)
    return y


# Set by fast_logits for the duration of one call: every conv then takes its input in the channels-last layout.
# Average pooling, channel slices and sums whose first operand is contiguous hand back contiguous tensors, and
# the layout then stays contiguous downstream; a contiguous input sends oneDNN's depthwise/pointwise kernels
# (and, worse, their backward) down a path about 2x slower (benchmarks/bench_depthwise_layout.py). ACDC training
# step, benchmarks/bench_train_step.py on the idle machine: 3.17 s before this conversion, 2.67 s with it.
_CHANNELS_LAST: contextvars.ContextVar[bool] = contextvars.ContextVar("lightmedseg_fast_channels_last", default=False)


# Set by fast_logits for one call: how group norms are computed. "fused" is torch's one-kernel F.group_norm (eager
# training and inference); "reduce" writes GN_g as per-channel reductions and a per-channel affine (see
# _group_norm), the form graph engines are given (InferenceGraph): OpenVINO decomposes F.group_norm into
# Reshape -> MVN -> Reshape, which forces a layout conversion (Reorder) before and after every norm.
NORM_FORMS = ("fused", "reduce")
_NORM_FORM: contextvars.ContextVar[str] = contextvars.ContextVar("lightmedseg_fast_norm_form", default="fused")


# Set by fast_logits for one call: whether training (autograd) runs the depthwise convs and group norms through
# lightmedseg.fast.autograd's hand-written backwards (issue 25; docs/performance.md has the measured ratios).
_TRAIN_KERNELS: contextvars.ContextVar[bool] = contextvars.ContextVar("lightmedseg_fast_train_kernels", default=True)


def _use_train_kernels(x: torch.Tensor) -> bool:
    return _TRAIN_KERNELS.get() and torch.is_grad_enabled() and x.dim() == 5


# Set by fast_logits for one call: whether training runs the fused elementwise chains (router mixing, FiLM folded
# into the project norm, squeeze-excite, texture lerp, decoder gates in one buffer, router sources pinned
# channels-last; issue 25, docs/performance.md). False keeps the separate torch ops, for the benchmark's A/B.
_FUSED_CHAINS: contextvars.ContextVar[bool] = contextvars.ContextVar("lightmedseg_fast_fused_chains", default=True)


def _use_fused(x: torch.Tensor) -> bool:
    """True where a fused chain replaces torch's ops: training kernels on, fusion on, a channels-last 5-D input."""
    return (_FUSED_CHAINS.get() and _use_train_kernels(x) and _CHANNELS_LAST.get()
            and x.is_contiguous(memory_format=torch.channels_last_3d))


def _group_norm(x: torch.Tensor, num_groups: int, weight: torch.Tensor, bias: torch.Tensor, eps: float,
                silu: bool = False) -> torch.Tensor:
    """GN_g(x) (Section 3.1's GN_4), in the form :data:`_NORM_FORM` says.

    The "reduce" form keeps every full-size op elementwise or a reduction over the spatial axes: per-channel
    means, their group averages (a B x C x 1 x 1 x 1 tensor), then the same for the centred squares, and one
    per-channel scale and shift. Mathematically GN itself; float rounding differs (~1e-4 on logits).
    """
    if _NORM_FORM.get() == "fused" and _use_train_kernels(x) and x.is_contiguous(memory_format=torch.channels_last_3d):
        return group_norm_act(x, num_groups, weight, bias, eps, silu)
    if _NORM_FORM.get() == "fused":
        y = F.group_norm(x, num_groups, weight.to(x.dtype), bias.to(x.dtype), eps)
        return F.silu(y, inplace=not y.requires_grad) if silu else y
    b, c = x.shape[:2]

    def group_mean(t: torch.Tensor) -> torch.Tensor:  # B x C per-channel values -> each channel's group average
        return t.view(b, num_groups, c // num_groups).mean(-1, keepdim=True).expand(b, num_groups, c // num_groups).reshape(b, c)

    centred = x - group_mean(x.mean(dim=(2, 3, 4)))[:, :, None, None, None]
    scale = torch.rsqrt(group_mean((centred * centred).mean(dim=(2, 3, 4))) + eps) * weight.to(x.dtype)
    y = torch.addcmul(bias.to(x.dtype)[None, :, None, None, None], centred, scale[:, :, None, None, None])
    return F.silu(y) if silu else y


def _conv(x: torch.Tensor, conv: nn.Conv3d, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
    if _CHANNELS_LAST.get() and x.dim() == 5 and not x.is_contiguous(memory_format=torch.channels_last_3d):
        x = x.contiguous(memory_format=torch.channels_last_3d)
    w = conv.weight if weight is None else weight
    b = conv.bias if bias is None else bias
    b = None if b is None else b.to(x.dtype)
    return _cl_grad(_conv_op(x, w.to(x.dtype), b, conv.stride, conv.padding, conv.dilation, conv.groups))


def _conv_op(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, stride=(1, 1, 1), padding=(0, 0, 0),
             dilation=(1, 1, 1), groups: int = 1) -> torch.Tensor:
    """``F.conv3d``, routed (training only, :data:`_TRAIN_KERNELS`) to the faster equivalent where one was measured:

    * depthwise: :func:`lightmedseg.fast.autograd.depthwise_conv3d`;
    * 1x1x1, float32 outside autocast, channels-last: ``F.linear`` on the channels-last view, a plain GEMM
      forward and backward. Torch sends fp32 1x1x1 Conv3d to its im2col ``slow_conv3d``; fwd+bwd measured
      3.5-5x slower than the GEMM (8 -> 4 channels at 2 x 16 x 160 x 160: 137 vs 39 ms). In bf16 oneDNN's
      conv is the faster of the two, so it stays.
    """
    if _use_train_kernels(x):
        if (w.shape[2:] == (1, 1, 1) and groups == 1 and tuple(stride) == (1, 1, 1) and tuple(padding) == (0, 0, 0)
                and x.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")
                and x.is_contiguous(memory_format=torch.channels_last_3d)):
            return F.linear(x.permute(0, 2, 3, 4, 1), w.flatten(1), b).permute(0, 4, 1, 2, 3)
        return depthwise_conv3d(x, w, b, stride, padding, dilation, groups)
    return F.conv3d(x, w, b, stride, padding, dilation, groups)


def _conv3(x: torch.Tensor, conv: nn.Module) -> torch.Tensor:
    """A GhostConv3d or dense Conv3d, as in :func:`lightmedseg.model.blocks.make_conv3`."""
    if isinstance(conv, GhostConv3d):
        y = _conv(x, conv.primary)
        return torch.cat([y, _conv(y, conv.cheap)], dim=1)
    return _conv(x, conv)


def _norm_act(x: torch.Tensor, norm: nn.GroupNorm, inplace: bool) -> torch.Tensor:
    return _group_norm(x, norm.num_groups, norm.weight, norm.bias, norm.eps, silu=True)


def _conv_norm_act(x: torch.Tensor, block: nn.Sequential, inplace: bool) -> torch.Tensor:
    conv, norm = block.conv, block.norm
    y = _conv3(x, conv) if isinstance(conv, GhostConv3d) else _conv(x, conv)
    return _norm_act(y, norm, inplace)


def _se_scale(se: SqueezeExcite3d, x: torch.Tensor) -> torch.Tensor:
    """The B x C excitation of Eq. 10 (not yet applied)."""
    squeeze = x.mean(dim=(2, 3, 4), dtype=torch.float32)  # no full-size float copy of bf16 x
    return torch.sigmoid(F.linear(F.silu(F.linear(squeeze, se.w1.weight.float())), se.w2.weight.float()))


def _apply_se(se: SqueezeExcite3d, x: torch.Tensor, inplace: bool) -> torch.Tensor:
    """Eq. 10 applied: fused (:func:`lightmedseg.fast.autograd.squeeze_excite`) in training, else scale then multiply."""
    if _use_fused(x):
        return squeeze_excite(x, se.w1.weight, se.w2.weight)
    return _channel_scale(x, _se_scale(se, x), inplace)


def _channel_scale(x: torch.Tensor, scale: torch.Tensor, inplace: bool) -> torch.Tensor:
    s = scale.to(x.dtype)[:, :, None, None, None]
    return x.mul_(s) if inplace else x * s


def _project_resampled(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, size: Sequence[int],
                       downsample: str = "interpolate") -> torch.Tensor:
    """``resample(Conv1x1(x))`` in the cheaper order: downsample before projecting, upsample after.

    Both orders give the same values: trilinear weights and average pooling weights sum to one.
    """
    finer = is_finer(x.shape[2:], size)
    if finer:
        x = _pin_channels_last(resample(x, size, downsample))  # avg_pool3d hands back NCDHW
    y = _cl_grad(_conv_op(x, weight.to(x.dtype), bias.to(x.dtype)))
    return y if finer else _pin_channels_last(resample(y, size))


def _pin_channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` in channels-last 3D when a training call runs channels-last with the fused chains (resampling may hand
    back NCDHW; the router's fused mixing and the 1x1x1 GEMM route need channels-last). Inference is unchanged."""
    if _FUSED_CHAINS.get() and _use_train_kernels(x) and _CHANNELS_LAST.get():
        return x.contiguous(memory_format=torch.channels_last_3d)
    return x


def _layout(y: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """Pin the layout after a conv on a one-channel input, for which NCDHW and NDHWC strides coincide
    and torch would pick NCDHW for everything downstream."""
    return y.contiguous(memory_format=torch.channels_last_3d) if channels_last else y


def _stem_and_priors(model, x: torch.Tensor, inplace: bool, channels_last: bool):
    stem = model.stem
    f0 = _group_norm(_layout(_conv3(x, stem.conv), channels_last), stem.norm.num_groups,
                     stem.norm.weight, stem.norm.bias, stem.norm.eps)
    anchors = None
    if model.anchor_detector is not None:
        det = model.anchor_detector
        h = x
        for conv, norm in det.conv_blocks:
            h = _norm_act(_layout(_conv(h, conv), channels_last), norm, inplace)
        descriptor = h.mean(dim=(2, 3, 4), dtype=torch.float32)
        anchors = torch.sigmoid(det.mlp(descriptor)).view(x.shape[0], det.num_anchors, 3)
    texture = None
    features = f0
    if model.lspm is not None:
        lspm = model.lspm
        tex = lspm.texture
        smooth = _conv_norm_act(f0, tex.smooth, inplace)
        diff = smooth.sub_(f0).abs_() if inplace else torch.abs(smooth - f0)
        texture = torch.sigmoid(_conv(diff, tex.to_map))
        h = f0
        for block in lspm.gating.hidden_blocks:
            h = _conv_norm_act(h, block, inplace)
        gate = torch.sigmoid(_conv(h, lspm.gating.collapse))
        mixer = lspm.mixer
        # softmax over two logits == sigmoid of their difference; experts stacked into one conv.
        wt, bt = mixer.to_weights.weight.flatten(), _bias(mixer.to_weights)
        alpha1 = torch.sigmoid(gate * (wt[0] - wt[1]).to(x.dtype) + (bt[0] - bt[1]).to(x.dtype))
        w1, w2 = mixer.expert1.weight, mixer.expert2.weight
        z = _conv_op(f0, torch.cat([w2, w1 - w2]).to(x.dtype),
                     torch.cat([_bias(mixer.expert2), _bias(mixer.expert1) - _bias(mixer.expert2)]).to(x.dtype))
        c = f0.shape[1]
        features = torch.addcmul(z[:, :c], alpha1, z[:, c:])
    return f0, anchors, features, texture


def _encoder(model, features: torch.Tensor, anchors_flat, texture, inplace: bool) -> list[torch.Tensor]:
    enc = model.encoder
    skips: list[torch.Tensor] = []
    x = features
    for i, stage in enumerate(enc.stages):
        if i > 0:
            stride = enc.pool_strides[i - 1]
            x = F.max_pool3d(x, stride, stride)
        t_i = None
        if texture is not None:
            t_i = resample(texture, x.shape[2:])
        cond = _conv3(x, stage.project)
        norm, film = stage.project_norm, stage.film
        if norm is not None and film is not None and _NORM_FORM.get() == "fused" and _use_fused(cond):
            # training: FiLM (Eq. 6) folded into the norm's affine, one (B x C) scale and shift per sample
            one_gamma = 1.0 + film.w_gamma(anchors_flat).float()
            beta = film.w_beta(anchors_flat).float()
            cond = group_norm_act(cond, norm.num_groups, norm.weight.float() * one_gamma,
                                  torch.addcmul(beta, norm.bias.float(), one_gamma), norm.eps, False)
            film = None
        elif norm is not None:
            cond = _group_norm(cond, norm.num_groups, norm.weight, norm.bias, norm.eps)
        if film is not None:
            gamma = film.w_gamma(anchors_flat).to(x.dtype)[:, :, None, None, None]
            beta = film.w_beta(anchors_flat).to(x.dtype)[:, :, None, None, None]
            cond = torch.addcmul(beta, cond, 1.0 + gamma)
        detail = _conv_norm_act(cond, stage.detail, inplace)
        smooth = _conv(cond, stage.smooth)
        if t_i is None:
            routed = detail.add_(smooth).mul_(0.5) if inplace else 0.5 * (detail + smooth)
        elif inplace:
            routed = detail.sub_(smooth).mul_(t_i).add_(smooth)
        elif _use_fused(detail):  # one pass forward instead of three
            routed = _pin_channels_last(torch.lerp(smooth.to(detail.dtype), detail, t_i.to(detail.dtype)))
        else:
            routed = smooth + t_i * (detail - smooth)
        x = _apply_se(stage.se, routed, inplace)
        skips.append(x)
    return skips


def _router_skip_term(model, skips, size, fuse_skip: torch.Tensor, inplace: bool) -> torch.Tensor:
    """``W_s (Q SKIP_j + b_Q)`` for a router level, without the 64-wide fused tensor (Eqs. 11-13)."""
    router = model.skip_router
    width = router.width
    ctrl1, ctrl2 = router.controller_hidden, router.controller_out
    c1 = pointwise_matrix(ctrl1)  # width x (M*width)
    # fuse_skip is W_s @ Q (C_j x width); the caller's bias handling adds W_s b_Q.
    pre = None
    branches = []
    ctrl_bias = _bias(ctrl1)
    ys = []
    for i, (proj, e) in enumerate(zip(router.project, skips)):
        c1_i = c1[:, i * width : (i + 1) * width]
        outer = torch.cat([c1_i, fuse_skip])
        w, b = compose_pointwise(outer, proj)
        ys.append(_project_resampled(e, w, b, size, router.downsample))
    if all(_use_fused(y) for y in ys):  # training: Eqs. 12-13 as one autograd node on voxel x channel matrices
        return router_mix(ys, width, ctrl_bias, ctrl2.weight.flatten(1), _bias(ctrl2))
    for y in ys:
        ctrl_part, skip_part = y[:, :width], y[:, width:]
        pre = ctrl_part if pre is None else pre + ctrl_part
        branches.append(skip_part)
    pre = pre + ctrl_bias.to(pre.dtype)[None, :, None, None, None]
    weights = torch.softmax(_conv(F.silu(pre, inplace=inplace), ctrl2), dim=1)  # Eq. 12
    out = weights[:, 0:1] * branches[0]
    for i in range(1, len(branches)):
        out = torch.addcmul(out, weights[:, i : i + 1], branches[i])  # Eq. 13 at the decoder width
    return out


def _upsample_fused(stage, x: torch.Tensor, in_scale: torch.Tensor | None, anchors) -> torch.Tensor:
    """``W_u (ConvT(x * in_scale) + SPB) + b_fuse`` (Eqs. 14-16 minus the skip half) as ONE transposed conv.

    The full-resolution ramp splits as ``n/N = s p/N + k/N`` (p: input voxel, k: kernel tap, s: stride), so the
    position bias becomes two extra input channels of the transposed conv: the coarse ramp
    ``sum_axes s p/N`` with weight ``slope`` for every tap, and a constant one whose per-tap weight
    carries ``slope * sum_axes k/N`` plus all biases. No full-size broadcast add is left.
    The previous stage's SE scale is folded into the weights when the batch has one sample.
    """
    fuse = pointwise_matrix(stage.fuse)
    c = fuse.shape[0]
    w_u = fuse[:, :c]
    wt, bt = compose_transpose(w_u, stage.up)  # (C_in x C x sd x sh x sw), (C,)
    stride = tuple(stage.up.stride)
    b = x.shape[0]
    if in_scale is not None:
        if b == 1:
            wt = wt * in_scale[0][:, None, None, None, None]
        else:
            x = x * in_scale.to(x.dtype)[:, :, None, None, None]
    const = (bt + _bias(stage.fuse))[:, None, None, None].expand(c, *stride)
    if stage.spb is None:
        return _transpose_op(x, wt.to(x.dtype), const[:, 0, 0, 0].to(x.dtype), stride)
    slope, shift = position_bias_terms(stage.spb.proj, anchors, w_u)  # (C,), (B x C)
    size = [s * n for s, n in zip(stride, x.shape[2:])]
    td, th, tw = (torch.arange(s, device=x.device, dtype=torch.float32) / n for s, n in zip(stride, size))
    tap_ramp = td[:, None, None] + th[None, :, None] + tw[None, None, :]
    const = const + slope[:, None, None, None] * tap_ramp
    rd, rh, rw = axis_ramps(x.shape[2:], x.device, torch.float32)  # p/n on the coarse grid
    coarse = ((stride[0] * x.shape[2] / size[0]) * rd + (stride[1] * x.shape[3] / size[1]) * rh
              + (stride[2] * x.shape[4] / size[2]) * rw)
    extra_w = [slope[None, :, None, None, None].expand(1, c, *stride)]
    extra_in = [coarse.expand(b, 1, *x.shape[2:])]
    if b == 1:
        extra_w.append((const + shift[0][:, None, None, None])[None])
    else:  # a per-sample shift cannot live in shared weights: one input channel per sample
        extra_w.append(const[None].expand(1, c, *stride))
        extra_w.append(shift[:, :, None, None, None].expand(b, c, *stride))
    ones = x.new_ones(b, 1, *x.shape[2:])
    extra_in.append(ones)
    if b > 1:
        extra_in.append(torch.eye(b, device=x.device, dtype=x.dtype)[:, :, None, None, None].expand(b, b, *x.shape[2:]))
    x_aug = torch.cat([x, *(t.to(x.dtype) for t in extra_in)], dim=1)
    if x.is_contiguous(memory_format=torch.channels_last_3d):
        x_aug = x_aug.contiguous(memory_format=torch.channels_last_3d)
    w_aug = torch.cat([wt, *extra_w], dim=0)
    return _transpose_op(x_aug, w_aug.to(x.dtype), None, stride)


def _transpose_op(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, stride: Sequence[int]) -> torch.Tensor:
    """``F.conv_transpose3d`` with kernel = stride; at stride 1 (a stage that does not upsample, the
    ``final_transposed_conv`` reading) the same map as a 1x1x1 conv, run as one through :func:`_conv_op`."""
    if tuple(stride) == (1, 1, 1):
        return _cl_grad(_conv_op(x, w.transpose(0, 1), b))
    return _cl_grad(F.conv_transpose3d(x, w, b, stride=tuple(stride)))


def _ghost_halves_ok(conv: nn.Module, norm: nn.GroupNorm) -> bool:
    """True when a ghost conv's primary and cheap halves each hold whole GN groups (C=8,16,...)."""
    if not isinstance(conv, GhostConv3d):
        return False
    c, g = norm.num_channels, norm.num_groups
    primary = conv.primary.out_channels
    return primary * 2 == c and g % 2 == 0 and primary % (c // g) == 0


def _decoder_stage(
    stage, x: torch.Tensor, skip_term: torch.Tensor, anchors, inplace: bool, in_scale: torch.Tensor | None = None
) -> torch.Tensor:
    """Stage j up to the gated sum (Eqs. 14-20); its SE scale is applied by the consumer."""
    d_in = _upsample_fused(stage, x, in_scale, anchors)
    d_in = d_in.add_(skip_term) if inplace else d_in + skip_term
    pi = torch.softmax(_conv(d_in, stage.gate), dim=1)  # Eq. 17
    channel = _conv_norm_act(d_in, stage.path_channel, inplace)  # Eq. 21
    local = _conv_norm_act(d_in, stage.path_local, inplace)  # Eq. 19
    conv, norm = stage.path_context.conv, stage.path_context.norm
    if inplace and _ghost_halves_ok(conv, norm):
        # Eq. 20 without the ghost concatenation: normalise each half with its own groups and
        # accumulate it straight into its channel slice of the output.
        half, g2 = conv.primary.out_channels, norm.num_groups // 2
        primary = _conv(d_in, conv.primary)
        cheap = _conv(primary, conv.cheap)
        del d_in
        gated = local.mul_(pi[:, 0:1]).addcmul_(pi[:, 2:3], channel)
        del channel
        for sl, part in ((slice(0, half), primary), (slice(half, 2 * half), cheap)):
            y = _group_norm(part, g2, norm.weight[sl], norm.bias[sl], norm.eps)
            gated[:, sl].addcmul_(pi[:, 1:2], F.silu(y, inplace=True))
        return gated
    context = _conv_norm_act(d_in, stage.path_context, inplace)  # Eq. 20
    if inplace:
        return local.mul_(pi[:, 0:1]).addcmul_(pi[:, 1:2], context).addcmul_(pi[:, 2:3], channel)
    if _use_fused(local):  # accumulate in one buffer (autograd-safe: mul and addcmul keep their inputs, not outputs)
        return (local * pi[:, 0:1]).addcmul_(pi[:, 1:2], context).addcmul_(pi[:, 2:3], channel)
    return pi[:, 0:1] * local + pi[:, 1:2] * context + pi[:, 2:3] * channel  # Eq. 18


def fast_logits(
    model, x: torch.Tensor, inplace: bool = False, dtype: torch.dtype | None = None, channels_last: bool = True,
    norm: str = "fused", train_kernels: bool = True, fused_chains: bool = True,
) -> torch.Tensor:
    """Logits (float32, contiguous) of ``model`` (a reference LightMedSeg) on ``x`` via the rewritten graph.

    Args:
        inplace: reuse buffers in elementwise chains; only valid without autograd (inference).
        dtype: activation dtype; None keeps ``x``'s (float32: same function up to rounding);
            ``torch.bfloat16`` runs every conv and elementwise op in bf16 (norm statistics, SE and
            anchor MLPs stay float32).
        channels_last: run in the channels-last 3D layout (oneDNN's fast layout for the depthwise and
            pointwise convs here); a layout change only, the values are the same.
        norm: "fused" (torch's group-norm kernel) or "reduce" (reductions and a per-channel affine, for graph
            engines; see :func:`_group_norm`).
        train_kernels: with autograd, run depthwise convs and channels-last group norms (+SiLU) through the
            hand-written backwards of :mod:`lightmedseg.fast.autograd` (same function; False: torch's own,
            kept for the benchmark's before/after ratio).
        fused_chains: with ``train_kernels``, run the fused elementwise chains of :mod:`lightmedseg.fast.autograd`
            (same function; False: the chains as separate torch ops, for the benchmark's before/after).
    """
    if norm not in NORM_FORMS:
        raise ValueError(f"norm must be one of {NORM_FORMS}, got {norm!r}")
    token, norm_token = _CHANNELS_LAST.set(channels_last), _NORM_FORM.set(norm)
    kernel_token, fused_token = _TRAIN_KERNELS.set(train_kernels), _FUSED_CHAINS.set(fused_chains)
    try:
        return _fast_logits(model, x, inplace, dtype, channels_last)
    finally:
        _FUSED_CHAINS.reset(fused_token)
        _CHANNELS_LAST.reset(token)
        _NORM_FORM.reset(norm_token)
        _TRAIN_KERNELS.reset(kernel_token)


def _fast_logits(model, x: torch.Tensor, inplace: bool, dtype: torch.dtype | None, channels_last: bool):
    """The body of :func:`fast_logits` (which sets the layout for its convs)."""
    model.check_input(x)
    if dtype is not None:
        x = x.to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    f0, anchors, features, texture = _stem_and_priors(model, x, inplace, channels_last)
    anchors_flat = anchors.flatten(1) if anchors is not None else None
    skips = _encoder(model, features, anchors_flat, texture, inplace)
    dec = model.decoder
    x_dec = _conv(skips[-1], dec.bottleneck)
    scale = None
    deep_supervision = model.training and len(dec.aux_heads) > 0
    stage_outputs: list[torch.Tensor] = []
    router_downsample = model.skip_router.downsample if model.skip_router is not None else "interpolate"
    for j, stage in enumerate(dec.stages):
        size = [s * f for s, f in zip(x_dec.shape[2:], dec.strides[j])]
        fuse = pointwise_matrix(stage.fuse)
        c = fuse.shape[0]
        w_s = fuse[:, c:]
        adapter = dec.skip_adapters[j]
        if dec.skip_sources[j] == ROUTER:
            outer = w_s @ pointwise_matrix(adapter.proj)
            skip_term = _router_skip_term(model, skips, size, outer, inplace)
            skip_term = skip_term + (w_s @ _bias(adapter.proj)).to(skip_term.dtype)[None, :, None, None, None]
        else:
            w, b = compose_pointwise(w_s, adapter.proj)
            skip_term = _project_resampled(dec.select_skip(j, skips, f0), w, b, size, router_downsample)  # no router map
        x_dec = _decoder_stage(stage, x_dec, skip_term, anchors, inplace, in_scale=scale)
        if x_dec.shape[0] > 1 and _use_fused(x_dec):
            # training: SE applied once (fused), its output feeding the next stage and the auxiliary head
            x_dec, scale = _apply_se(stage.se, x_dec, inplace), None
            if deep_supervision:
                stage_outputs.append(x_dec)
            continue
        scale = _se_scale(stage.se, x_dec)
        if deep_supervision:
            stage_outputs.append(_channel_scale(x_dec, scale, inplace=False))
    head = dec.head
    if scale is None:  # already applied
        logits = _conv(x_dec, head)
    elif x_dec.shape[0] == 1:  # SE of the last stage folded into the head: one full-size pass fewer
        logits = _conv(x_dec, head, head.weight * scale[0][None, :, None, None, None])
    else:
        logits = _conv(_channel_scale(x_dec, scale, inplace), head)
    if dec.final_up is not None:  # final_transposed_conv: the head's logits back to the input resolution
        up = dec.final_up
        logits = _transpose_op(logits, up.weight.to(logits.dtype), _bias(up).to(logits.dtype), up.stride)
    if deep_supervision:  # training-only heads on the coarser stages, finest first (as Decoder.forward)
        aux = [_conv(stage_outputs[s], h).float() for s, h in zip(dec.aux_stages, dec.aux_heads)]
        return [logits.float(), *aux]
    if torch.is_grad_enabled() and logits.requires_grad:
        # Training: keep channels-last so the loss gradient comes back in the same layout; a
        # contiguous gradient flowing into channels-last convs sends oneDNN's backward down a slow path.
        return logits.float()
    return logits.to(torch.float32, memory_format=torch.contiguous_format)
