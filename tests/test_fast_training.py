"""The training fast path: same autograd semantics, gradients to the same parameters, for every variant."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from lightmedseg.fast import FastTrainForward, fast_train_forward

from test_fast_equivalence import VARIANTS, make_model


def _grads(model: torch.nn.Module, forward, x: torch.Tensor, y: torch.Tensor) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    loss = F.cross_entropy(forward(x), y)
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("final_transposed_conv", [False, True])
@pytest.mark.parametrize("variant", VARIANTS)
def test_gradients_match_reference(variant: str, final_transposed_conv: bool) -> None:
    model = make_model(variant, final_transposed_conv=final_transposed_conv).train()
    x = torch.randn(2, 4, 32, 32, 32)
    y = torch.randint(0, 4, (2, 32, 32, 32))
    loss_ref, g_ref = _grads(model, model, x, y)
    loss_fast, g_fast = _grads(model, fast_train_forward(model), x, y)
    assert loss_fast == pytest.approx(loss_ref, rel=1e-5)
    assert g_fast.keys() == g_ref.keys()
    # every parameter the reference trains gets a gradient through the fast path too
    assert len(g_ref) == sum(1 for p in model.parameters() if p.requires_grad)
    for name, g in g_ref.items():
        scale = g.abs().max().item() + 1e-12
        assert torch.allclose(g_fast[name], g, rtol=1e-3, atol=1e-4 * scale), name


def test_wrapper_exposes_the_same_parameters() -> None:
    model = make_model("ghost")
    wrapper = fast_train_forward(model)
    assert isinstance(wrapper, FastTrainForward)
    assert [id(p) for p in wrapper.parameters()] == [id(p) for p in model.parameters()]
    assert {k.removeprefix("model.") for k in wrapper.state_dict()} == set(model.state_dict())


def test_short_run_follows_the_reference_loss_curve() -> None:
    """Same data, same seed: a few SGD steps through either path give the same losses."""
    x = torch.randn(2, 4, 32, 32, 32)
    y = torch.randint(0, 4, (2, 32, 32, 32))
    curves = []
    for fast in (False, True):
        model = make_model("ghost").train()
        forward = fast_train_forward(model) if fast else model
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        losses = []
        for _ in range(4):
            opt.zero_grad()
            loss = F.cross_entropy(forward(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        curves.append(losses)
    assert curves[1] == pytest.approx(curves[0], rel=1e-3)
    assert curves[0][-1] < curves[0][0]  # the run actually trains
