"""Run set-up that depends on the dataset: the train/validation split and the dataset-derived config.

The model's ``in_channels``/``num_classes`` and ``config["labels"]`` come from ``dataset.json`` so a run
folder is self-describing: predict writes the dataset's label values without seeing the dataset.
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

from lightmedseg.data import labels as L
from lightmedseg.data.layout import list_cases, load_dataset_json

DEFAULT_VAL_FRACTION = 0.2


def config_for_dataset(config: dict, data_dir: str | Path) -> dict:
    """A copy of ``config`` with model in/out channels, ``labels`` and ``regions`` from ``dataset.json``."""
    meta = load_dataset_json(data_dir)
    out = copy.deepcopy(config)
    out.setdefault("model", {})
    out["model"]["in_channels"] = len(meta["channel_names"])
    out["model"]["num_classes"] = len(L.label_values(meta))
    out["labels"] = dict(meta["labels"])
    out["regions"] = L.regions(meta)
    out["label_convention"] = L.convention(meta)
    out["channel_names"] = [meta["channel_names"][k] for k in sorted(meta["channel_names"], key=int)]
    return out


def default_split(case_ids: list[str], seed: int, val_fraction: float = DEFAULT_VAL_FRACTION) -> dict:
    """Seeded random hold-out: ``val_fraction`` of the cases (at least one when there are two or more)."""
    ids = sorted(case_ids)
    rng = random.Random(seed)
    rng.shuffle(ids)
    n_val = max(1, round(len(ids) * val_fraction)) if len(ids) >= 2 else 0
    return {"train": sorted(ids[n_val:]), "validation": sorted(ids[:n_val]), "test": []}


def resolve_split(data_dir: str | Path, split_file: str | Path | None, fold: int | None, seed: int) -> dict:
    """The case IDs to train and validate on: from ``split_file`` (and ``fold``) or a seeded default."""
    available = list_cases(data_dir, "Tr")
    if not available:
        raise ValueError(f"{data_dir}: no training cases in imagesTr")
    if split_file is None:
        if fold is not None:
            raise ValueError("--fold needs --split FILE (a cross-validation split file)")
        return default_split(available, seed)
    try:
        from lightmedseg.data.splits import read_split
    except ImportError:  # splits module not available in this build: read the plain JSON form
        split = _read_plain_split(Path(split_file), fold)
    else:
        split = read_split(split_file, fold=fold)
    missing = sorted(set(split.get("train", [])) - set(available))
    if missing:
        raise ValueError(f"{split_file}: training cases not found in {data_dir}/imagesTr: {missing[:5]}")
    if not split.get("train"):
        raise ValueError(f"{split_file}: the split has no training cases")
    split["validation"] = [c for c in split.get("validation", []) if c in set(available)]
    return split


def _read_plain_split(path: Path, fold: int | None) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read split file ({exc})") from None
    if isinstance(data, list):  # nnU-Net splits_final.json: a list of folds with train/val
        if fold is None or not 0 <= fold < len(data):
            raise ValueError(f"{path}: holds {len(data)} folds; pass --fold 0..{len(data) - 1}")
        data = {"train": data[fold]["train"], "validation": data[fold]["val"]}
    if not isinstance(data, dict) or "train" not in data:
        raise ValueError(f"{path}: expected a JSON object with 'train' and 'validation' lists")
    return {"train": list(data["train"]), "validation": list(data.get("validation", [])),
            "test": list(data.get("test", []))}
