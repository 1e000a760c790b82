"""The network factory: a config's ``model`` section -> an ``nn.Module`` (LightMedSeg or a MONAI baseline).

The one place that turns ``model.architecture`` into a network; checkpoints, training, benchmarks and tests
build every network through :func:`build_model`.
"""

from __future__ import annotations

from typing import Mapping

import torch

from lightmedseg.config import Config, typed_config
from lightmedseg.model.network import DEFAULT_ARCHITECTURE, LightMedSeg


def build_model(config: Mapping | Config) -> torch.nn.Module:
    """Instantiate the network described by the config's ``model`` section (a config dict or :class:`Config`).

    ``model.architecture`` selects LightMedSeg (default) or a MONAI baseline (see :mod:`lightmedseg.model.baselines`).
    """
    cfg = typed_config(config)
    model_cfg = dict(cfg.model)
    architecture = model_cfg.pop("architecture", DEFAULT_ARCHITECTURE)
    if architecture == DEFAULT_ARCHITECTURE:
        return LightMedSeg(**model_cfg)
    from lightmedseg.model.baselines import build_baseline

    return build_baseline(architecture, model_cfg, tuple(int(r) for r in cfg.window))


__all__ = ["build_model"]
