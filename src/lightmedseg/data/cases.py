"""One case of a canonical dataset, read and preprocessed for the network (training, validation, tests).

The per-case half of the old ``data/dataset.py``; the random patch loader lives in
:mod:`lightmedseg.training.loader`.
"""

from __future__ import annotations

import os
from typing import Mapping

from lightmedseg.config import Config, DataConfig, typed_section
from lightmedseg.data import labels as L
from lightmedseg.data.errors import DataError
from lightmedseg.data.io import read_image_channels, read_label
from lightmedseg.data.layout import case_files, load_dataset_json
from lightmedseg.data.preprocess import preprocess_case


def data_section(config: Mapping | Config | DataConfig) -> DataConfig:
    """The typed ``data`` section of a full config, or of ``config`` itself when it is one already
    (a mapping without a ``data`` key); checked, absent keys read as the schema's defaults."""
    if isinstance(config, Config):
        return config.data
    raw = config.get("data", config) if isinstance(config, Mapping) else config
    return typed_section("data", raw, DataConfig)


def load_preprocessed_case(dataset_dir: str | os.PathLike, case_id: str, config: Mapping | Config | DataConfig,
                           subset: str = "Tr") -> dict:
    """One case ready for the network: ``image`` (C, z, y, x) float32 (cropped, normalised),
    ``label`` (z, y, x) int64 class indices or None, ``info`` (PreprocessInfo), ``geometry`` (of the
    original files, for writing predictions back) and ``case_id``."""
    meta = load_dataset_json(dataset_dir)
    images, label_file = case_files(dataset_dir, case_id, subset)
    image, geometry = read_image_channels(images)
    label = None
    if label_file is not None:
        label, lgeom = read_label(label_file)
        if not lgeom.matches(geometry):
            raise DataError(f"{label_file}: label geometry (shape {lgeom.shape}) differs from its image "
                            f"{images[0]} (shape {geometry.shape})")
    image, label, info = preprocess_case(image, label, data_section(config))
    if label is not None:
        label = L.values_to_indices(label, L.label_values(meta), str(label_file))
    return {"image": image, "label": label, "info": info, "geometry": geometry, "case_id": case_id}


__all__ = ["data_section", "load_preprocessed_case"]
