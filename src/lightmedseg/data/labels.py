"""Label conventions, modality order and evaluation regions, defined in one place.

Canonical conventions (what a converted ``dataset.json`` declares in ``label_convention``):

* ``brats``: 0 background, 1 NCR (necrotic / non-enhancing tumour core), 2 ED (peritumoral oedema),
  3 NET (non-enhancing tumour, kept separate only in BraTS 2013-2015 data), 4 ET (enhancing tumour).
  This is the BraTS 2013-2021 value scheme; every release maps into it without loss (see
  :data:`BRATS_SOURCE_MAPS`). Regions: WT = {1,2,3,4}, TC = {1,3,4}, ET = {4}.
  Channel order: T1, T1ce, T2, FLAIR (a dataset may hold a subset, in this relative order).
* ``acdc``: 0 background, 1 RV cavity, 2 Myo, 3 LV cavity. Regions RV, Myo, LV. One channel (cine MRI).
* ``generic``: whatever ``labels`` declares; one region per foreground label.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from lightmedseg.data.errors import DataError

BRATS_MODALITIES: tuple[str, ...] = ("T1", "T1ce", "T2", "FLAIR")
BRATS_LABELS: dict[str, int] = {"background": 0, "NCR": 1, "ED": 2, "NET": 3, "ET": 4}
# Value -> value maps from each release's label scheme to the canonical one (lossless, injective).
BRATS_SOURCE_MAPS: dict[str, dict[int, int]] = {
    "brats2015": {0: 0, 1: 1, 2: 2, 3: 3, 4: 4},  # 1 necrosis, 2 oedema, 3 non-enhancing, 4 enhancing
    "brats2021": {0: 0, 1: 1, 2: 2, 4: 4},  # 2017-2021: 1 NCR/NET, 2 ED, 4 ET
    "brats2023": {0: 0, 1: 1, 2: 2, 3: 4},  # 2023 (GLI): 1 NCR, 2 ED, 3 ET
    "msd": {0: 0, 1: 2, 2: 1, 3: 4},  # MSD Task01: 1 oedema, 2 non-enhancing tumour, 3 enhancing
}
BRATS_REGIONS: dict[str, list[int]] = {"WT": [1, 2, 3, 4], "TC": [1, 3, 4], "ET": [4]}

ACDC_MODALITIES: tuple[str, ...] = ("cineMRI",)
ACDC_LABELS: dict[str, int] = {"background": 0, "RV": 1, "Myo": 2, "LV": 3}
ACDC_REGIONS: dict[str, list[int]] = {"RV": [1], "Myo": [2], "LV": [3]}

CONVENTIONS = ("brats", "acdc", "generic")
# The sidecar predict writes beside its label maps (value -> name), read back by evaluate and statistics.
LABELS_JSON = "labels.json"


def brats_labels_for(source: str) -> dict[str, int]:
    """The canonical ``labels`` entry of dataset.json for data converted from ``source``."""
    present = set(BRATS_SOURCE_MAPS[source].values())
    return {name: v for name, v in BRATS_LABELS.items() if v in present}


def label_values(dataset_json: Mapping) -> list[int]:
    """Sorted label values declared in ``dataset_json['labels']``; network output index i <-> value i."""
    labels = dataset_json.get("labels")
    if not isinstance(labels, Mapping) or not labels:
        raise DataError("dataset.json: 'labels' must be a non-empty mapping of name -> integer value")
    values = []
    for name, v in labels.items():
        if isinstance(v, bool) or not isinstance(v, int):
            raise DataError(
                f"dataset.json: label {name!r} has value {v!r}; expected one integer "
                "(nnU-Net region lists are not supported)"
            )
        values.append(v)
    if len(set(values)) != len(values):
        raise DataError(f"dataset.json: label values {values} are not unique")
    if 0 not in values:
        raise DataError("dataset.json: 'labels' must declare background with value 0")
    return sorted(values)


def convention(dataset_json: Mapping) -> str:
    """The declared label convention (``brats``, ``acdc`` or ``generic``; default ``generic``)."""
    conv = dataset_json.get("label_convention", "generic")
    if conv not in CONVENTIONS:
        raise DataError(f"dataset.json: unknown label_convention {conv!r}; expected one of {CONVENTIONS}")
    return conv


def regions(dataset_json: Mapping) -> dict[str, list[int]]:
    """Evaluation regions as lists of label values: WT/TC/ET, RV/Myo/LV, or one per foreground label."""
    values = set(label_values(dataset_json))
    conv = convention(dataset_json)
    table = {"brats": BRATS_REGIONS, "acdc": ACDC_REGIONS}.get(conv)
    if table is None:
        names = {v: n for n, v in dataset_json["labels"].items()}
        return {names[v]: [v] for v in sorted(values) if v != 0}
    out = {}
    for name, members in table.items():
        kept = [v for v in members if v in values]
        if kept:
            out[name] = kept
    return out


def check_channel_order(dataset_json: Mapping) -> None:
    """Reject BraTS datasets whose channels are not in the canonical T1, T1ce, T2, FLAIR order."""
    if convention(dataset_json) != "brats":
        return
    names = [dataset_json["channel_names"][k] for k in sorted(dataset_json["channel_names"], key=int)]
    positions = [BRATS_MODALITIES.index(n) if n in BRATS_MODALITIES else -1 for n in names]
    if -1 in positions or positions != sorted(positions):
        raise DataError(
            f"dataset.json: BraTS channels {names} must be a subset of {list(BRATS_MODALITIES)} in that order"
        )


def remap_values(label: np.ndarray, mapping: Mapping[int, int], source: str) -> np.ndarray:
    """Map label values through ``mapping``; any value without an entry is an error naming ``source``."""
    present = np.unique(label)
    unknown = [int(v) for v in present if int(v) not in mapping]
    if unknown:
        raise DataError(
            f"{source}: label values {unknown} are outside the declared set {sorted(mapping)}"
        )
    lut = np.zeros(int(max(max(mapping), present.max(initial=0))) + 1, dtype=np.int16)
    for k, v in mapping.items():
        lut[k] = v
    return lut[label]


def values_to_indices(label: np.ndarray, values: list[int], source: str = "label") -> np.ndarray:
    """Dataset label values -> contiguous class indices 0..N-1 (in the order of ``values``)."""
    return remap_values(label, {v: i for i, v in enumerate(values)}, source).astype(np.int64)


def indices_to_values(indices: np.ndarray, values: list[int]) -> np.ndarray:
    """Class indices 0..N-1 -> dataset label values (inverse of :func:`values_to_indices`)."""
    return np.asarray(values, dtype=np.int16)[np.asarray(indices, dtype=np.int64)]
