"""Model cards: what a model is for, its inputs, training geometry, labels and validation scores.

A card is ``card.json`` beside the weights (every shipped model has one). Its ``geometry`` and ``labels``
fill in a config that lacks them (models trained before training recorded its geometry); what the config
stored with the weights says always wins.

A card may name an ensemble: ``"ensemble": {"members": ["model_best.safetensors", "member_2.safetensors"]}``
(files beside the card, the first being the file the folder resolves to). Prediction from the folder or the
shipped name then averages the members' softmax (:func:`ensemble_members`); a member file given by its path
is one model, and the tools that need one network (``load_model``, ``export``) take the first.

Exported models carry their card: ``lightmedseg export`` embeds :func:`embedded_card` (name, channels,
labels, training geometry, TTA mode, post-processing) in an ONNX file's ``metadata_props``
(:data:`ONNX_CARD_KEY`) or an OpenVINO IR's ``rt_info`` (:data:`IR_CARD_PATH`), beside the config, and
:func:`load_card` reads it back, so ``predict -m model.xml`` applies the card as ``-m acdc`` does.
"""

from __future__ import annotations

import copy
import functools
import json
import os
from pathlib import Path

from lightmedseg.checkpoint import SHIPPED_MODELS_DIR, CheckpointError, resolve_model_path, shipped_model_choice
from lightmedseg.io_utils import read_json_object

CARD_NAME = "card.json"
# Where exported models keep their config and card (written by the exporters, read by the backends and here).
# ONNX metadata_props keys: the config under checkpoint.CONFIG_KEY (the key of the safetensors metadata too), the card here.
ONNX_CARD_KEY = "lightmedseg_card"
IR_CONFIG_PATH, IR_CARD_PATH = ["lightmedseg", "config"], ["lightmedseg", "card"]  # OpenVINO rt_info paths
EXPORTED_SUFFIXES = (".onnx", ".xml")
# The card fields an export carries: what prediction applies (labels, geometry, TTA, post-processing) and
# what names the model; validation tables and notes stay in the card.json of the source.
EMBEDDED_FIELDS = ("name", "task", "channels", "labels", "geometry")
EMBEDDED_SECTIONS = {"predict": ("tta",), "postprocess": ("keep_largest", "require_contact")}


def embedded_card(card: dict) -> dict:
    """The part of ``card`` that an export embeds (see :data:`EMBEDDED_FIELDS`, :data:`EMBEDDED_SECTIONS`)."""
    out = {k: copy.deepcopy(card[k]) for k in EMBEDDED_FIELDS if k in card}
    for section, keys in EMBEDDED_SECTIONS.items():
        part = {k: copy.deepcopy(v) for k, v in (card.get(section) or {}).items() if k in keys}
        if part:
            out[section] = part
    return out


def describe_card(card: dict) -> str:
    """One line naming what a card makes prediction do (for ``export``'s report)."""
    if not card:
        return "none (the model has no card.json): the file carries its config only; predicting from it runs one pass, without post-processing"
    parts = []
    tta = (card.get("predict") or {}).get("tta")
    parts.append(f"TTA {tta}" if tta else "no TTA")
    post = card.get("postprocess") or {}
    largest = post.get("keep_largest")
    if largest:
        parts.append("largest component of " + ("every label" if largest is True else ", ".join(map(str, largest))))
    for label, anchors in (post.get("require_contact") or {}).items():
        parts.append(f"{label} must touch {', '.join(map(str, anchors))}")
    if card.get("labels"):
        parts.append("labels " + " ".join(f"{v}={k}" for k, v in sorted(card["labels"].items(), key=lambda kv: kv[1])))
    spacing = (card.get("geometry") or {}).get("spacing")
    if spacing:
        parts.append(f"training spacing {' x '.join(f'{s:g}' for s in spacing)} mm (z, y, x)")
    return "; ".join(parts)


@functools.lru_cache(maxsize=16)
def _read_embedded(path: str, stamp: tuple[int, int]) -> dict | None:
    """The card embedded in an exported file (``None`` when it carries none); ``stamp`` keys the cache."""
    if path.endswith(".onnx"):
        import onnx

        try:
            proto = onnx.load(path, load_external_data=False)
        except Exception:  # not readable: the backend that loads it says why
            return None
        text = {p.key: p.value for p in proto.metadata_props}.get(ONNX_CARD_KEY)
    else:
        import openvino as ov

        try:
            model = ov.Core().read_model(path)
        except Exception:  # OpenVINO raises RuntimeError subclasses; the backend that loads it says why
            return None
        text = model.get_rt_info(IR_CARD_PATH).astype(str) if model.has_rt_info(IR_CARD_PATH) else None
    if text is None:
        return None
    card = json.loads(text)
    return card if isinstance(card, dict) else None


def exported_card(path: str | os.PathLike) -> dict | None:
    """The card embedded in an exported ``.onnx`` / ``.xml`` file; ``None`` when it has none (or is not one)."""
    path = Path(path)
    if path.suffix not in EXPORTED_SUFFIXES or not path.is_file():
        return None
    st = path.stat()
    card = _read_embedded(str(path.resolve()), (st.st_mtime_ns, st.st_size))
    return copy.deepcopy(card) if card is not None else None


def load_card(source: str | os.PathLike) -> dict:
    """The card of a model (run folder, model file or shipped name); ``{}`` when it has none.

    An exported ``.onnx`` / ``.xml`` file: the card embedded in it (:func:`exported_card`), else a
    ``card.json`` beside it.
    """
    if Path(source).suffix in EXPORTED_SUFFIXES:
        embedded = exported_card(source)
        if embedded is not None:
            return embedded
        folder = Path(source).parent
    else:
        try:
            folder = resolve_model_path(source).parent
        except CheckpointError:  # a folder holding no model file may still hold a card (score-checkpoints --models)
            if not Path(source).is_dir():
                return {}
            folder = Path(source)
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
    source, _ = shipped_model_choice(source)
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


__all__ = ["CARD_NAME", "ONNX_CARD_KEY", "IR_CONFIG_PATH", "IR_CARD_PATH", "embedded_card",
           "describe_card", "exported_card", "load_card", "with_card", "model_folder", "ensemble_members", "shipped_models"]
