"""Model cards: what a model is for, its inputs, training geometry, labels and validation scores.

A card is ``card.json`` beside the weights (every shipped model has one). Its ``geometry`` and ``labels``
fill in a config that lacks them (models trained before training recorded its geometry); what the config
stored with the weights says always wins.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

from lightmedseg.checkpoint import SHIPPED_MODELS_DIR, CheckpointError, resolve_model_path
from lightmedseg.io_utils import read_json_object

CARD_NAME = "card.json"


def load_card(source: str | os.PathLike) -> dict:
    """The card of a model (run folder, model file or shipped name); ``{}`` when it has none."""
    if str(source).endswith(".onnx"):
        folder = Path(source).parent
    else:
        try:
            folder = resolve_model_path(source).parent
        except CheckpointError:
            return {}
    card = folder / CARD_NAME
    if not card.is_file():
        return {}
    return read_json_object(card, "the model card's fields (task, channels, labels, geometry)", error=CheckpointError)


def with_card(config: dict, source: str | os.PathLike) -> dict:
    """``config`` with ``geometry`` (and ``labels``) taken from the model's card where the config has none."""
    card = load_card(source)
    missing = [k for k in ("geometry", "labels") if k in card and k not in config]
    if not missing:
        return config
    out = copy.deepcopy(config)
    for key in missing:
        out[key] = copy.deepcopy(card[key])
    return out


def shipped_models() -> dict[str, dict]:
    """Every shipped model's name -> card (``{}`` for a model without a card)."""
    if not SHIPPED_MODELS_DIR.is_dir():
        return {}
    return {p.name: load_card(p) for p in sorted(SHIPPED_MODELS_DIR.iterdir()) if p.is_dir()}


__all__ = ["CARD_NAME", "load_card", "with_card", "shipped_models"]
