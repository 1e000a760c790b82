"""Shipped split files, patient-grouped k-fold and random splits, the split CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lightmedseg.cli.main import main
from lightmedseg.data import splits as S
from lightmedseg.data.layout import patient_id
from lightmedseg.data.synth import make_synthetic_dataset

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
ACDC_CASES = [f"patient{p:03d}_frame{f:02d}" for p in range(1, 31) for f in (1, 12)]


def test_acdc_nnformer_protocol():
    split = S.read_split("acdc_nnformer")
    pats = {k: {patient_id(c) for c in v} for k, v in split.items()}
    assert [len(pats[k]) for k in S.SUBSETS] == [70, 10, 20]
    assert len(split["train"]) == 140 and len(split["validation"]) == 20
    assert pats["validation"] == {f"patient{i:03d}" for i in (89, 90, 91, 93, 94, 96, 97, 98, 99, 100)}
    assert set.union(*pats.values()) == {f"patient{i:03d}" for i in range(1, 101)}
    assert not (pats["train"] & pats["validation"]) and not (pats["train"] & pats["test"])


def test_acdc_split_matches_shared_release():
    if not (SHARED / "acdc-wsl4mis").is_dir():
        pytest.skip(f"real data not available: {SHARED / 'acdc-wsl4mis'} is absent")
    cases = sorted(p.stem for p in (SHARED / "acdc-wsl4mis").glob("*.h5"))
    split = S.read_split("acdc_nnformer", case_ids=cases)
    assert sorted(split["train"] + split["validation"]) == cases
    assert all(c.startswith("patient") and "_frame" not in c for c in split["test"])  # absent, kept as IDs


def test_msd_splits_sizes_nesting_and_reproducible():
    nn, up = S.read_split("brats_msd_nnformer"), S.read_split("brats_msd_unetrpp")
    assert [len(nn[k]) for k in S.SUBSETS] == [387, 24, 73]
    assert [len(up[k]) for k in S.SUBSETS] == [411, 0, 73]
    assert sorted(nn["train"] + nn["validation"]) == up["train"] and nn["test"] == up["test"]
    assert len(set(nn["train"] + nn["validation"] + nn["test"])) == 484
    regenerated = S.msd_brats_splits()
    assert regenerated["brats_msd_nnformer"] == nn and regenerated["brats_msd_unetrpp"] == up


def test_patient_ids_expand_to_frames():
    split = S.resolve_split({"train": ["patient001"], "validation": ["patient002_frame12"], "test": ["patient999"]},
                            ACDC_CASES)
    assert split == {"train": ["patient001_frame01", "patient001_frame12"],
                     "validation": ["patient002_frame12"], "test": ["patient999"]}
    with pytest.raises(ValueError, match="not in the dataset"):
        S.resolve_split({"train": ["patient999"]}, ACDC_CASES)


def test_kfold_grouped_by_patient():
    folds = S.kfold_splits(ACDC_CASES, k=5, seed=3)
    vals = [set(f["validation"]) for f in folds]
    assert set.union(*vals) == set(ACDC_CASES) and sum(len(v) for v in vals) == len(ACDC_CASES)
    for f in folds:
        assert not {patient_id(c) for c in f["train"]} & {patient_id(c) for c in f["validation"]}
    assert S.kfold_splits(ACDC_CASES, k=5, seed=3) == folds
    with pytest.raises(ValueError, match="k-fold"):
        S.kfold_splits(ACDC_CASES[:4], k=5)


def test_random_split_by_patient():
    split = S.random_split(ACDC_CASES, (0.7, 0.1, 0.2), seed=1)
    assert [len({patient_id(c) for c in split[k]}) for k in S.SUBSETS] == [21, 3, 6]
    assert sorted(sum(split.values(), [])) == sorted(ACDC_CASES)


def test_read_split_errors(tmp_path):
    (tmp_path / "dup.json").write_text(json.dumps({"train": ["a"], "validation": ["a"]}))
    with pytest.raises(ValueError, match="appears in both"):
        S.read_split(tmp_path / "dup.json")
    S.write_split(tmp_path / "k.json", {"folds": S.kfold_splits(ACDC_CASES, 3)})
    with pytest.raises(ValueError, match="choose one with fold"):
        S.read_split(tmp_path / "k.json")
    assert S.read_split(tmp_path / "k.json", fold=2)["validation"]
    with pytest.raises(ValueError, match="not found"):
        S.read_split(tmp_path / "nope.json")


def test_split_cli(tmp_path):
    ds = make_synthetic_dataset(tmp_path / "ds", num_cases=4, seed=0, shape=(16, 16, 16))
    assert main(["split", str(ds), "--kfold", "2", "-o", str(tmp_path / "f.json")]) == 0
    assert len(json.loads((tmp_path / "f.json").read_text())["folds"]) == 2
    assert main(["split", str(ds), "--fractions", "0.5", "0.25", "0.25", "-o", str(tmp_path / "r.json")]) == 0
    assert S.read_split(tmp_path / "r.json", case_ids=[f"synth_{i:03d}" for i in range(4)])["train"]
    assert main(["split", str(ds), "--protocol", "acdc_nnformer", "-o", str(tmp_path / "x.json")]) == 2
    assert not (tmp_path / "x.json").exists()
