"""The fast forward computes the reference function (issue 6): fp32 logits match for every variant."""

from __future__ import annotations

import pytest
import torch

import lightmedseg
from lightmedseg import LightMedSeg, load_config
from lightmedseg.config import available_variants
from lightmedseg.fast import fast_forward, fast_logits

VARIANTS = ["ghost", "standard", "standard_paper", "k16", "k32", "no_lspm", "no_anchors", "no_router", "no_ghost"]
# fp32 rewrites only re-associate sums (composed 1x1 weights, closed-form position bias): differences
# are float rounding, ~1e-6 on logits of magnitude ~1. 1e-4 leaves room for oneDNN algorithm changes.
FP32_ATOL = 1e-4


def make_model(variant: str, in_channels: int = 4, num_classes: int = 4, **options) -> LightMedSeg:
    """The brats preset's network in ``variant``, seeded; ``options``: constructor options on top of it."""
    cfg = load_config("brats", variant)["model"]
    torch.manual_seed(0)
    return LightMedSeg(**{**cfg, "in_channels": in_channels, "num_classes": num_classes, **options}).eval()


def test_every_shipped_variant_is_covered() -> None:
    assert set(available_variants()) <= set(VARIANTS)


@pytest.mark.parametrize("final_transposed_conv", [False, True])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("batch", [1, 2])
def test_fp32_logits_match_reference(variant: str, batch: int, final_transposed_conv: bool) -> None:
    model = make_model(variant, final_transposed_conv=final_transposed_conv)
    x = torch.randn(batch, 4, 32, 32, 32)
    with torch.no_grad():
        ref = model(x)
        fast = fast_logits(model, x)
        fast_inplace = fast_logits(model, x, inplace=True)
    assert fast.dtype == torch.float32 and fast.shape == ref.shape
    assert (fast - ref).abs().max().item() < FP32_ATOL
    assert (fast_inplace - ref).abs().max().item() < FP32_ATOL


@pytest.mark.parametrize("final_transposed_conv", [False, True])
@pytest.mark.parametrize("channels_last", [True, False])
def test_layouts_and_anisotropic_shape(channels_last: bool, final_transposed_conv: bool) -> None:
    model = make_model("ghost", in_channels=1, num_classes=3, final_transposed_conv=final_transposed_conv)
    x = torch.randn(1, 1, 16, 48, 32)
    with torch.no_grad():
        ref = model(x)
        fast = fast_logits(model, x, channels_last=channels_last)
    assert fast.is_contiguous()
    assert (fast - ref).abs().max().item() < FP32_ATOL


def test_fast_forward_callable_and_top_level_export() -> None:
    assert lightmedseg.fast_forward is fast_forward
    model = make_model("ghost")
    x = torch.randn(1, 4, 32, 32, 32)
    fn = fast_forward(model, device="cpu")
    out = fn(x)
    with torch.no_grad():
        ref = model(x)
    assert out.dtype == torch.float32 and out.is_contiguous()
    assert (out - ref).abs().max().item() < FP32_ATOL
    assert not out.requires_grad
    out_bf16 = fast_forward(model, dtype=torch.bfloat16)(x)
    assert out_bf16.dtype == torch.float32  # logits come back float32 whatever the compute dtype
    assert (out_bf16 - ref).abs().max().item() < 0.1


def test_fast_forward_does_not_touch_input() -> None:
    model = make_model("ghost")
    x = torch.randn(1, 4, 32, 32, 32)
    before = x.clone()
    fast_forward(model)(x)
    assert torch.equal(x, before)


def test_bad_input_is_rejected_like_the_reference() -> None:
    model = make_model("ghost")
    with pytest.raises(ValueError, match=r"multiple of \(16, 16, 16\)"):
        fast_logits(model, torch.randn(1, 4, 32, 32, 24))


# The "reduce" group norm computes the variance from centred values in separate reductions: a different
# summation order than torch's kernel, still float rounding (measured ~1e-5 at 32^3).
REDUCE_ATOL = 1e-3


@pytest.mark.parametrize("final_transposed_conv", [False, True])
@pytest.mark.parametrize("variant", ["ghost", "standard", "no_lspm"])
@pytest.mark.parametrize("batch", [1, 2])
def test_reduce_norm_form_and_inference_graph_match_reference(variant: str, batch: int,
                                                             final_transposed_conv: bool) -> None:
    from lightmedseg.fast import InferenceGraph

    model = make_model(variant, final_transposed_conv=final_transposed_conv)
    x = torch.randn(batch, 4, 32, 32, 32)
    with torch.no_grad():
        ref = model(x)
        reduce = fast_logits(model, x, norm="reduce", channels_last=False)
        graph = InferenceGraph(model)(x)
    assert (reduce - ref).abs().max().item() < REDUCE_ATOL
    assert torch.equal(graph, reduce)
    assert list(InferenceGraph(model).state_dict()) == [f"model.{k}" for k in model.state_dict()]
    with pytest.raises(ValueError, match="norm must be one of"):
        fast_logits(model, x, norm="layer")


def test_reduce_norm_is_group_norm_on_its_own() -> None:
    """The helper against torch's GroupNorm on an input whose channels have very different means and scales."""
    from lightmedseg.fast import graph as G

    x = torch.randn(2, 8, 6, 7, 5) * torch.arange(1, 9).view(1, 8, 1, 1, 1) + 3.0
    norm = torch.nn.GroupNorm(4, 8)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    token = G._NORM_FORM.set("reduce")
    try:
        got = G._group_norm(x, 4, norm.weight, norm.bias, norm.eps)
    finally:
        G._NORM_FORM.reset(token)
    assert torch.allclose(got, norm(x), atol=1e-5)
