"""An exponential moving average of the network's weights (``train.ema_decay``), for validation and the model files.

Issue 28: the raw network's validation swings by 1-2 points from one check to the next, and the shipped ``acdc``
gained from averaging the weights of two checkpoints. An EMA of the weights, updated after every optimiser step,
is that averaging done during training. It is kept by PyTorch's own :class:`torch.optim.swa_utils.AveragedModel`;
only the decay rule is ours: ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates (the warm-up of TensorFlow's
``ExponentialMovingAverage(num_updates=...)``), so the average starts from recent weights instead of the random
initialisation and covers about the last tenth of the steps until ``decay`` caps it.

The raw weights stay what the optimiser trains and what ``checkpoint_last.pt`` resumes; the average is stored
beside them (key ``ema``). Validation, ``model_best`` / ``model_last`` and snapshots use the average.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

WARMUP_OFFSET = 10  # the decay after n updates is at most (1 + n) / (WARMUP_OFFSET + n)


def warmed_decay(decay: float, updates: int) -> float:
    """The decay applied at update ``updates`` (0-based): ``decay``, lowered while few updates have been made."""
    return min(decay, (1.0 + updates) / (WARMUP_OFFSET + updates))


class WeightAverage:
    """The moving average of ``model``'s parameters (LightMedSeg normalises with GroupNorm: no statistics to recompute)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"train.ema_decay must be in (0, 1) (e.g. 0.999) or null for no average, got {decay}")
        self.decay = float(decay)

        def lerp(averaged: list[torch.Tensor], current: list[torch.Tensor], updates: torch.Tensor) -> None:
            weight = 1.0 - warmed_decay(self.decay, int(updates))
            torch._foreach_lerp_(averaged, current, weight)

        # Buffers (batch-norm statistics of a peer network; LightMedSeg has none) follow the raw model:
        # with use_buffers=False, update_parameters copies them (tests/test_train_ema.py checks it).
        self.averaged = AveragedModel(model, multi_avg_fn=lerp, use_buffers=False)

    @property
    def updates(self) -> int:
        """How many optimiser steps the average has seen."""
        return int(self.averaged.n_averaged)

    def update(self, model: nn.Module) -> None:
        """Fold the weights after an optimiser step into the average (the first update copies them)."""
        self.averaged.update_parameters(model)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The average's weights and update count, on the CPU (the ``ema`` entry of a training checkpoint)."""
        return {k: v.detach().cpu() for k, v in self.averaged.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.averaged.load_state_dict(state)

    @property
    def network(self) -> nn.Module:
        """The averaged network: a copy of ``model`` holding the average (what the model files are written from)."""
        return self.averaged.module

    def weights(self) -> dict[str, torch.Tensor]:
        """The averaged network's state dict, with ``model``'s own keys."""
        return self.network.state_dict()

    @contextmanager
    def applied_to(self, model: nn.Module) -> Iterator[nn.Module]:
        """Put the averaged weights into ``model`` for the duration (validation), then the raw ones back.

        In place, so every wrapper of ``model`` (the fast path, DDP) sees them without being rebuilt.
        """
        raw = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.weights())
        try:
            yield model
        finally:
            model.load_state_dict(raw)
