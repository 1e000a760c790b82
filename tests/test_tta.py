"""Test-time augmentation views: each is undone exactly by its inverse, the sets are what they claim, and a
window's prediction is the mean over the views."""

from __future__ import annotations

import pytest
import torch

from lightmedseg.inference import tta as T
from lightmedseg.inference.options import TTA_PASSES
from lightmedseg.inference.predictor import PredictionError, Predictor
from lightmedseg.config import load_config


@pytest.mark.parametrize("mode", [None, "mirror", "rot90"])
def test_every_view_is_undone_by_its_inverse_and_views_differ(mode) -> None:
    x = torch.randn(1, 2, 4, 6, 6)
    views = T.views(mode)
    assert len(views) == (TTA_PASSES[mode] if mode else 1)
    seen = []
    for transform, inverse in views:
        y = transform(x)
        torch.testing.assert_close(inverse(y), x, rtol=0, atol=0)
        assert not any(torch.equal(y, s) for s in seen)  # no view twice
        seen.append(y)


def test_rot90_keeps_the_slice_axis_and_mirror_flips_it() -> None:
    x = torch.arange(2 * 3 * 3, dtype=torch.float32).reshape(1, 1, 2, 3, 3)
    for transform, _ in T.views("rot90"):  # every in-plane view keeps each slice's content in its slice
        y = transform(x)
        assert [set(y[0, 0, z].flatten().tolist()) for z in range(2)] == [set(x[0, 0, z].flatten().tolist()) for z in range(2)]
    assert any(torch.equal(t(x), torch.flip(x, (2,))) for t, _ in T.views("mirror"))


def test_a_window_is_the_mean_of_its_views() -> None:
    # A forward that is not equivariant (it adds a ramp along W): the window's logits must equal the mean
    # of inverse(forward(transform(x))) over the views, computed here independently.
    ramp = torch.linspace(0, 1, 32).view(1, 1, 1, 1, 32)

    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([-x[:, :1], x[:, :1] + ramp, x[:, :1] * 0, x[:, :1] * 0], dim=1)

    cfg = load_config("demo", overrides=["infer.roi_size=[32,32,32]", "model.in_channels=1", "model.num_classes=4"])
    x = torch.randn(1, 1, 32, 32, 32)
    for mode in ("mirror", "rot90"):
        predictor = Predictor(cfg, forward, tta=mode)
        expected = torch.stack([inv(forward(tr(x))) for tr, inv in T.views(mode)]).mean(0)
        torch.testing.assert_close(predictor._window(x), expected)
    torch.testing.assert_close(Predictor(cfg, forward, tta=False)._window(x), forward(x))


@pytest.mark.parametrize("views_per_call", [1, 3, 8, 16])
def test_views_stacked_into_one_call_give_the_same_window(views_per_call) -> None:
    # Two windows at once (sw_batch_size 2); a per-sample forward that is not equivariant, and records its calls.
    ramp = torch.linspace(0, 1, 32).view(1, 1, 1, 32, 1)
    calls: list[int] = []

    def forward(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return torch.cat([x * 2, x + ramp, x.square(), -x], dim=1)

    cfg = load_config("demo", overrides=["infer.roi_size=[32,32,32]", "model.in_channels=1", "model.num_classes=4"])
    x = torch.randn(2, 1, 32, 32, 32)
    expected = torch.stack([inv(forward(tr(x))) for tr, inv in T.views("rot90")]).mean(0)
    calls.clear()
    got = Predictor(cfg, forward, tta="rot90", views_per_call=views_per_call)._window(x)
    torch.testing.assert_close(got, expected)
    per_call = min(views_per_call, 8)
    assert calls == [2 * per_call] * (8 // per_call) + ([2 * (8 % per_call)] if 8 % per_call else [])


@pytest.mark.parametrize("value,expected", [(None, None), (False, None), (True, "mirror"), ("rot90", "rot90")])
def test_tta_mode_spellings(value, expected) -> None:
    assert T.tta_mode(value) == expected


def test_views_per_call_must_be_positive() -> None:
    cfg = load_config("demo", overrides=["infer.roi_size=[32,32,32]"])
    with pytest.raises(PredictionError, match="views per engine call"):
        Predictor(cfg, lambda x: x, tta="rot90", views_per_call=0)
