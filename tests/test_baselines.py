"""MONAI baselines are built from the same config keys as LightMedSeg."""

from __future__ import annotations

import pytest
import torch

from lightmedseg.model.factory import build_model
from lightmedseg.config import load_config
from lightmedseg.model import LightMedSeg


@pytest.mark.parametrize("arch", ["unet", "segresnet"])
def test_baseline_from_config(arch: str) -> None:
    cfg = load_config("acdc", overrides=[f"model.architecture={arch}"])
    model = build_model(cfg).eval()
    assert not isinstance(model, LightMedSeg)
    with torch.no_grad():
        y = model(torch.randn(1, 1, 16, 32, 32))
    assert y.shape == (1, 4, 16, 32, 32)


def test_default_architecture_is_lightmedseg() -> None:
    assert isinstance(build_model(load_config("demo")), LightMedSeg)


def test_unknown_architecture_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown model.architecture 'vnet'"):
        build_model(load_config("demo", overrides=["model.architecture=vnet"]))
