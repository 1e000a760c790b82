"""Folder evaluation: matching by case ID, regions from dataset.json, outputs, and loud failures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from lightmedseg.cli.main import main
from lightmedseg.evaluation.evaluate import EvaluationError, evaluate_folders
from lightmedseg.evaluation.report import output_paths, write_reports

# An LPS-oriented, anisotropic affine (x flipped, y flipped, 2.5 mm slices).
LPS = np.array([[-0.9, 0, 0, 10.0], [0, -1.1, 0, 5.0], [0, 0, 2.5, -3.0], [0, 0, 0, 1]])
BRATS_JSON = {
    "channel_names": {"0": "T1"}, "labels": {"background": 0, "NCR": 1, "ED": 2, "ET": 4},
    "numTraining": 2, "file_ending": ".nii.gz", "label_convention": "brats",
}


def _write(path: Path, zyx: np.ndarray, affine=LPS) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(zyx.transpose(2, 1, 0)).astype(np.uint8), affine), str(path))


def _brats_pair():
    ref = np.zeros((7, 9, 11), np.uint8)
    ref[2:5, 2:6, 2:8] = 2  # oedema
    ref[3, 3:5, 3:6] = 1  # necrosis
    ref[3, 4, 4] = 4  # enhancing
    pred = ref.copy()
    pred[3, 4, 4] = 1  # enhancing tumour missed -> ET empty in pred
    return pred, ref


@pytest.fixture
def brats_folders(tmp_path):
    pred, ref = _brats_pair()
    _write(tmp_path / "ref" / "caseA.nii.gz", ref)
    _write(tmp_path / "pred" / "caseA.nii.gz", pred)
    no_et = np.where(ref == 4, 1, ref).astype(np.uint8)  # a case without enhancing tumour at all
    _write(tmp_path / "ref" / "caseB.nii.gz", no_et)
    _write(tmp_path / "pred" / "caseB.nii.gz", no_et)
    (tmp_path / "dataset.json").write_text(json.dumps(BRATS_JSON))
    return tmp_path


def test_regions_and_empty_rules(brats_folders):
    rows, summary = evaluate_folders(brats_folders / "pred", brats_folders / "ref",
                                     labels=brats_folders / "dataset.json", mode="strict", progress=False)
    assert summary["regions"] == {"WT": [1, 2, 4], "TC": [1, 4], "ET": [4]}
    et = {r["case"]: r for r in rows if r["kind"] == "region" and r["name"] == "ET"}
    # caseA: ET only in the reference -> Dice 0, HD95 = diagonal in mm; caseB: both empty -> NaN
    diag = math.sqrt((7 * 2.5) ** 2 + (9 * 1.1) ** 2 + (11 * 0.9) ** 2)
    assert et["caseA"]["dice"] == 0.0 and et["caseA"]["hd95"] == pytest.approx(diag, rel=1e-5)
    assert math.isnan(et["caseB"]["dice"]) and math.isnan(et["caseB"]["hd95"])
    s_et = summary["metrics"]["regions"]["ET"]["dice"]
    assert s_et["mean"] == 0.0 and s_et["n"] == 1 and s_et["n_nan"] == 1
    # TC: necrosis + enhancing; pred relabels ET as NCR, so TC is identical -> Dice 1
    assert summary["metrics"]["regions"]["TC"]["dice"]["mean"] == pytest.approx(1.0)
    assert summary["metrics"]["average_dice"] == pytest.approx((1 + 1 + 0) / 3)

    rows_n, summary_n = evaluate_folders(brats_folders / "pred", brats_folders / "ref", mode="nnformer", progress=False)
    et_n = {r["case"]: r for r in rows_n if r["kind"] == "region" and r["name"] == "ET"}
    assert summary_n["labels_source"].endswith("dataset.json")  # found above the ref folder
    assert et_n["caseA"]["dice"] == 0.0 and et_n["caseA"]["hd95"] == 0.0
    assert et_n["caseB"]["dice"] == 1.0 and et_n["caseB"]["hd95"] == 0.0
    assert summary_n["metrics"]["regions"]["ET"]["dice"]["mean"] == pytest.approx(0.5)


def test_reports_written_and_valid(brats_folders, tmp_path):
    rows, summary = evaluate_folders(brats_folders / "pred", brats_folders / "ref", mode="strict", progress=False)
    paths = write_reports(rows, summary, tmp_path / "out")
    data = json.loads(paths["json"].read_text())  # strict JSON: NaN must have become null
    assert data["metrics"]["regions"]["ET"]["hd95"]["n_nan"] == 1
    assert data["hd95_unit"] == "mm"
    csv_lines = paths["csv"].read_text().splitlines()
    assert csv_lines[0].startswith("case,kind,name,values,dice,hd95")
    assert len(csv_lines) == 1 + 2 * (3 + 3)  # 2 cases x (3 classes + 3 regions)
    md = paths["markdown"].read_text()
    header = next(line for line in md.splitlines() if line.startswith("| Method"))
    assert header.split("|")[4:7] == [" Whole Tumor ", " Enhancing Tumor ", " Tumor Core "]  # paper order
    assert not list((tmp_path / "out").glob(".*"))  # no temporaries left


def test_missing_and_extra_cases_are_loud(brats_folders, capsys):
    (brats_folders / "pred" / "caseB.nii.gz").rename(brats_folders / "pred" / "caseZ.nii.gz")
    with pytest.raises(EvaluationError, match=r"caseB"):
        evaluate_folders(brats_folders / "pred", brats_folders / "ref", progress=False)
    rows, summary = evaluate_folders(brats_folders / "pred", brats_folders / "ref", allow_missing=True, progress=False)
    assert summary["missing_predictions"] == ["caseB"] and summary["extra_predictions"] == ["caseZ"]
    assert summary["cases"] == ["caseA"]
    err = capsys.readouterr().err
    assert "caseB" in err and "caseZ" in err


def test_geometry_and_value_errors(brats_folders):
    pred, ref = _brats_pair()
    _write(brats_folders / "pred" / "caseA.nii.gz", pred, affine=np.diag([1.0, 1.0, 1.0, 1.0]))
    with pytest.raises(EvaluationError, match="affine differs"):
        evaluate_folders(brats_folders / "pred", brats_folders / "ref", progress=False)
    _write(brats_folders / "pred" / "caseA.nii.gz", pred[:, :, :10])
    with pytest.raises(EvaluationError, match="shape"):
        evaluate_folders(brats_folders / "pred", brats_folders / "ref", progress=False)
    bad = pred.copy()
    bad[0, 0, 0] = 3  # value 3 is not declared in this dataset.json
    _write(brats_folders / "pred" / "caseA.nii.gz", bad)
    with pytest.raises(EvaluationError, match=r"label values \[3\]"):
        evaluate_folders(brats_folders / "pred", brats_folders / "ref", progress=False)


def test_cli_writes_outputs_and_reports_errors(brats_folders, capsys, tmp_path):
    out = tmp_path.parent / f"{tmp_path.name}-eval"  # outside the fixture's dataset folder (the write rule)
    rc = main(["evaluate", "--pred", str(brats_folders / "pred"), "--ref", str(brats_folders / "ref"),
               "--mode", "nnformer", "--out", str(out), "--quiet"])
    assert rc == 0
    assert all(p.is_file() for p in output_paths(out, "nnformer").values())
    assert "voxel" in capsys.readouterr().out
    rc = main(["evaluate", "--pred", str(tmp_path / "nope"), "--ref", str(brats_folders / "ref")])
    assert rc == 2
    assert "prediction folder not found" in capsys.readouterr().err


def test_no_dataset_json_falls_back_to_values(tmp_path):
    ref = np.zeros((5, 6, 7), np.uint8)
    ref[1:3, 1:3, 1:3] = 1
    ref[3, 3, 3] = 2
    _write(tmp_path / "r" / "x.nii", ref)
    _write(tmp_path / "p" / "x.nii.gz", ref)
    _, summary = evaluate_folders(tmp_path / "p", tmp_path / "r", progress=False)
    assert summary["regions"] == {"1": [1], "2": [2]}
    assert summary["metrics"]["average_dice"] == 1.0


def test_every_predict_format_is_read_and_labels_json_names_the_classes(tmp_path, capsys):
    """What predict writes (.nrrd, .seg.nrrd, .mha beside labels.json) is evaluated against NIfTI references by name."""
    pytest.importorskip("SimpleITK")
    from lightmedseg.data.readers import read_label_file
    from lightmedseg.inference.segment import write_label_sidecars, write_prediction

    names = {0: "background", 1: "RV", 2: "Myo", 3: "LV"}
    ref = np.zeros((6, 12, 10), np.uint8)
    ref[1:5, 2:8, 2:5] = 1
    ref[1:5, 3:7, 5:8] = 2
    ref[2:4, 4:6, 6:7] = 3
    for case, ending in (("a", ".nrrd"), ("b", ".seg.nrrd"), ("c", ".mha"), ("d", ".nii.gz")):
        _write(tmp_path / "ref" / f"{case}.nii.gz", ref)
        _, geometry = read_label_file(tmp_path / "ref" / f"{case}.nii.gz")
        pred = ref.copy()
        if case == "c":
            pred[pred == 3] = 2  # the LV of one case missed: LV Dice 0 there
        write_prediction(tmp_path / "pred" / f"{case}{ending}", pred, geometry, names)
    write_label_sidecars(tmp_path / "pred", names)
    rows, summary = evaluate_folders(tmp_path / "pred", tmp_path / "ref", progress=False)
    assert summary["cases"] == ["a", "b", "c", "d"]
    assert summary["classes"] == {"RV": 1, "Myo": 2, "LV": 3} and summary["label_convention"] == "acdc"
    assert summary["labels_source"].endswith("labels.json")
    lv = {r["case"]: r["dice"] for r in rows if r["kind"] == "class" and r["name"] == "LV"}
    assert lv == {"a": 1.0, "b": 1.0, "c": 0.0, "d": 1.0}
    rc = main(["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"), "--quiet",
               "--out", str(tmp_path / "eval")])
    out = capsys.readouterr().out
    assert rc == 0 and "LV: Dice" in out and "Myo: Dice" in out and " 1: Dice" not in out


def test_labels_option_takes_a_labels_json(tmp_path):
    ref = np.zeros((5, 6, 7), np.uint8)
    ref[1:3, 1:3, 1:3] = 1
    _write(tmp_path / "r" / "x.nii.gz", ref)
    _write(tmp_path / "p" / "x.nii.gz", ref)
    (tmp_path / "names.json").write_text(json.dumps({"0": "background", "1": "liver"}))
    _, summary = evaluate_folders(tmp_path / "p", tmp_path / "r", labels=tmp_path / "names.json", progress=False)
    assert summary["classes"] == {"liver": 1} and summary["regions"] == {"liver": [1]}
