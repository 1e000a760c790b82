"""Training checkpoints: full resumable state in a pickle-free ``.pt`` file, written atomically.

A checkpoint is a dict of tensors and plain Python scalars/lists/dicts only, so it loads with
``torch.load(weights_only=True)`` (and through :func:`lightmedseg.checkpoint.read_checkpoint`):

``model`` (state_dict), ``config_json`` (str), ``optimizer``, ``scheduler``, ``scaler`` (state dicts),
``rng`` (list, one entry per rank: python/numpy/torch[/cuda] generator states as tensors),
``step`` (optimiser steps done), ``epoch`` (epoch being run), ``step_in_epoch`` (batches of that epoch
already consumed, for an exact mid-epoch resume), ``best_metric``, ``best_epoch``, ``format_version``, and
with ``train.ema_decay`` the weight average ``ema`` (:mod:`lightmedseg.training.ema`; ``model`` stays the raw weights).

Files are written as temp file + fsync + rename (:func:`lightmedseg.io_utils.atomic_path`), so a process
killed at any moment - even with SIGKILL during the write - leaves the previous complete checkpoint.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lightmedseg.checkpoint import (
    CHECKPOINT_BEST,
    CHECKPOINT_CONFIG_KEY,
    CHECKPOINT_LAST,
    MODEL_BEST,
    MODEL_LAST,
    CheckpointError,
    read_checkpoint,
    save_model,
)
from lightmedseg.io_utils import atomic_path, write_failure

FORMAT_VERSION = 1
LAST, BEST = CHECKPOINT_LAST, CHECKPOINT_BEST  # the run folder's file names: lightmedseg.checkpoint
RUN_CONFIG = "config.yaml"  # the run's config as trained (the same dict is stored in each checkpoint)
RUN_SPLIT = "split.json"  # the run's train/validation case IDs
SNAPSHOTS = "snapshots"  # train.snapshots: one weights file per validated model, named by its step
REQUIRED_KEYS = ("optimizer", "scheduler", "scaler", "rng", "step", "epoch", "step_in_epoch")


def capture_rng_state() -> dict[str, Any]:
    """This process's python, numpy and torch (CPU and CUDA) generator states as tensors + scalars."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {"version": int(py_version), "state": torch.tensor(py_state, dtype=torch.int64),
                   "gauss": py_gauss},
        "numpy": {"name": str(np_name), "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
                  "pos": int(np_pos), "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()  # this process's current device
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["name"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["gauss"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu())


def save_training_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (must hold ``model`` and ``config``) atomically as a weights-only-loadable .pt file."""
    path = Path(path)
    blob = {k: v for k, v in state.items() if k != "config"}
    blob[CHECKPOINT_CONFIG_KEY] = json.dumps(state["config"])
    blob["format_version"] = FORMAT_VERSION
    with atomic_path(path, suffix=".pt") as tmp:
        try:
            torch.save(blob, str(tmp))
        except RuntimeError as exc:  # torch reports a failed write (a full disk) as one or two RuntimeErrors
            raise write_failure(path, exc) from None
    return path


def load_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_training_checkpoint`; clear CheckpointError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint (nothing to resume from)")
    model_state, config, extra = read_checkpoint(path)
    missing = [k for k in REQUIRED_KEYS if k not in extra]
    if missing:
        raise CheckpointError(
            f"{path}: holds weights but not a resumable training state (missing {missing}); "
            "start a new run, or load it as a model with -m"
        )
    return {"model": model_state, "config": config, **extra}


def snapshot_path(run_dir: Path, step: int) -> Path:
    """Where ``train.snapshots`` keeps the model validated at ``step`` (sorted by name = by step)."""
    return run_dir / SNAPSHOTS / f"model_step{step:07d}.safetensors"


def save_run_checkpoint(run_dir: Path, state: dict[str, Any], model: torch.nn.Module, best: bool,
                        snapshot: bool = False) -> None:
    """Write ``checkpoint_last.pt`` + ``model_last.safetensors`` (and the ``_best`` pair when ``best``).

    ``snapshot``: also keep these weights as :func:`snapshot_path`, so that a model other than the
    trainer's choice can be selected afterwards (e.g. with TTA and post-processing, which validation
    during training leaves out for time) or several can be averaged.
    """
    save_training_checkpoint(run_dir / LAST, state)
    save_model(run_dir / MODEL_LAST, model, state["config"])
    if best:
        save_training_checkpoint(run_dir / BEST, state)
        save_model(run_dir / MODEL_BEST, model, state["config"])
    if snapshot:
        save_model(snapshot_path(run_dir, int(state["step"])), model, state["config"])
