"""Run set-up that depends on the dataset: the train/validation split and the dataset-derived config.

The config's ``labels``, ``regions``, ``channel_names`` and the geometry come from ``dataset.json`` so a run
folder is self-describing: predict writes the dataset's label values without seeing the dataset. The
model's ``in_channels``/``num_classes`` are filled from it when the config leaves them out; a config (preset
or ``--set``) that states other values is refused, naming the ``--set`` that matches the dataset.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Mapping

from lightmedseg.config import Config, typed_config

from lightmedseg.data import labels as L
from lightmedseg.data.layout import list_cases, load_dataset_json

DEFAULT_VAL_FRACTION = 0.2


def check_train_config(config: Mapping | Config) -> None:
    """Check the settings a run needs before anything is written, so a typo never leaves a half-made run folder.

    Types and unknown keys are the schema's (:func:`~lightmedseg.config.typed_config`, a ConfigError); here the
    ranges: ``data.patch_size`` (and ``infer.roi_size``) 3 positive multiples of the network's
    :func:`~lightmedseg.model.network.size_divisors` (16 for the paper's strides), positive
    ``train.batch_size``/``epochs``/``iterations_per_epoch``/``val_every``, ``train.amp`` one of the
    choices, ``train.optimizer.lr`` > 0.
    """
    from lightmedseg.training.runtime import AMP_CHOICES

    from lightmedseg.model.network import size_divisors

    cfg = typed_config(config)
    try:
        divisors = size_divisors(cfg.model)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"config model.strides={cfg.model.get('strides')!r}: {exc}") from None
    for key, size in (("data.patch_size", cfg.data.patch_size), ("infer.roi_size", cfg.infer.roi_size)):
        if size is None and key == "infer.roi_size":
            continue
        if len(size) != 3 or any(s < 1 or s % m for s, m in zip(size, divisors)):
            raise ValueError(f"config {key}={size!r}: expected 3 positive multiples of {list(divisors)} "
                             f"(d, h, w; the network's strides), e.g. {[2 * m for m in divisors]}")
    for key in ("batch_size", "epochs", "iterations_per_epoch", "val_every"):
        if (value := getattr(cfg.train, key)) < 1:
            raise ValueError(f"config train.{key}={value!r}: expected a positive integer")
    amp = cfg.train.amp
    if not (amp in (None, False, True) or str(amp).lower() in AMP_CHOICES + ("off", "false")):
        raise ValueError(f"config train.amp={amp!r}: expected one of {list(AMP_CHOICES)}")
    if cfg.train.optimizer.lr <= 0:
        raise ValueError(f"config train.optimizer.lr={cfg.train.optimizer.lr!r}: expected a number > 0")


def config_for_dataset(config: Mapping | Config, data_dir: str | Path) -> dict:
    """A copy of ``config`` with ``labels``, ``regions`` (and model in/out channels where the config leaves
    them out) from ``dataset.json``; the settings are checked first (:func:`check_train_config`), and model
    in/out channels that differ from the dataset's are refused (a DataError with the ``--set`` to use)."""
    from lightmedseg.training.loader import check_model_matches_dataset

    cfg = copy.deepcopy(typed_config(config))
    check_train_config(cfg)
    meta = load_dataset_json(data_dir)
    check_model_matches_dataset(data_dir, meta, cfg)
    model = dict(cfg.model)
    model.setdefault("in_channels", len(meta["channel_names"]))
    model.setdefault("num_classes", len(L.label_values(meta)))
    cfg.model = model
    cfg.labels = dict(meta["labels"])
    cfg.regions = L.regions(meta)
    cfg.label_convention = L.convention(meta)
    cfg.channel_names = [meta["channel_names"][k] for k in sorted(meta["channel_names"], key=int)]
    # and the training images' median spacing and orientation, which predict checks inputs against
    from lightmedseg.inference.geometry import dataset_geometry_of

    geometry = dataset_geometry_of(data_dir)
    if geometry is not None:
        cfg.geometry = geometry
    return cfg.to_dict()


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
