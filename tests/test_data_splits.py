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


def test_msd_splits_are_the_published_lists_disjoint_and_cover_484():
    nn, up = S.read_split("brats_msd_nnformer"), S.read_split("brats_msd_unetrpp")
    assert [len(nn[k]) for k in S.SUBSETS] == [387, 24, 73]
    assert [len(up[k]) for k in S.SUBSETS] == [411, 0, 73]
    for split in (nn, up):  # disjoint (read_split checks it too) and covering BRATS_001..BRATS_484
        ids = [c for k in S.SUBSETS for c in split[k]]
        assert len(ids) == len(set(ids)) and sorted(ids) == S.MSD_BRATS_CASES
    assert sorted(nn["train"] + nn["validation"]) == up["train"] and nn["test"] == up["test"]
    # Spot checks against nnFormer's hard-coded lists (first val case 011, first dataset-file test case 058).
    assert nn["test"][:3] == ["BRATS_011", "BRATS_012", "BRATS_018"] and nn["validation"][0] == "BRATS_058"
    for name in ("brats_msd_nnformer", "brats_msd_unetrpp"):
        raw = json.loads((S.SPLIT_DIR / f"{name}.json").read_text())
        assert "282857341/nnFormer" in raw["source"] and raw["reading"]  # provenance and reading kept
    lists = SHARED.parent / "splits" / "brats_msd_nnformer_lists.json"
    if lists.is_file():  # the shipped files are exactly what the published lists give
        built = S.msd_brats_published_splits(json.loads(lists.read_text()))
        assert {n: json.loads((S.SPLIT_DIR / f"{n}.json").read_text()) for n in built} == built
    with pytest.raises(ValueError, match="387 / 73 / 24"):
        S.msd_brats_published_splits({"source": "x", "train": nn["train"], "val": nn["test"], "test": nn["test"][:24]})


def test_patient_ids_expand_to_frames():
    entries = {"train": ["patient001"], "validation": ["patient002_frame12"], "test": ["patient999"]}
    split = S.expand_patient_ids(entries, ACDC_CASES)
    assert split == {"train": ["patient001_frame01", "patient001_frame12"],
                     "validation": ["patient002_frame12"], "test": ["patient999"]}
    with pytest.raises(ValueError, match="not in the dataset"):
        S.expand_patient_ids({"train": ["patient999"]}, ACDC_CASES)


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
