"""Model cards: what a model is for, its inputs, training geometry, labels and validation scores.

A card is ``card.json`` beside the weights (every shipped model has one). Its ``geometry`` and ``labels``
fill in a config that lacks them (models trained before training recorded its geometry); what the config
stored with the weights says always wins.

A card may name an ensemble: ``"ensemble": {"members": ["model_best.safetensors", "member_2.safetensors"]}``
(files beside the card, the first being the file the folder resolves to). Prediction from the folder or the
shipped name then averages the members' softmax (:func:`ensemble_members`); a member file given by its path
is one model, and the tools that need one network (``load_model``, ``export``) take the first.
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


def model_folder(source: str | os.PathLike) -> Path | None:
    """The folder a run folder or shipped name stands for; ``None`` for a model file (it names one model)."""
    path = Path(source)
    if path.is_dir():
        return path
    if path.is_file():
        return None
    shipped = SHIPPED_MODELS_DIR / str(source)
    return shipped if shipped.is_dir() else None


def ensemble_members(source: str | os.PathLike) -> list[Path] | None:
    """The member files of the ensemble the card of a folder or shipped name names; ``None`` without one.

    Raises :class:`CheckpointError` naming the card when its ``ensemble.members`` is not a non-empty list of
    file names beside it, a member file is missing, or the first member is not the file the folder resolves to.
    """
    folder = model_folder(source)
    if folder is None or not (folder / CARD_NAME).is_file():
        return None
    card = load_card(folder)
    if "ensemble" not in card:
        return None
    where = folder / CARD_NAME
    members = (card["ensemble"] or {}).get("members") if isinstance(card["ensemble"], dict) else None
    if not isinstance(members, list) or not members or not all(isinstance(m, str) and m for m in members):
        raise CheckpointError(f"{where}: 'ensemble' must be {{\"members\": [model file names beside the card]}}, "
                              f"got {card['ensemble']!r}")
    paths = []
    for name in members:
        path = folder / name
        if Path(name).is_absolute() or path.resolve().parent != folder.resolve():
            raise CheckpointError(f"{where}: ensemble member {name!r} is not a file name beside the card")
        if not path.is_file():
            raise CheckpointError(f"{where}: ensemble member {name} does not exist in {folder}")
        paths.append(path)
    resolved = resolve_model_path(folder)
    if paths[0].name != resolved.name:  # load_model, export and --init-weights read the folder's file
        raise CheckpointError(f"{where}: the first ensemble member must be {resolved.name}, the file the folder "
                              f"resolves to (the one model that load_model and export take), not {paths[0].name}")
    return paths


def shipped_models() -> dict[str, dict]:
    """Every shipped model's name -> card (``{}`` for a model without a card)."""
    if not SHIPPED_MODELS_DIR.is_dir():
        return {}
    return {p.name: load_card(p) for p in sorted(SHIPPED_MODELS_DIR.iterdir()) if p.is_dir()}


__all__ = ["CARD_NAME", "load_card", "with_card", "model_folder", "ensemble_members", "shipped_models"]
