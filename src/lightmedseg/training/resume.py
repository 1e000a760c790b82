"""Where a run starts from: the config, split, training state and weights of a resumed or a new run.

A resumed run continues with the config stored in ``checkpoint_last.pt``; only its budget keys
(:data:`RESUME_OVERRIDABLE`) may be changed. A new run gets the dataset's settings
(:func:`~lightmedseg.training.setup.config_for_dataset`) and, with ``--init-weights``, the weights of a
model whose network matches its own (or a default-reading model for a ``final_transposed_conv`` run,
mapped by :mod:`lightmedseg.model.readings`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Collection

import torch

from lightmedseg.checkpoint import CheckpointError, read_checkpoint, resolve_model_path
from lightmedseg.config import ConfigError, load_stored_config, typed_config, validate_config
from lightmedseg.io_utils import json_plain
from lightmedseg.model import LightMedSeg
from lightmedseg.model.network import DEFAULT_ARCHITECTURE
from lightmedseg.model.readings import to_final_transposed_conv
from lightmedseg.training import checkpointing as C
from lightmedseg.training.setup import config_for_dataset, training_split

# train.* keys a resumed run takes from the new config instead of the checkpoint's (budget, not recipe).
RESUME_OVERRIDABLE = ("epochs", "val_every", "num_workers", "progress", "tensorboard", "val_max_cases", "device",
                      "dist_timeout_minutes", "snapshots")
# Keys that describe the machine, not the run: a preset's value never counts as a change on resume.
RESUME_MACHINE_KEYS = {("train", "device"), ("train", "num_workers"), ("train", "progress"), ("data", "cache_dir"),
                       ("data", "cache")}
# Constructor options that only set initial values: weights loaded over them make them irrelevant.
INIT_ONLY_KEYS = ("upsample_init", "spb_zero_init", "film_identity_init")


@dataclass
class RunStart:
    """What :func:`lightmedseg.training.trainer.train` starts from."""

    config: dict
    split: dict
    state: dict | None = None  # the training state of a resumed run
    weights: dict[str, torch.Tensor] | None = None  # --init-weights of a new run


def merge_resumed_config(stored: dict, given: dict | None, explicit: Collection[str] | None = None,
                         where: str = "the run") -> dict:
    """The checkpoint's config, with the budget keys (RESUME_OVERRIDABLE) the user set explicitly applied.

    ``explicit``: the ``train.*`` keys set explicitly (``--set``, ``--device``); None: every budget key of
    ``given['train']``. Any other key of ``given`` (e.g. from ``--preset demo`` given with ``--resume``) must
    agree with the stored value: a resumed run never changes its stored schedule silently. Differences are
    refused as a ConfigError naming each key, its stored and its given value, and the ``--set`` that applies it.
    """
    out = dict(stored)
    out["train"] = dict(stored.get("train", {}))
    given_train = (given or {}).get("train", {})
    chosen = set(given_train) if explicit is None else {k.removeprefix("train.") for k in explicit}
    for key in RESUME_OVERRIDABLE:
        if key in given_train and key in chosen:
            out["train"][key] = given_train[key]
    changed = [(f"{section}.{key}", old, new) for section, key, old, new in _differences(_with_defaults(stored),
                                                                                         given or {})
               if not (section == "train" and key in chosen and key in RESUME_OVERRIDABLE)]
    if changed:
        detail = ", ".join(f"{k} {old!r} -> {new!r}" for k, old, new in changed[:6])
        budget = [k for k, _, _ in changed if k.removeprefix("train.") in RESUME_OVERRIDABLE]
        raise ConfigError(
            f"{where}: --resume continues with the stored settings, but the preset given changes {detail}; "
            "drop --preset to resume as stored"
            + (f", or apply a budget change explicitly with --set ({', '.join(f'{k}=...' for k in budget)})"
               if budget else "")
            + ("; other keys cannot change on resume (start a new run)" if len(budget) < len(changed) else ""))
    return out


def _with_defaults(stored: dict) -> dict:
    """``stored`` completed with today's schema defaults, for comparison only: a key added to the schema after the
    run was stored (e.g. ``train.loss.class_emphasis``) counts as its default, not as a change on resume."""
    try:
        return load_stored_config(stored)
    except (ConfigError, ValueError, TypeError):
        return stored  # compared as stored; the run's own checks name what is wrong


def _differences(stored: dict, given: dict) -> list[tuple[str, str, object, object]]:
    """(section, key, stored, given) for every key of a ``given`` section whose value differs from the stored one
    (mappings compared on the sub-keys ``given`` names; machine settings and the preset's name left out)."""
    def same(old: object, new: object) -> bool:
        if isinstance(old, dict) and isinstance(new, dict):
            return all(k in old and same(old[k], v) for k, v in new.items())
        return json_plain(old) == json_plain(new)

    out = []
    for section in ("model", "data", "train"):
        old_sec, new_sec = stored.get(section, {}) or {}, given.get(section, {}) or {}
        for key, new in new_sec.items():
            if (section, key) in RESUME_MACHINE_KEYS or key not in old_sec:
                continue
            if not same(old_sec[key], new):
                out.append((section, key, old_sec[key], new))
    return out


def network_keys(model_cfg: dict) -> dict:
    """A model section with every constructor default filled in (LightMedSeg), initialisation keys removed,
    so that two configs compare equal exactly when they build the same network."""
    cfg = dict(model_cfg)
    if cfg.get("architecture", DEFAULT_ARCHITECTURE) == DEFAULT_ARCHITECTURE:
        try:
            cfg = dict(LightMedSeg(**cfg).config)
        except (TypeError, ValueError):
            pass  # an invalid section: compare it as written, the error names the keys
    return {k: v for k, v in cfg.items() if k not in INIT_ONLY_KEYS}


def initial_weights(source: str | Path, config: dict) -> tuple[dict[str, torch.Tensor], Path]:
    """The weights in ``source`` and the file they came from, for a new run; the networks must match."""
    path = resolve_model_path(source)
    weights, stored, _ = read_checkpoint(path)
    mine, theirs = network_keys(typed_config(config).model), network_keys(stored.get("model", {}))
    differing = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    if differing == ["final_transposed_conv"] and mine["final_transposed_conv"]:  # the faster reading
        print(f"--init-weights: {path.name} is in the default reading of Section 3.6; its last decoder stage "
              "is mapped to final_transposed_conv (lightmedseg.model.readings) and fine-tuned from there",
              file=sys.stderr)
        return to_final_transposed_conv(weights), path
    if differing:
        detail = ", ".join(f"{k}: run {mine.get(k)!r} vs weights {theirs.get(k)!r}" for k in differing[:6])
        raise CheckpointError(f"{path}: --init-weights come from a different network ({detail}); "
                                "use the same preset/variant, or start without them")
    return weights, path


def run_start(config: dict | None, data_dir: Path, run_dir: Path, split: str | Path | None, fold: int | None,
              resume: bool, init_weights: str | Path | None, explicit: Collection[str] | None = None) -> RunStart:
    """Resume ``run_dir`` (``resume`` and a ``checkpoint_last.pt`` there) or set up a new run; nothing is written.

    ``config`` is checked against the schema and completed with its defaults for a new run; for a resumed
    run only its budget keys count (see :func:`merge_resumed_config`).
    """
    last = run_dir / C.LAST
    if resume and last.exists():
        state = C.load_training_checkpoint(last)
        config = merge_resumed_config(state["config"], config, explicit, where=str(last))
        split_ids = state.get("split") or training_split(data_dir, split, fold, typed_config(config).train.seed)
        return RunStart(config, split_ids, state=state)
    if last.exists():
        raise FileExistsError(f"{run_dir} already holds a run ({C.LAST}); pass --resume to continue it "
                              "or choose another --out")
    if config is None or (resume and "model" not in config):  # only budget keys: nothing to start from
        raise ValueError(f"nothing to resume in {run_dir}; give a --preset to start a new run")
    config = config_for_dataset(validate_config(config), data_dir)
    split_ids = training_split(data_dir, split, fold, typed_config(config).train.seed)
    weights = None
    if init_weights is not None:
        weights, source = initial_weights(init_weights, config)
        config["train"]["init_weights"] = str(source)
    return RunStart(config, split_ids, weights=weights)
