"""Label names from the ``labels.json`` sidecar that ``lightmedseg predict`` writes beside its outputs.

The sidecar maps label value -> name (``{"0": "background", "1": "RV", "2": "Myo", "3": "LV"}``). Turned into
a ``dataset.json``-style ``labels`` mapping (name -> value) with the label convention its names spell
(``acdc`` for RV/Myo/LV, ``brats`` for the BraTS names at their canonical values, else ``generic``), so
``evaluate`` shows classes and regions by name without a dataset.json.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from lightmedseg.data import labels as L
from lightmedseg.data.errors import DataError
from lightmedseg.io_utils import read_json_object


def is_sidecar(mapping: Mapping) -> bool:
    """True for a value -> name mapping (every key an integer string), as ``labels.json`` holds."""
    return bool(mapping) and all(str(k).lstrip("-").isdigit() and isinstance(v, str) for k, v in mapping.items())


def sidecar_convention(labels: Mapping[str, int]) -> str:
    """``acdc``/``brats`` when ``labels`` (name -> value) are that convention's names at its values, else ``generic``."""
    fg = {n: v for n, v in labels.items() if v != 0}
    if fg == {n: v for n, v in L.ACDC_LABELS.items() if v != 0}:
        return "acdc"
    if fg and all(L.BRATS_LABELS.get(n) == v for n, v in fg.items()):
        return "brats"
    return "generic"


def dataset_json_from_sidecar(mapping: Mapping, source: str | os.PathLike) -> dict:
    """A ``dataset.json``-like dict (``labels``, ``label_convention``) from a value -> name mapping."""
    if not is_sidecar(mapping):
        raise DataError(f"{source}: expected label value -> name pairs such as {{\"1\": \"RV\"}}")
    labels = {str(name): int(value) for value, name in mapping.items()}
    if len(labels) != len(mapping):
        raise DataError(f"{source}: label names are not unique: {sorted(mapping.values())}")
    labels.setdefault("background", 0)
    return {"labels": labels, "label_convention": sidecar_convention(labels)}


def find_sidecar(*folders: str | os.PathLike) -> Path | None:
    """The first ``labels.json`` in ``folders`` (the prediction folder first), or None."""
    for folder in folders:
        candidate = Path(folder) / L.LABELS_JSON
        if candidate.is_file():
            return candidate
    return None


def read_sidecar(path: str | os.PathLike, error: type[ValueError] = DataError) -> dict:
    """:func:`dataset_json_from_sidecar` of the file at ``path``."""
    mapping = read_json_object(Path(path), "label value -> name pairs", error)
    try:
        return dataset_json_from_sidecar(mapping, path)
    except DataError as exc:
        raise error(str(exc)) from None


__all__ = ["is_sidecar", "sidecar_convention", "dataset_json_from_sidecar", "find_sidecar", "read_sidecar"]
