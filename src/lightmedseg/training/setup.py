"""Run set-up that depends on the dataset: the train/validation split and the dataset-derived config.

The model's ``in_channels``/``num_classes`` and ``config["labels"]`` come from ``dataset.json`` so a run
folder is self-describing: predict writes the dataset's label values without seeing the dataset.
"""

from __future__ import annotations

import copy
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
    # and the training images' median spacing and orientation, which predict checks inputs against
    from lightmedseg.inference.geometry import dataset_geometry_of

    geometry = dataset_geometry_of(data_dir)
    if geometry is not None:
        out["geometry"] = geometry
    return out


def default_split(case_ids: list[str], seed: int, val_fraction: float = DEFAULT_VAL_FRACTION) -> dict:
    """Seeded hold-out of ``val_fraction`` of the patients (both ACDC frames of a patient stay together)."""
    from lightmedseg.data.splits import random_split

    return random_split(sorted(case_ids), (1.0 - val_fraction, val_fraction, 0.0), seed=seed)


def resolve_split(data_dir: str | Path, split_file: str | Path | None, fold: int | None, seed: int) -> dict:
    """The case IDs to train and validate on: from ``split_file`` (path or shipped name, and ``fold``)
    or a seeded default; patient IDs in the file are expanded to the dataset's cases."""
    from lightmedseg.data.splits import read_split

    available = list_cases(data_dir, "Tr")
    if not available:
        raise ValueError(f"{data_dir}: no training cases in imagesTr")
    if split_file is None:
        if fold is not None:
            raise ValueError("--fold needs --split FILE (a cross-validation split file)")
        return default_split(available, seed)
    split = read_split(split_file, fold=fold, case_ids=available)
    if not split.get("train"):
        raise ValueError(f"{split_file}: the split has no training cases")
    return split
