"""The network factory: a config's ``model`` section -> an ``nn.Module`` (LightMedSeg or a MONAI baseline).

The one place that turns ``model.architecture`` into a network; checkpoints, training, benchmarks and tests
build every network through :func:`build_model`.
"""

from __future__ import annotations

import torch

from lightmedseg.config import prediction_window
from lightmedseg.model.network import LightMedSeg


def build_model(config: dict) -> torch.nn.Module:
    """Instantiate the network described by ``config['model']``.

    ``model.architecture`` selects LightMedSeg (default) or a MONAI baseline (see :mod:`lightmedseg.model.baselines`).
    """
    model_cfg = dict(config["model"])
    architecture = model_cfg.pop("architecture", "lightmedseg")
    if architecture == "lightmedseg":
        return LightMedSeg(**model_cfg)
    from lightmedseg.model.baselines import build_baseline

    return build_baseline(architecture, model_cfg, tuple(int(r) for r in prediction_window(config)))


__all__ = ["build_model"]
