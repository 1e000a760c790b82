"""Model files: weights as ``state_dict`` plus the full JSON config, loadable without pickle.

Two on-disk forms, both readable by :func:`load_model`:

* ``*.safetensors`` – weights only, with the config JSON in the safetensors metadata under
  ``"lightmedseg_config"`` (what we ship and what ``export``/``predict`` prefer);
* ``*.pt`` – a training checkpoint written by :mod:`lightmedseg.training`, a dict with at least
  ``"model"`` (state_dict) and ``"config_json"`` (str), loadable with ``torch.load(weights_only=True)``.

A run folder resolves to ``model.safetensors`` (the model ``lightmedseg finalize`` chose), else
``model_best.safetensors``, ``checkpoint_best.pt``, ``model_last.safetensors`` or ``checkpoint_last.pt``
(first that exists); a bare name resolves to a model shipped in
``lightmedseg/pretrained/NAME`` (see :data:`SHIPPED_MODELS_DIR`). A local folder of the same name never
shadows a shipped model silently (:func:`shipped_model_choice`).
"""

from __future__ import annotations

import json
import pickle
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from lightmedseg.config import ConfigError, load_stored_config
from lightmedseg.io_utils import atomic_path
from lightmedseg.model.factory import build_model

CONFIG_KEY = "lightmedseg_config"  # the config JSON in safetensors metadata and ONNX metadata_props
CHECKPOINT_CONFIG_KEY = "config_json"  # the config JSON in a training checkpoint (.pt)
SHIPPED_MODELS_DIR = Path(str(resources.files("lightmedseg") / "pretrained"))
# The model files of a run folder (written by lightmedseg.training.checkpointing and .finalize); named once here.
FINAL_MODEL = "model.safetensors"  # written by lightmedseg finalize: the run's chosen model
MODEL_BEST = "model_best.safetensors"
CHECKPOINT_BEST = "checkpoint_best.pt"
MODEL_LAST = "model_last.safetensors"
CHECKPOINT_LAST = "checkpoint_last.pt"
RUN_DIR_CANDIDATES = (FINAL_MODEL, MODEL_BEST, CHECKPOINT_BEST, MODEL_LAST, CHECKPOINT_LAST)  # -m RUN: first found


class CheckpointError(ValueError):
    """A model file that is missing, truncated or not a LightMedSeg checkpoint."""


def save_model(path: str | Path, model: torch.nn.Module, config: dict) -> Path:
    """Write ``model``'s weights and ``config`` to ``path`` (``.safetensors``), atomically."""
    path = Path(path)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(state, str(tmp), metadata={CONFIG_KEY: json.dumps(config)})
    return path


def _holds_model(path: Path) -> bool:
    return path.is_file() or any((path / name).exists() for name in RUN_DIR_CANDIDATES)


def shipped_model_choice(source: str | Path) -> tuple[str | Path, str | None]:
    """``(source to use, note for the log)`` for a bare name that is a shipped model *and* a local path.

    ``acdc`` in a folder that holds a dataset folder ``acdc`` (what ``convert acdc-h5 ... acdc`` makes): the
    shipped model's folder, with a note saying so. A local ``acdc`` that holds a model too: a
    :class:`CheckpointError` naming both and how to pick one (``./acdc``, or the shipped folder's path).
    Anything else (a path with a separator such as ``./acdc``, a name that is not shipped, or no local
    path of that name) is returned as it is, with no note.
    """
    text = str(source)
    if not text or text in (".", "..") or any(sep and sep in text for sep in ("/", "\\")):
        return source, None
    shipped = SHIPPED_MODELS_DIR / text
    local = Path(text)
    if not shipped.is_dir() or not local.exists():
        return source, None
    if _holds_model(local):
        kind = "folder holding a model" if local.is_dir() else "file"
        raise CheckpointError(
            f"-m {text}: both a local {kind} ./{text} and the shipped model {text} exist; pass -m ./{text} for the "
            f"local one, or -m {shipped} for the shipped one"
        )
    return shipped, f"./{text} here holds no model, so -m {text} is the shipped model {text}"


def resolve_model_path(source: str | Path) -> Path:
    """Turn a run folder, file or shipped-model name into a concrete model file path."""
    source, _ = shipped_model_choice(source)
    path = Path(source)
    if path.is_dir():
        for name in RUN_DIR_CANDIDATES:
            if (path / name).exists():
                return path / name
        raise CheckpointError(
            f"{path}: no model file in this folder (looked for {', '.join(RUN_DIR_CANDIDATES)})"
        )
    if path.is_file():
        return path
    shipped = SHIPPED_MODELS_DIR / str(source)
    if shipped.is_dir():
        return resolve_model_path(shipped)
    names = sorted(p.name for p in SHIPPED_MODELS_DIR.glob("*") if p.is_dir()) if SHIPPED_MODELS_DIR.exists() else []
    raise CheckpointError(f"{source}: no such file, run folder or shipped model (shipped: {names or 'none'})")


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """Return ``(state_dict, config, extra)`` from a model file; ``extra`` is the rest of a .pt checkpoint."""
    path = Path(path)
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
            state = load_file(str(path))
        except (SafetensorError, OSError, RuntimeError) as exc:
            raise CheckpointError(f"{path}: cannot read safetensors file ({exc})") from None
        if CONFIG_KEY not in meta:
            raise CheckpointError(f"{path}: safetensors file has no '{CONFIG_KEY}' metadata")
        return state, _parse_config(meta[CONFIG_KEY], path), {}
    try:
        blob = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only load failed" in str(exc).lower():  # torch refused a pickle that would run code
            raise CheckpointError(f"{path}: refused as unsafe: {unsafe_reason(exc)}; it was not loaded. Use a "
                                  "model file from a source you trust (.safetensors holds no code)") from None
        raise CheckpointError(f"{path}: not a readable checkpoint (UnpicklingError: {str(exc).splitlines()[0][:200]}); "
                              "it may be truncated or corrupt - use another model file or checkpoint") from None
    except Exception as exc:  # torch raises many types for truncated/corrupt zips
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
            "it may be truncated or corrupt - use another model file or checkpoint"
        ) from None
    if not isinstance(blob, dict) or "model" not in blob or CHECKPOINT_CONFIG_KEY not in blob:
        raise CheckpointError(f"{path}: not a LightMedSeg checkpoint (expected keys 'model' and '{CHECKPOINT_CONFIG_KEY}')")
    extra = {k: v for k, v in blob.items() if k not in ("model", CHECKPOINT_CONFIG_KEY)}
    return blob["model"], _parse_config(blob[CHECKPOINT_CONFIG_KEY], path), extra


def unsafe_reason(exc: Exception) -> str:
    """What torch's weights-only loader refused, from its long message (the 'Unsupported global' line)."""
    for line in str(exc).splitlines():
        line = line.strip()
        if "unsupported global" in line.lower() or "unsupported operand" in line.lower():
            return "it holds Python objects that run code when loaded (" + line.rstrip(".")[:160] + ")"
    return "it holds Python objects that run code when loaded, which lightmedseg never unpickles"


def _parse_config(text: object, path: Path) -> dict:
    """The stored config JSON of a model file as a dict, else a CheckpointError naming the file."""
    try:
        config = json.loads(text) if isinstance(text, (str, bytes)) else None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: stored config is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: stored config is not a JSON object with 'model', 'data' and 'infer' sections")
    try:
        return load_stored_config(config)
    except ConfigError as exc:
        raise CheckpointError(f"{path}: stored {exc}") from None


def load_model(source: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """Load a model (eval mode) and its config from a run folder, model file or shipped name."""
    path = resolve_model_path(source)
    state, config, _ = read_checkpoint(path)
    if not isinstance(config.get("model"), dict):
        raise CheckpointError(f"{path}: stored config has no 'model' section (expected the network settings)")
    try:
        model = build_model(config)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: stored config does not describe a model ({type(exc).__name__}: {exc})") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match the stored config ({str(exc)[:300]})") from None
    return model.to(device).eval(), config
