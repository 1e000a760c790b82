"""The hand-written backwards of lightmedseg.fast.autograd: same function and gradients as torch's ops."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from lightmedseg.fast.autograd import depthwise_conv3d, group_norm_act, router_mix, squeeze_excite

LAYOUTS = (torch.contiguous_format, torch.channels_last_3d)


def _x(fmt: torch.memory_format, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(2, 4, 4, 8, 8, dtype=dtype).contiguous(memory_format=fmt).requires_grad_()


@pytest.mark.parametrize("fmt", LAYOUTS)
@pytest.mark.parametrize("silu", [False, True])
def test_group_norm_act_gradcheck(fmt: torch.memory_format, silu: bool) -> None:
    torch.manual_seed(0)
    x = _x(fmt)
    w = torch.randn(4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: group_norm_act(x, 2, w, b, 1e-5, silu), (x, w, b))


@pytest.mark.parametrize("fmt", LAYOUTS)
@pytest.mark.parametrize("silu", [False, True])
def test_group_norm_act_matches_torch(fmt: torch.memory_format, silu: bool) -> None:
    torch.manual_seed(1)
    x = (3.0 + 2.0 * _x(fmt, torch.float32)).detach().requires_grad_()  # offset mean: E[x^2] - mean^2 stays accurate
    w, b = torch.randn(4, requires_grad=True), torch.randn(4, requires_grad=True)
    go = torch.randn(2, 4, 4, 8, 8)
    ours = group_norm_act(x, 2, w, b, 1e-5, silu)
    ref = F.group_norm(x, 2, w, b, 1e-5)
    ref = F.silu(ref) if silu else ref
    assert ours.is_contiguous(memory_format=fmt)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)
    for g, r in zip(torch.autograd.grad(ours, (x, w, b), go), torch.autograd.grad(ref, (x, w, b), go)):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-4)


def test_group_norm_act_bf16_close_to_float32() -> None:
    torch.manual_seed(2)
    x = _x(torch.channels_last_3d, torch.float32).detach()
    w, b = torch.randn(4), torch.randn(4)
    xb = x.bfloat16().requires_grad_()
    out = group_norm_act(xb, 2, w, b, 1e-5, True)
    assert out.dtype == torch.bfloat16
    ref = F.silu(F.group_norm(xb.detach().float(), 2, w, b, 1e-5))
    assert (out.float() - ref).abs().max() < 0.05
    (gx,) = torch.autograd.grad(out.float().sum(), xb)
    xr = xb.detach().float().requires_grad_()
    (gr,) = torch.autograd.grad(F.silu(F.group_norm(xr, 2, w, b, 1e-5)).sum(), xr)
    assert (gx.float() - gr).abs().max() < 0.05 * gr.abs().max()


def test_group_norm_act_rejects_bad_groups() -> None:
    with pytest.raises(ValueError, match="groups"):
        group_norm_act(torch.randn(1, 6, 2, 2, 2), 4, torch.ones(6), torch.zeros(6), 1e-5, False)


@pytest.mark.parametrize("fmt", LAYOUTS)
@pytest.mark.parametrize("kernel,padding,dilation", [((3, 3, 3), (1, 1, 1), (1, 1, 1)),
                                                     ((5, 3, 1), (4, 2, 0), (2, 2, 1))])
def test_depthwise_conv3d_gradcheck(fmt, kernel, padding, dilation) -> None:
    torch.manual_seed(3)
    x = _x(fmt)
    w = torch.randn(4, 1, *kernel, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: depthwise_conv3d(x, w, b, (1, 1, 1), padding, dilation, 4), (x, w, b))
    ours = depthwise_conv3d(x, w, b, (1, 1, 1), padding, dilation, 4)
    ref = F.conv3d(x, w, b, 1, padding, dilation, 4)
    torch.testing.assert_close(ours, ref)
    go = torch.randn_like(ref)
    for g, r in zip(torch.autograd.grad(ours, (x, w, b), go), torch.autograd.grad(ref, (x, w, b), go)):
        torch.testing.assert_close(g, r)


def test_depthwise_conv3d_bf16_gradients_close_to_float32() -> None:
    torch.manual_seed(4)
    x = torch.randn(2, 4, 4, 8, 8).contiguous(memory_format=torch.channels_last_3d)
    w = torch.randn(4, 1, 3, 3, 3)
    xb, wb = x.bfloat16().requires_grad_(), w.bfloat16().requires_grad_()
    gx, gw = torch.autograd.grad(depthwise_conv3d(xb, wb, None, (1, 1, 1), (1, 1, 1), (1, 1, 1), 4).float().sum(), (xb, wb))
    assert gx.dtype == gw.dtype == torch.bfloat16
    xr, wr = xb.detach().float().requires_grad_(), wb.detach().float().requires_grad_()
    rx, rw = torch.autograd.grad(F.conv3d(xr, wr, None, 1, 1, 1, 4).sum(), (xr, wr))
    torch.testing.assert_close(gx.float(), rx, rtol=2e-2, atol=2e-2 * rx.abs().max().item())
    torch.testing.assert_close(gw.float(), rw, rtol=1e-2, atol=1e-2 * rw.abs().max().item())


def test_depthwise_conv3d_falls_back_where_it_does_not_apply() -> None:
    """Strided, grouped-but-not-depthwise or 'valid' convs are torch's own op (no custom node)."""
    x = torch.randn(1, 4, 4, 6, 6, requires_grad=True)
    for w, stride, pad, groups in ((torch.randn(4, 1, 3, 3, 3), (2, 2, 2), (1, 1, 1), 4),
                                   (torch.randn(4, 2, 3, 3, 3), (1, 1, 1), (1, 1, 1), 2),
                                   (torch.randn(4, 1, 3, 3, 3), (1, 1, 1), (0, 0, 0), 4)):
        y = depthwise_conv3d(x, w, None, stride, pad, (1, 1, 1), groups)
        assert "DepthwiseConv3d" not in type(y.grad_fn).__name__
        torch.testing.assert_close(y, F.conv3d(x, w, None, stride, pad, 1, groups))


def test_pointwise_convs_route_to_a_gemm_in_float32_training_only() -> None:
    """fp32 1x1x1 convs under autograd run as F.linear on the channels-last view: same values and gradients."""
    from lightmedseg.fast import graph

    torch.manual_seed(5)
    x = torch.randn(2, 6, 3, 5, 4).contiguous(memory_format=torch.channels_last_3d).requires_grad_()
    w = torch.randn(3, 6, 1, 1, 1, requires_grad=True)
    b = torch.randn(3, requires_grad=True)
    y = graph._conv_op(x, w, b)
    assert "Conv" not in type(y.grad_fn).__name__  # the GEMM route
    assert y.is_contiguous(memory_format=torch.channels_last_3d)
    ref = F.conv3d(x, w, b)
    torch.testing.assert_close(y, ref)
    go = torch.randn_like(ref)
    for g, r in zip(torch.autograd.grad(y, (x, w, b), go), torch.autograd.grad(ref, (x, w, b), go)):
        torch.testing.assert_close(g, r)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16: oneDNN's conv stays
        assert "Convolution" in type(graph._conv_op(x, w, b).grad_fn).__name__
    token = graph._TRAIN_KERNELS.set(False)
    try:
        assert "Convolution" in type(graph._conv_op(x, w, b).grad_fn).__name__
    finally:
        graph._TRAIN_KERNELS.reset(token)


def _router_reference(ys, width, ctrl_bias, w2, b2):
    """Eqs. 12-13 as separate torch ops (graph._router_skip_term's unfused form)."""
    pre = sum(y[:, :width] for y in ys) + ctrl_bias[None, :, None, None, None]
    a = torch.softmax(F.conv3d(F.silu(pre), w2[:, :, None, None, None], b2), dim=1)
    return sum(a[:, i : i + 1] * y[:, width:] for i, y in enumerate(ys))


def _router_inputs(dtype: torch.dtype, m: int = 3, width: int = 4, c: int = 3):
    ys = [torch.randn(2, width + c, 2, 3, 4, dtype=dtype).contiguous(memory_format=torch.channels_last_3d)
          .requires_grad_() for _ in range(m)]
    params = [torch.randn(width, dtype=dtype), torch.randn(m, width, dtype=dtype), torch.randn(m, dtype=dtype)]
    return ys, [p.requires_grad_() for p in params]


def test_router_mix_gradcheck() -> None:
    torch.manual_seed(3)
    ys, (bias, w2, b2) = _router_inputs(torch.float64)
    assert torch.autograd.gradcheck(lambda bias, w2, b2, *ys: router_mix(list(ys), 4, bias, w2, b2),
                                    (bias, w2, b2, *ys))


def test_router_mix_matches_unfused_reference() -> None:
    torch.manual_seed(4)
    ys, (bias, w2, b2) = _router_inputs(torch.float32, m=4, width=8, c=5)
    ours = router_mix(ys, 8, bias, w2, b2)
    ref = _router_reference(ys, 8, bias, w2, b2)
    assert ours.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    go = torch.randn_like(ref)
    inputs = (bias, w2, b2, *ys)
    for g, r in zip(torch.autograd.grad(ours, inputs, go), torch.autograd.grad(ref, inputs, go)):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-5)
        assert g.shape == r.shape


def test_router_mix_rejects_mismatched_inputs() -> None:
    ys, (bias, w2, b2) = _router_inputs(torch.float32)
    with pytest.raises(ValueError, match="w2"):
        router_mix(ys[:2], 4, bias, w2, b2)
    with pytest.raises(ValueError, match="same-shape"):
        router_mix([ys[0], ys[1][:, :, :1]], 4, bias, w2[:2], b2[:2])


@pytest.mark.parametrize("silu", [False, True])
def test_group_norm_act_per_sample_affine_gradcheck(silu: bool) -> None:
    torch.manual_seed(5)
    x = _x(torch.channels_last_3d)
    w = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: group_norm_act(x, 2, w, b, 1e-5, silu), (x, w, b))


def test_group_norm_with_film_folded_matches_norm_then_film() -> None:
    """``(1 + gamma) GN(x) + beta`` (Eq. 6 after a norm) equals the norm with per-sample affine, gradients included."""
    torch.manual_seed(6)
    x = (1.0 + _x(torch.channels_last_3d, torch.float32)).detach().requires_grad_()
    w, b = torch.randn(4, requires_grad=True), torch.randn(4, requires_grad=True)
    gamma, beta = (0.3 * torch.randn(2, 4)).requires_grad_(), torch.randn(2, 4, requires_grad=True)
    ours = group_norm_act(x, 2, w * (1 + gamma), torch.addcmul(beta, b, 1 + gamma), 1e-5, False)
    ref = torch.addcmul(beta[:, :, None, None, None], F.group_norm(x, 2, w, b, 1e-5), 1 + gamma[:, :, None, None, None])
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)
    go = torch.randn_like(ref)
    inputs = (x, w, b, gamma, beta)
    for g, r in zip(torch.autograd.grad(ours, inputs, go), torch.autograd.grad(ref, inputs, go)):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-4)


def test_group_norm_act_rejects_bad_affine_shapes() -> None:
    x = _x(torch.channels_last_3d)
    with pytest.raises(ValueError, match="weight must be"):
        group_norm_act(x, 2, torch.ones(3, 4, dtype=x.dtype), torch.zeros(4, dtype=x.dtype), 1e-5, False)
    with pytest.raises(ValueError, match="both"):
        group_norm_act(x, 2, torch.ones(2, 4, dtype=x.dtype), torch.zeros(4, dtype=x.dtype), 1e-5, False)


def test_squeeze_excite_gradcheck() -> None:
    torch.manual_seed(7)
    x = _x(torch.channels_last_3d)
    w1 = torch.randn(4, 4, dtype=torch.float64, requires_grad=True)
    w2 = torch.randn(4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(squeeze_excite, (x, w1, w2))


@pytest.mark.parametrize("fmt", LAYOUTS)
def test_squeeze_excite_matches_module(fmt: torch.memory_format) -> None:
    from lightmedseg.model.blocks import SqueezeExcite3d

    torch.manual_seed(8)
    se = SqueezeExcite3d(4)
    x = _x(fmt, torch.float32)
    ours = squeeze_excite(x, se.w1.weight, se.w2.weight)
    ref = se(x)
    assert ours.is_contiguous(memory_format=fmt)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    go = torch.randn_like(ref)
    inputs = (x, se.w1.weight, se.w2.weight)
    for g, r in zip(torch.autograd.grad(ours, inputs, go), torch.autograd.grad(ref, inputs, go)):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="do not fit"):
        squeeze_excite(x, se.w2.weight[:, :2], se.w2.weight)


@pytest.mark.parametrize("shape", [(2, 8, 3, 5, 7), (2, 4, 4, 8, 8), (1, 16, 2, 4, 4), (2, 32, 2, 2, 2)])
@pytest.mark.parametrize("per_sample", [False, True])
def test_tiled_per_channel_ops_equal_the_broadcast(shape, per_sample: bool) -> None:
    from lightmedseg.fast.autograd import _add_scaled_, _scale_shift, _tiling

    torch.manual_seed(9)
    x = torch.randn(shape).contiguous(memory_format=torch.channels_last_3d)
    g = torch.randn(shape).contiguous(memory_format=torch.channels_last_3d)
    rows = shape[0] if per_sample else 1
    scale, shift, s2 = torch.randn(rows, shape[1]), torch.randn(rows, shape[1]), torch.randn(rows, shape[1])
    bc = lambda v: v[:, :, None, None, None]  # noqa: E731
    out = _scale_shift(x, scale, shift)
    assert out.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(out, x * bc(scale) + bc(shift))
    torch.testing.assert_close(_scale_shift(x, scale, None), x * bc(scale))
    torch.testing.assert_close(_add_scaled_(out, g, s2), x * bc(scale) + bc(shift) + g * bc(s2))
    assert (_tiling(x) > 1) == (shape[1] < 32 and x[0, 0].numel() % 2 == 0)
