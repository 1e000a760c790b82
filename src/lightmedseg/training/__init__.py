"""Training of LightMedSeg with the paper's recipe (Section 3.7 loss, Section 4 optimiser and schedule).

Modules: :mod:`.loss` (Eq. 22), :mod:`.optim` (AdamW + warm-up/cosine), :mod:`.checkpointing` (atomic,
resumable state), :mod:`.trainer` (the loop, validation, DDP, logging) and :mod:`.plots` (curves).
The Python entry point is :func:`lightmedseg.training.trainer.train`.
"""

from __future__ import annotations

from typing import Any


def train(*args: Any, **kwargs: Any) -> dict:
    """Lazy alias of :func:`lightmedseg.training.trainer.train` (keeps ``import lightmedseg.training`` light)."""
    from lightmedseg.training.trainer import train as _train

    return _train(*args, **kwargs)
