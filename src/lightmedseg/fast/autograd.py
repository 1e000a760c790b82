"""Hand-written backward passes and fused element-wise chains for the training step on CPU (issue 25,
docs/performance.md, sections "Training step: profile and levers" and "Fused element-wise chains").

Each computes exactly the function of the PyTorch ops it stands in for; only the way the gradient is
obtained differs, each chosen because it measured faster on an AVX512-BF16 + AMX Xeon (1 thread):

* :func:`depthwise_conv3d` -- ``F.conv3d`` with ``groups == in == out channels`` and stride 1. oneDNN's
  depthwise backward is 5-20x slower than its forward (bf16 worst); the input gradient of a stride-1
  "same" depthwise conv is the forward conv of the output gradient with the spatially flipped kernel,
  so it runs on the fast forward kernel. The weight gradient stays oneDNN's, in float32 (its bf16
  version was about 10x slower than casting up).
* :func:`group_norm_act` -- ``F.group_norm`` (optionally followed by SiLU) written as per-channel
  reductions and one affine map. Torch's group-norm kernels are 2-9x slower on channels-last input than
  on contiguous input; reductions and elementwise ops run at memory speed in any layout. The input (and,
  with SiLU, the pre-activation) is saved; the normalised tensor is never formed.
  Statistics are float32 whatever the activation dtype; the variance is E[x^2] - mean^2, accurate while a
  group's |mean| is not orders of magnitude above its std (true of the conv outputs it normalises here;
  torch's Welford-style kernel would be the safer choice for arbitrary inputs). Its weight and bias may be
  per sample (B x C), which folds a FiLM modulation (Eq. 6) into it.
* :func:`router_mix` -- the skip router's mixing (Eqs. 12-13) as one node on voxel x channel matrices.
* :func:`squeeze_excite` -- Eq. 10 applied, one full-size pass forward, two backward.

Per-channel broadcasts on channels-last tensors run on rows of ``k * C`` elements (:func:`_scale_shift`) and
fp32 per-channel sums of products as one batched GEMM (:func:`_channel_sums`), both measured faster here.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

_SPATIAL = (2, 3, 4)


def _fast_depthwise_ok(x: torch.Tensor, weight: torch.Tensor, stride, padding, dilation, groups: int) -> bool:
    """True when :func:`depthwise_conv3d` can replace ``F.conv3d`` (stride 1, 'same' padding, one filter per channel)."""
    k = weight.shape[2:]
    return (x.dim() == 5 and groups == x.shape[1] == weight.shape[0] and weight.shape[1] == 1
            and tuple(stride) == (1, 1, 1)
            and all(p * 2 == d * (n - 1) for p, d, n in zip(padding, dilation, k)))


class _DepthwiseConv3d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding, dilation):  # noqa: D102
        ctx.save_for_backward(x, weight)
        ctx.conf = (tuple(padding), tuple(dilation), bias is not None)
        return F.conv3d(x, weight, bias, 1, padding, dilation, x.shape[1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        x, weight = ctx.saved_tensors
        padding, dilation, has_bias = ctx.conf
        c = x.shape[1]
        fmt = torch.channels_last_3d if x.is_contiguous(memory_format=torch.channels_last_3d) else torch.contiguous_format
        grad = grad.contiguous(memory_format=fmt)
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:  # correlation with the flipped kernel = transpose of a stride-1 'same' conv
            gx = F.conv3d(grad, weight.flip(2, 3, 4).to(grad.dtype), None, 1, padding, dilation, c)
        if ctx.needs_input_grad[1]:
            acc = _acc(x)
            gw = torch.ops.aten.convolution_backward(
                grad.to(acc), x.to(acc), weight.to(acc), None, [1, 1, 1], list(padding), list(dilation), False, [0, 0, 0], c,
                [False, True, False])[1].to(weight.dtype)
        if has_bias and ctx.needs_input_grad[2]:
            gb = grad.sum(dim=(0, *_SPATIAL), dtype=_acc(grad)).to(weight.dtype)
        return gx, gw, gb, None, None


def depthwise_conv3d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride, padding, dilation,
                     groups: int) -> torch.Tensor:
    """``F.conv3d(x, weight, bias, stride, padding, dilation, groups)``, with the faster backward of
    :class:`_DepthwiseConv3d` where it applies (stride 1, 'same' padding, depthwise), else torch's."""
    if not _fast_depthwise_ok(x, weight, stride, padding, dilation, groups) or not torch.is_grad_enabled():
        return F.conv3d(x, weight, bias, stride, padding, dilation, groups)
    return _DepthwiseConv3d.apply(x, weight, bias, padding, dilation)


def _group_stats(x: torch.Tensor, groups: int, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-(sample, group) mean and 1/std of ``x`` (accumulated in float32 or wider), each expanded to B x C.

    From per-channel sums of x and x^2 (:func:`_channel_sums`; ``torch.var_mean`` over the spatial axes of a
    channels-last tensor measured 5x slower than two plain reductions).
    """
    b, c = x.shape[:2]
    m = x[0, 0].numel()
    sum_x, sum_xx = _channel_sums(x, x)
    mean_g = sum_x.view(b, groups, -1).mean(-1) / m
    sq_g = sum_xx.view(b, groups, -1).mean(-1) / m
    rstd_g = torch.rsqrt((sq_g - mean_g * mean_g).clamp_min(0.0) + eps)
    per = c // groups
    return mean_g.repeat_interleave(per, dim=1), rstd_g.repeat_interleave(per, dim=1)


def _channel_sums(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-(sample, channel) ``sum a`` and ``sum a * b`` over the spatial axes (B x C each, accumulation dtype).

    Channels-last float32/float64: ``sum a*b`` is the diagonal of one batched GEMM ``A^T B`` on the voxel x channel
    matrices, which reads both tensors once and writes no full-size product (measured 1.5-2x faster than a
    product and two reductions at 8-16 channels, 1 thread). bf16 keeps the reductions: a bf16 GEMM would
    round the sums to bf16.
    """
    acc = _acc(a)
    cl = torch.channels_last_3d
    if a.dtype == acc == b.dtype and a.is_contiguous(memory_format=cl) and b.is_contiguous(memory_format=cl):
        n, c = a.shape[0], a.shape[1]
        ra, rb = a.permute(0, 2, 3, 4, 1).reshape(n, -1, c), b.permute(0, 2, 3, 4, 1).reshape(n, -1, c)
        return ra.sum(1), torch.bmm(ra.transpose(1, 2), rb).diagonal(dim1=1, dim2=2)
    return a.sum(dim=_SPATIAL, dtype=acc), (a * b).sum(dim=_SPATIAL, dtype=acc)


def _acc(x: torch.Tensor) -> torch.dtype:
    """Accumulation dtype: float32 for bf16/fp16 activations, else the activations' own (float64 in gradchecks)."""
    return torch.promote_types(x.dtype, torch.float32)


def _bc(t: torch.Tensor) -> torch.Tensor:
    return t[:, :, None, None, None]


# Per-channel broadcasts on channels-last tensors: the innermost axis is C (8-16 here), too short for torch's
# vectorised loops, so x * scale[b, c] ran 3x (fp32) to 5.6x (bf16) slower than the same op on rows of
# ``k * C`` >= TILE elements against a scale tiled k times (8 ch x 2 x 16 x 160 x 160, 1 thread: fp32 7.5 -> 2.5 ms,
# bf16 14.1 -> 2.5 ms). The values are identical; only the loop shape changes.
TILE = 256


def _tiling(x: torch.Tensor) -> int:
    """How many voxels one row of :func:`_tiled` holds (1: leave the op as a plain broadcast)."""
    c, n = x.shape[1], x[0, 0].numel()
    if x.dim() != 5 or c >= 32 or not x.is_contiguous(memory_format=torch.channels_last_3d):
        return 1
    k = max(1, TILE // c)
    while n % k:
        k //= 2
    return k


def _tiled(x: torch.Tensor, k: int) -> torch.Tensor:
    """A channels-last ``x`` (B x C x D x H x W) as B x (DHW / k) x (k C) rows, a view."""
    return x.permute(0, 2, 3, 4, 1).reshape(x.shape[0], -1, k * x.shape[1])


def _untiled(rows: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    b, c, d, h, w = like.shape
    return rows.view(b, d, h, w, c).permute(0, 4, 1, 2, 3)


def _per_channel(v: torch.Tensor, k: int, dtype: torch.dtype) -> torch.Tensor:
    """A B x C (or 1 x C) per-channel vector, broadcastable against ``_tiled(x, k)`` (k > 1) or x itself (k = 1)."""
    v = v.to(dtype)
    return v.repeat(1, k)[:, None, :] if k > 1 else _bc(v)


def _scale_shift(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor | None) -> torch.Tensor:
    """``x * scale + shift`` with per-(sample, channel) ``scale``/``shift`` (B x C or 1 x C), in ``x``'s dtype/layout."""
    k = _tiling(x)
    xs = _tiled(x, k) if k > 1 else x
    sc = _per_channel(scale, k, x.dtype)
    out = xs * sc if shift is None else torch.addcmul(_per_channel(shift, k, x.dtype), xs, sc)
    return _untiled(out, x) if k > 1 else out


def _add_scaled_(out: torch.Tensor, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``out += x * scale`` in place (per-channel ``scale``; ``out`` and ``x`` same shape and layout)."""
    k = _tiling(x) if out.is_contiguous(memory_format=torch.channels_last_3d) else 1
    if k > 1:
        _tiled(out, k).addcmul_(_tiled(x, k), _per_channel(scale, k, x.dtype))
    else:
        out.addcmul_(x, _bc(scale).to(x.dtype))
    return out


class _GroupNormAct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int, eps: float, silu: bool):  # noqa: D102
        mean, rstd = _group_stats(x, groups, eps)
        scale = rstd * _per_sample(weight, rstd)
        shift = _per_sample(bias, rstd) - mean * scale
        y = _scale_shift(x, scale, shift)
        # with SiLU the pre-activation is kept (one buffer more) rather than recomputed: a pass fewer in backward
        ctx.save_for_backward(x, weight, mean, rstd, scale, y if silu else None)
        ctx.conf = (groups, silu)
        return F.silu(y) if silu else y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        x, weight, mean, rstd, scale, y = ctx.saved_tensors
        groups, silu = ctx.conf
        b, c = x.shape[:2]
        fmt = torch.channels_last_3d if x.is_contiguous(memory_format=torch.channels_last_3d) else torch.contiguous_format
        grad = grad.contiguous(memory_format=fmt)
        if silu:
            grad = torch.ops.aten.silu_backward(grad, y)
        m = x[0, 0].numel()
        sum_g, sum_gx = _channel_sums(grad, x)  # B x C each
        # d beta, d gamma (per channel): sum g, sum g * xhat with xhat = (x - mean) rstd
        g_beta = sum_g  # per sample (B x C): summed over the batch below for a shared affine
        g_gamma = (sum_gx - mean * sum_g) * rstd
        # dx = rstd*gamma*g - per-group terms: rstd/(M_g) * [sum_c gamma_c (sum g)_c + xhat * sum_c gamma_c (sum g xhat)_c]
        wg = _per_sample(weight, mean)
        if weight.dim() == 1:
            g_beta, g_gamma = g_beta.sum(0), g_gamma.sum(0)
        per = c // groups
        a = (wg * sum_g).view(b, groups, per).sum(-1)                                # sum_c gamma g
        d = (wg * (sum_gx - mean * sum_g) * rstd).view(b, groups, per).sum(-1)        # sum_c gamma g xhat
        count = m * per
        rstd_g = rstd.view(b, groups, per)[..., 0]
        mean_g = mean.view(b, groups, per)[..., 0]
        # dx = scale * g + coef_x * x + coef_0, with coef_x = -rstd^2 d / count, coef_0 = -rstd a/count - coef_x * mean
        coef_x = -rstd_g * rstd_g * d / count
        coef_0 = -rstd_g * a / count - coef_x * mean_g
        coef_x = coef_x.repeat_interleave(per, dim=1)
        coef_0 = coef_0.repeat_interleave(per, dim=1)
        gx = _add_scaled_(_scale_shift(x, coef_x, coef_0), grad, scale)
        return gx, g_gamma.to(weight.dtype), g_beta.to(weight.dtype), None, None, None


def _per_sample(p: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """An affine parameter, C (shared) or B x C (per sample), as a 1 x C or B x C tensor of ``like``'s dtype."""
    p = p.to(like.dtype)
    return p[None] if p.dim() == 1 else p


def group_norm_act(x: torch.Tensor, groups: int, weight: torch.Tensor, bias: torch.Tensor, eps: float,
                   silu: bool) -> torch.Tensor:
    """``F.group_norm(x, groups, weight, bias, eps)``, then SiLU when ``silu``; the output has ``x``'s dtype and
    layout. Forward and backward as :class:`_GroupNormAct` (see the module docstring).

    ``weight`` and ``bias`` may also be B x C, one affine per sample: a FiLM modulation (Eq. 6) after the norm,
    ``(1 + gamma) GN(x) + beta``, is the norm with ``weight (1 + gamma)`` and ``bias (1 + gamma) + beta``, so it
    costs no full-size pass of its own, forward or backward.
    """
    if x.shape[1] % groups:
        raise ValueError(f"group_norm_act: {x.shape[1]} channels do not split into {groups} groups")
    b, c = x.shape[:2]
    for name, p in (("weight", weight), ("bias", bias)):
        if tuple(p.shape) not in ((c,), (b, c)):
            raise ValueError(f"group_norm_act: {name} must be ({c},) or ({b}, {c}), got {tuple(p.shape)}")
    if weight.dim() != bias.dim():
        raise ValueError("group_norm_act: weight and bias must both be shared (C) or both per sample (B x C)")
    return _GroupNormAct.apply(x, weight, bias, groups, float(eps), bool(silu))


def _rows(t: torch.Tensor) -> torch.Tensor:
    """The (B*D*H*W) x C matrix of a channels-last 5-D tensor (a view; copies only if ``t`` is not channels-last)."""
    return t.contiguous(memory_format=torch.channels_last_3d).permute(0, 2, 3, 4, 1).reshape(-1, t.shape[1])


def _from_rows(m: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Inverse of :func:`_rows`: ``m`` (N x C) as a channels-last B x C x D x H x W view (``shape``, C from ``m``)."""
    b, _, d, h, w = shape
    return m.view(b, d, h, w, m.shape[1]).permute(0, 4, 1, 2, 3)


class _RouterMix(torch.autograd.Function):
    """Eqs. 12-13 at the decoder width on the (voxels x channels) matrices of channels-last inputs.

    Each ``ys[i]`` holds ``[control part (width) | skip part (C)]`` of source i. Unfused, the channel slices of
    channels-last tensors made torch write NCDHW results (a transposing pass each), and their backward
    zero-filled and copied every 96-channel gradient twice; here every op is a row-major matrix op, the
    mixing weights are recomputed nowhere (saved: N x M), and each source's gradient is written once.
    """

    @staticmethod
    def forward(ctx, ctrl_bias: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor, width: int, *ys: torch.Tensor):  # noqa: D102
        with torch.autocast("cpu", enabled=False):
            dt = ys[0].dtype
            for y in ys[1:]:
                dt = torch.promote_types(dt, y.dtype)
            rows = [_rows(y).to(dt) for y in ys]
            pre = rows[0][:, :width] + ctrl_bias.to(dt)
            for r in rows[1:]:
                pre.add_(r[:, :width])
            h = F.silu(pre)
            logits = torch.addmm(b2.to(dt), h, w2.to(dt).t())
            a = torch.softmax(logits, dim=1, dtype=_acc(logits)).to(dt)  # N x M
            out = rows[0][:, width:] * a[:, 0:1]
            for i, r in enumerate(rows[1:], 1):
                out.addcmul_(r[:, width:], a[:, i : i + 1])
        ctx.save_for_backward(pre, a, w2, b2, ctrl_bias, *rows)
        ctx.shape = ys[0].shape
        ctx.width = width
        return _from_rows(out, ys[0].shape)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        pre, a, w2, b2, ctrl_bias, *rows = ctx.saved_tensors
        width = ctx.width
        g = _rows(grad).to(a.dtype)
        acc = _acc(a)
        ga = torch.stack([(g * r[:, width:]).sum(1, dtype=acc) for r in rows], dim=1)  # N x M
        af = a.to(acc)
        glogits = (af * (ga - (ga * af).sum(1, keepdim=True))).to(a.dtype)  # softmax backward
        h = F.silu(pre)
        gw2 = (glogits.t().to(acc) @ h.to(acc)).to(w2.dtype)
        gb2 = glogits.sum(0, dtype=acc).to(b2.dtype)
        gpre = torch.ops.aten.silu_backward(glogits @ w2.to(a.dtype), pre)
        gbias = gpre.sum(0, dtype=acc).to(ctrl_bias.dtype)
        grads = []
        for i, r in enumerate(rows):
            gy = torch.empty_like(r)
            gy[:, :width] = gpre
            torch.mul(g, a[:, i : i + 1], out=gy[:, width:])
            grads.append(_from_rows(gy, ctx.shape))
        return (gbias, gw2, gb2, None, *grads)


def router_mix(ys: list[torch.Tensor], width: int, ctrl_bias: torch.Tensor, w2: torch.Tensor,
               b2: torch.Tensor) -> torch.Tensor:
    """``sum_i softmax(W2 silu(sum_i ys[i][:, :width] + ctrl_bias) + b2)_i * ys[i][:, width:]`` (Eqs. 12-13).

    ``ys``: M tensors B x (width + C) x D x H x W (one per router source, same shape); ``w2``: M x width;
    returns B x C x D x H x W, channels-last, in ``ys``' dtype (the softmax runs in float32 at least).
    """
    if not ys or any(y.shape != ys[0].shape for y in ys) or ys[0].shape[1] <= width:
        raise ValueError(f"router_mix: needs M same-shape inputs wider than width={width}")
    if tuple(w2.shape) != (len(ys), width):
        raise ValueError(f"router_mix: w2 must be {len(ys)} x {width}, got {tuple(w2.shape)}")
    return _RouterMix.apply(ctrl_bias, w2, b2, width, *ys)


def _excite(squeeze: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(F.linear(F.silu(F.linear(squeeze, w1.to(squeeze.dtype))), w2.to(squeeze.dtype)))


class _SqueezeExcite(torch.autograd.Function):
    """Eq. 10, ``x * sigmoid(W2 silu(W1 mean(x)))``, with one full-size pass forward and two backward.

    Backward: the excitation's gradient is a per-channel reduction of ``grad * x``; the input gradient
    ``grad * s + d(mean)/dx`` is one addcmul (the mean's gradient is a per-channel constant), where autograd
    spent a product, a broadcast expand and an accumulation. The tiny MLP's gradients come from autograd on
    B x C tensors.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor):  # noqa: D102
        squeeze = x.mean(dim=_SPATIAL, dtype=_acc(x))
        with torch.autocast("cpu", enabled=False):
            s = _excite(squeeze, w1, w2)
        ctx.save_for_backward(x, squeeze, w1, w2, s)
        return _scale_shift(x, s, None)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        x, squeeze, w1, w2, s = ctx.saved_tensors
        fmt = torch.channels_last_3d if x.is_contiguous(memory_format=torch.channels_last_3d) else torch.contiguous_format
        grad = grad.contiguous(memory_format=fmt).to(x.dtype)
        gs = _channel_sums(grad, x)[1].to(s.dtype)
        with torch.enable_grad(), torch.autocast("cpu", enabled=False):
            sq, a, b = (t.detach().requires_grad_() for t in (squeeze, w1, w2))
            gsq, gw1, gw2 = torch.autograd.grad(_excite(sq, a, b), (sq, a, b), gs)
        gx = _scale_shift(grad, s, gsq / x[0, 0].numel())
        return gx, gw1.to(w1.dtype), gw2.to(w2.dtype)


def squeeze_excite(x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
    """Eq. 10 (``SqueezeExcite3d``) on a B x C x D x H x W tensor with weights ``w1`` (b x C) and ``w2`` (C x b);
    statistics and MLP in float32 at least, output in ``x``'s dtype and layout. See :class:`_SqueezeExcite`."""
    if x.dim() != 5 or w1.shape[1] != x.shape[1] or w2.shape != (x.shape[1], w1.shape[0]):
        raise ValueError(f"squeeze_excite: weights {tuple(w1.shape)}, {tuple(w2.shape)} do not fit input {tuple(x.shape)}")
    return _SqueezeExcite.apply(x, w1, w2)
