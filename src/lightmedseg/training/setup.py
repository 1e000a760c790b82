"""Run set-up that depends on the dataset: the train/validation split and the dataset-derived config.

``config["labels"]``, ``regions``, ``channel_names`` and the geometry come from ``dataset.json`` so a run
folder is self-describing: predict writes the dataset's label values without seeing the dataset. The
model's ``in_channels``/``num_classes`` are filled from it when the config leaves them out; a config (preset
or ``--set``) that states other values is refused, naming the ``--set`` that matches the dataset.
"""

from __future__ import annotations

import copy
from pathlib import Path

from lightmedseg.data import labels as L
from lightmedseg.data.layout import list_cases, load_dataset_json

DEFAULT_VAL_FRACTION = 0.2


def _positive_int(config: dict, section: str, key: str, default: object = None) -> None:
    value = config.get(section, {}).get(key, default)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"config {section}.{key}={value!r}: expected a positive integer")


def check_train_config(config: dict) -> None:
    """Check the settings a run needs before anything is written, so a typo never leaves a half-made run folder.

    Checked: ``data.patch_size`` (and ``infer.roi_size``) 3 positive multiples of the network's
    :func:`~lightmedseg.model.network.size_divisors` (16 for the paper's strides), positive integer
    ``train.batch_size``/``epochs``/``iterations_per_epoch``/``val_every``, ``train.amp`` one of the
    choices, a numeric ``train.optimizer.lr`` > 0, and sections that are mappings.
    """
    from lightmedseg.training.runtime import AMP_CHOICES

    from lightmedseg.model.network import size_divisors

    for section in ("model", "data", "train", "infer"):
        if not isinstance(config.get(section, {}), dict):
            raise ValueError(f"config {section}: expected a section of key: value settings, got {config[section]!r}")
    try:
        divisors = size_divisors(config.get("model", {}))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"config model.strides={config.get('model', {}).get('strides')!r}: {exc}") from None
    for section, key in (("data", "patch_size"), ("infer", "roi_size")):
        size = config.get(section, {}).get(key)
        if size is None and section == "infer":
            continue
        if (not isinstance(size, (list, tuple)) or len(size) != 3
                or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 or s % m for s, m in zip(size, divisors))):
            raise ValueError(f"config {section}.{key}={size!r}: expected 3 positive multiples of {list(divisors)} "
                             f"(d, h, w; the network's strides), e.g. {[2 * m for m in divisors]}")
    for key in ("batch_size", "epochs", "iterations_per_epoch", "val_every"):
        _positive_int(config, "train", key)
    amp = config.get("train", {}).get("amp", "auto")
    if not (amp in (None, False, True) or str(amp).lower() in AMP_CHOICES + ("off", "false")):
        raise ValueError(f"config train.amp={amp!r}: expected one of {list(AMP_CHOICES)}")
    optimizer = config.get("train", {}).get("optimizer")
    lr = optimizer.get("lr") if isinstance(optimizer, dict) else None
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or lr <= 0):
        raise ValueError(f"config train.optimizer.lr={lr!r}: expected a number > 0")


def config_for_dataset(config: dict, data_dir: str | Path) -> dict:
    """A copy of ``config`` with ``labels``, ``regions`` (and model in/out channels where the config leaves
    them out) from ``dataset.json``; the settings are checked first (:func:`check_train_config`), and model
    in/out channels that differ from the dataset's are refused (a DataError with the ``--set`` to use)."""
    from lightmedseg.training.loader import check_model_matches_dataset

    check_train_config(config)
    meta = load_dataset_json(data_dir)
    check_model_matches_dataset(data_dir, meta, config)
    out = copy.deepcopy(config)
    out.setdefault("model", {})
    out["model"].setdefault("in_channels", len(meta["channel_names"]))
    out["model"].setdefault("num_classes", len(L.label_values(meta)))
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


def training_split(data_dir: str | Path, split_file: str | Path | None, fold: int | None, seed: int) -> dict:
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
