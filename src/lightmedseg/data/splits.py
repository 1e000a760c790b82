"""Train / validation / test splits as case-ID files.

A split file is JSON ``{"train": [...], "validation": [...], "test": [...]}`` (plus free-text keys
such as ``protocol`` and ``note``), or ``{"folds": [{"train": ..., "validation": ...}, ...]}`` for
k-fold cross-validation. Entries are case IDs; an entry may also be a *patient* ID
(``patient002``) standing for all its cases (both ACDC frames), expanded by :func:`expand_patient_ids`.

Shipped splits (``lightmedseg/splits/*.json``, see :func:`shipped_splits`):

* ``acdc_nnformer``: nnFormer's ACDC protocol, 70 / 10 / 20 patients; validation patients as listed
  in ../shared/data/README.md; test = the 20 patients of ACDC training set 001-100 that are absent
  from the WSL4MIS release (named by patient ID, since their frame numbers are not known here).
* ``brats_msd_nnformer`` (387 train / 24 validation / 73 test) and ``brats_msd_unetrpp`` (411 train /
  73 test) of MSD Task01 (BRATS_001..BRATS_484): the published case lists that nnFormer's BraTS
  trainer hard-codes (387 ``train``, 73 ``val``) and its dataset file's 24 ``test`` cases, also used
  by UNETR++ (provenance in each file's ``source`` key; built by :func:`msd_brats_published_splits`).
  ``brats_msd_nnformer`` implements the reading of nnFormer's *code*: train on the 387, report on the
  73 (our ``test``); the 24 serve as validation (checkpoint selection), so the reported 73 never pick
  a checkpoint. ``brats_msd_unetrpp`` is UNETR++'s and the LightMedSeg paper's "411 training and 73
  testing cases": train on 387 + 24, report on the 73. nnFormer's *paper* (80:15:5) would instead
  make the 73 validation and the 24 test; no file implements that reading.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from lightmedseg.data.errors import DataError
from lightmedseg.data.layout import patient_id
from lightmedseg.io_utils import read_json_object, write_json_atomic

SUBSETS = ("train", "validation", "test")
SPLIT_DIR = Path(str(resources.files("lightmedseg") / "splits"))
MSD_BRATS_CASES = [f"BRATS_{i:03d}" for i in range(1, 485)]


def shipped_splits() -> list[str]:
    """Names of the split files shipped with the package."""
    return sorted(p.stem for p in SPLIT_DIR.glob("*.json"))


def _split_path(path_or_name: str | os.PathLike) -> Path:
    path = Path(path_or_name)
    if path.is_file():
        return path
    shipped = SPLIT_DIR / f"{path_or_name}.json"
    if shipped.is_file():
        return shipped
    raise DataError(f"{path}: split file not found (nor a shipped split; choose one of {shipped_splits()})")


def _check_subsets(split: Mapping, where: str) -> dict[str, list[str]]:
    out = {}
    for name in SUBSETS:
        ids = split.get(name, [])
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise DataError(f"{where}: '{name}' must be a list of case-ID strings")
        out[name] = list(ids)
    seen: dict[str, str] = {}
    for name, ids in out.items():
        for i in ids:
            if i in seen:
                raise DataError(f"{where}: case {i!r} appears in both '{seen[i]}' and '{name}'")
            seen[i] = name
    return out


def expand_patient_ids(split: Mapping[str, list[str]], case_ids: Iterable[str],
                       required: Sequence[str] = ("train", "validation")) -> dict[str, list[str]]:
    """Expand patient-ID entries to the matching ``case_ids`` and check the ``required`` subsets.

    Every entry of a required subset must be a known case or patient; entries of other subsets that
    match nothing are kept unchanged (e.g. ACDC test patients absent from a partial release).
    """
    case_ids = list(case_ids)
    known = set(case_ids)
    by_patient: dict[str, list[str]] = {}
    for c in case_ids:
        by_patient.setdefault(patient_id(c), []).append(c)
    out = {}
    for name in SUBSETS:
        ids: list[str] = []
        missing = []
        for entry in split.get(name, []):
            if entry in known:
                ids.append(entry)
            elif entry in by_patient:
                ids.extend(sorted(by_patient[entry]))
            else:
                missing.append(entry)
                if name not in required:
                    ids.append(entry)
        if missing and name in required:
            raise DataError(f"split '{name}': {len(missing)} entries are not in the dataset, e.g. {missing[:5]}")
        out[name] = ids
    return out


def read_split(path: str | os.PathLike, fold: int | None = None,
               case_ids: Iterable[str] | None = None) -> dict[str, list[str]]:
    """Read a split file (path or shipped name) -> ``{"train", "validation", "test"}`` lists.

    ``fold`` selects one fold of a k-fold file (required for those, refused otherwise). With
    ``case_ids`` (the dataset's cases) patient IDs are expanded and train/validation are checked.
    """
    path = _split_path(path)
    data = read_json_object(path, "train/validation/test or folds", DataError)
    if "folds" in data:
        folds = data["folds"]
        if fold is None:
            raise DataError(f"{path}: holds {len(folds)} folds; choose one with fold=0..{len(folds) - 1}")
        if not 0 <= fold < len(folds):
            raise DataError(f"{path}: fold {fold} does not exist (0..{len(folds) - 1})")
        split = _check_subsets(folds[fold], f"{path} fold {fold}")
    else:
        if fold is not None:
            raise DataError(f"{path}: is a single split, not a k-fold file; do not pass a fold")
        split = _check_subsets(data, str(path))
    return split if case_ids is None else expand_patient_ids(split, case_ids)


def _groups(case_ids: Sequence[str], group_fn: Callable[[str], str]) -> list[list[str]]:
    groups: dict[str, list[str]] = {}
    for c in sorted(set(case_ids)):
        groups.setdefault(group_fn(c), []).append(c)
    return [groups[g] for g in sorted(groups)]


def kfold_splits(case_ids: Sequence[str], k: int = 5, seed: int = 0,
                 group_fn: Callable[[str], str] = patient_id) -> list[dict[str, list[str]]]:
    """k folds grouped by patient: all cases of a patient fall in the same validation fold."""
    groups = _groups(case_ids, group_fn)
    if k < 2 or k > len(groups):
        raise DataError(f"k-fold needs 2 <= k <= number of patients ({len(groups)}), got k={k}")
    order = np.random.default_rng(seed).permutation(len(groups))
    folds = []
    for f in range(k):
        val = sorted(c for i in order[f::k] for c in groups[i])
        train = sorted(c for c in case_ids if c not in set(val))
        folds.append({"train": train, "validation": val, "test": []})
    return folds


def random_split(case_ids: Sequence[str], fractions: Sequence[float] = (0.7, 0.1, 0.2), seed: int = 0,
                 group_fn: Callable[[str], str] = patient_id) -> dict[str, list[str]]:
    """Seeded train/validation/test split by patient with the given fractions (rounded per patient)."""
    if len(fractions) != 3 or min(fractions) < 0 or not np.isclose(sum(fractions), 1.0):
        raise DataError(f"fractions must be three non-negative numbers summing to 1, got {list(fractions)}")
    groups = _groups(case_ids, group_fn)
    order = np.random.default_rng(seed).permutation(len(groups))
    n_train = int(round(fractions[0] * len(groups)))
    n_val = int(round(fractions[1] * len(groups)))
    parts = (order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:])
    return {name: sorted(c for i in idx for c in groups[i]) for name, idx in zip(SUBSETS, parts)}


def msd_brats_published_splits(lists: Mapping) -> dict[str, dict]:
    """The two shipped MSD-484 BraTS split files from the published lists ``{"source", "train", "val", "test"}``.

    ``lists`` is ../shared/splits/brats_msd_nnformer_lists.json (nnFormer's 387 ``train`` and 73 ``val``
    lists, its dataset file's 24 ``test`` list); the result maps file name -> file content.
    """
    train, val73, test24 = (sorted(lists[k]) for k in ("train", "val", "test"))
    if (len(train), len(val73), len(test24)) != (387, 73, 24) or \
            sorted(train + val73 + test24) != MSD_BRATS_CASES:
        raise DataError("the MSD BraTS lists must be 387 / 73 / 24 disjoint cases covering BRATS_001..BRATS_484")
    source = str(lists["source"])
    return {
        "brats_msd_nnformer": {
            "protocol": "MSD Task01 BraTS (484 cases), nnFormer's published case lists: 387 train / 24 validation / 73 test",
            "reading": "nnFormer's code: train on its 387 'train' cases and report on its 73 'val' cases (here "
                       "'test'); the 24 cases its dataset file lists as 'test' are the validation set here "
                       "(checkpoint selection), so the reported 73 never select a checkpoint. nnFormer's paper "
                       "(80:15:5) would make the 73 validation and the 24 test instead.",
            "source": source,
            "train": train, "validation": test24, "test": val73,
        },
        "brats_msd_unetrpp": {
            "protocol": "MSD Task01 BraTS (484 cases), UNETR++ published case lists: 411 train / 73 test",
            "reading": "UNETR++ and the LightMedSeg paper ('411 training and 73 testing cases'): train on "
                       "nnFormer's 387 'train' + 24 'test' cases, report on its 73 'val' cases (here 'test').",
            "source": source,
            "train": sorted(train + test24), "validation": [], "test": val73,
        },
    }


def write_split(path: str | os.PathLike, split: Mapping, **notes) -> None:
    """Write a split (or ``{"folds": [...]}``) atomically as JSON, with free-text ``notes`` first."""
    write_json_atomic(path, {**notes, **split})
