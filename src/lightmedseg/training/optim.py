"""Optimiser and learning-rate schedule of the paper's Section 4 (or nnU-Net's), built from the ``train`` section.

AdamW (lr 2e-4, weight decay 1e-5, betas 0.9/0.999) and a short linear warm-up followed by cosine annealing
(T_max = 100 epochs, eta_min = 1e-9), stepped once per **iteration** so the warm-up is smooth even when it
lasts one epoch. Epoch quantities are converted with ``train.iterations_per_epoch``. The schedule is
PyTorch's own ``LinearLR`` -> ``CosineAnnealingLR`` chained by ``SequentialLR``; after T_max the cosine
continues periodically (rises back towards the base lr), exactly as ``CosineAnnealingLR`` does when a run
is longer than T_max (300 epochs with T_max = 100 in the paper).

nnU-Net's recipe, for paired comparisons (issue 28): SGD with Nesterov momentum 0.99 and the ``poly`` schedule
``lr * (1 - t / T)^0.9`` (PyTorch's ``PolynomialLR``), T = ``t_max_epochs``; the lr stays at 0 after T. Both schedules count T from the
end of the warm-up.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, PolynomialLR, SequentialLR

from lightmedseg.config import TrainConfig, typed_section

# Warm-up starts at this fraction of the base lr (LinearLR needs a strictly positive start factor).
WARMUP_START_FACTOR = 1e-3


def build_optimizer(params: Iterable[torch.nn.Parameter], train_cfg: Mapping | TrainConfig) -> torch.optim.Optimizer:
    """AdamW or SGD+Nesterov from ``train.optimizer`` (fields and defaults: lightmedseg.config.OptimizerConfig)."""
    cfg = typed_section("train", train_cfg, TrainConfig).optimizer
    if cfg.lr <= 0:
        raise ValueError(f"train.optimizer.lr must be > 0, got {cfg.lr}")
    if cfg.name == "sgd":
        if not 0 <= cfg.momentum < 1:
            raise ValueError(f"train.optimizer.momentum must be in [0, 1), got {cfg.momentum}")
        return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay,  # type: ignore[arg-type]
                               momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    betas = tuple(float(b) for b in cfg.betas)
    if len(betas) != 2:
        raise ValueError(f"train.optimizer.betas: need two betas, got {list(betas)}")
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=betas)  # type: ignore[arg-type]


def build_scheduler(optimizer: torch.optim.Optimizer, train_cfg: Mapping | TrainConfig) -> LRScheduler:
    """Per-iteration warm-up + cosine or poly schedule from ``train.scheduler`` and ``train.iterations_per_epoch``."""
    train = typed_section("train", train_cfg, TrainConfig)
    cfg, iters = train.scheduler, train.iterations_per_epoch
    if iters < 1:
        raise ValueError(f"train.iterations_per_epoch must be >= 1, got {iters}")
    warmup = int(round(cfg.warmup_epochs * iters))
    t_max = max(1, int(round(cfg.t_max_epochs * iters)))
    if cfg.name == "poly":
        if cfg.exponent <= 0:
            raise ValueError(f"train.scheduler.exponent must be > 0, got {cfg.exponent}")
        decay: LRScheduler = PolynomialLR(optimizer, total_iters=t_max, power=cfg.exponent)
    else:
        decay = CosineAnnealingLR(optimizer, T_max=t_max, eta_min=cfg.eta_min)
    if warmup <= 0:
        return decay
    warm = LinearLR(optimizer, start_factor=WARMUP_START_FACTOR, end_factor=1.0, total_iters=warmup)
    return SequentialLR(optimizer, schedulers=[warm, decay], milestones=[warmup])
