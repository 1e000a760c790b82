"""predict --statistics: volumes per case and label, cardiac function from ED/ES pairs, JSON and CSV."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from lightmedseg.checkpoint import save_model
from lightmedseg.config import load_config
from lightmedseg.inference.pipeline import predict
from lightmedseg.inference.predictor import PredictionError
from lightmedseg.inference.statistics import (
    MYOCARDIUM_DENSITY, StatisticsError, cardiac_function, folder_statistics, label_volumes, pair_phases,
    parse_phases, statistics_report, write_statistics,
)
from lightmedseg.model.factory import build_model

ACDC_NAMES = {0: "background", 1: "RV", 2: "Myo", 3: "LV"}


def _heart(lv: int, rv: int, myo: int, shape=(8, 20, 20)) -> np.ndarray:
    """A label map with exactly ``lv``, ``rv`` and ``myo`` voxels of LV (3), RV (1) and Myo (2)."""
    flat = np.zeros(int(np.prod(shape)), np.int16)
    flat[:lv] = 3
    flat[lv:lv + rv] = 1
    flat[lv + rv:lv + rv + myo] = 2
    return flat.reshape(shape)


def test_volumes_and_cardiac_arithmetic() -> None:
    spacing = (2.0, 1.5, 1.0)  # 3 mm^3 = 0.003 ml per voxel
    ed = label_volumes(_heart(lv=1000, rv=800, myo=500), spacing, ACDC_NAMES)
    es = label_volumes(_heart(lv=400, rv=500, myo=520), spacing, ACDC_NAMES)
    assert ed["LV"] == {"value": 3, "voxels": 1000, "volume_ml": pytest.approx(3.0)}
    assert set(ed) == {"RV", "Myo", "LV"}  # background is not a structure
    f = cardiac_function(ed, es)
    assert f["LV"]["EDV_ml"] == pytest.approx(3.0) and f["LV"]["ESV_ml"] == pytest.approx(1.2)
    assert f["LV"]["SV_ml"] == pytest.approx(1.8) and f["LV"]["EF_percent"] == pytest.approx(60.0)
    assert f["RV"]["EF_percent"] == pytest.approx(100 * (800 - 500) / 800)
    assert f["Myo"]["mass_ED_g"] == pytest.approx(500 * 0.003 * MYOCARDIUM_DENSITY)
    empty = label_volumes(np.zeros((2, 2, 2), np.int16), spacing, ACDC_NAMES)
    assert empty["LV"]["voxels"] == 0 and math.isnan(cardiac_function(empty, empty)["LV"]["EF_percent"])


def test_pairing_rules(tmp_path: Path) -> None:
    big, small = {"LV": {"volume_ml": 150.0}}, {"LV": {"volume_ml": 60.0}}
    volumes = {"p1_frame01": small, "p1_frame12": big,  # ED = the larger LV, whatever the frame number
               "p2_ED": small, "p2_ES": big,  # names say it: they win over volumes
               "p3_frame01": big, "p3_frame05": small, "p3_frame09": small,  # three frames: no pair by name
               "lonely": big}
    pairs, unpaired = pair_phases(volumes)
    got = {p.patient: (p.ed, p.es) for p in pairs}
    assert got == {"p1": ("p1_frame12", "p1_frame01"), "p2": ("p2_ED", "p2_ES")}
    assert unpaired == ["lonely", "p3_frame01", "p3_frame05", "p3_frame09"]
    pairs, _ = pair_phases(volumes, info={"p3": {"ED": 1, "ES": 9}})  # ACDC Info.cfg frames
    assert ("p3_frame01", "p3_frame09") in {(p.ed, p.es) for p in pairs}
    assert parse_phases(["ED=p3_frame01", "ES=p3_frame05"]) == {"p3": ("p3_frame01", "p3_frame05")}
    (tmp_path / "phases.csv").write_text("patient,ED,ES\np3,p3_frame05,p3_frame09\n")
    explicit = parse_phases(str(tmp_path / "phases.csv"))
    pairs, _ = pair_phases(volumes, explicit)
    assert pairs[0] == pairs[0].__class__("p3", "p3_frame05", "p3_frame09", "explicit (--cardiac-phases)")
    with pytest.raises(StatisticsError, match="'nope'"):
        pair_phases(volumes, {"x": ("nope", "lonely")})
    with pytest.raises(StatisticsError, match="ED=CASE ES=CASE"):
        parse_phases(["ED=a"])


def test_report_files_json_and_csv(tmp_path: Path) -> None:
    spacing = (10.0, 1.5, 1.5)
    cases = {c: {"spacing_mm": list(spacing), "voxel_volume_ml": 0.0225, "labels": label_volumes(lab, spacing, ACDC_NAMES)}
             for c, lab in (("pat_frame01", _heart(900, 700, 400)), ("pat_frame10", _heart(300, 350, 420)),
                            ("other", _heart(0, 0, 0)))}
    report = statistics_report(cases, ACDC_NAMES)
    json_path, csv_path = write_statistics(tmp_path, report)
    data = json.loads(json_path.read_text())
    pat = data["cardiac"]["pat"]
    assert pat["ED"] == "pat_frame01" and pat["LV"]["EF_percent"] == pytest.approx(100 * 600 / 900)
    assert data["unpaired_cases"] == ["other"]
    rows = list(csv.DictReader(csv_path.open()))
    assert rows[0].keys() == {"subject", "kind", "label", "quantity", "value", "unit"}
    ef = next(r for r in rows if r["subject"] == "pat" and r["label"] == "LV" and r["quantity"] == "EF")
    assert float(ef["value"]) == pytest.approx(100 * 600 / 900, rel=1e-5) and ef["unit"] == "%"
    vol = next(r for r in rows if r["subject"] == "other" and r["label"] == "LV" and r["quantity"] == "volume")
    assert float(vol["value"]) == 0.0
    assert not list(tmp_path.glob(".*"))  # atomic writes leave no temporaries
    generic = statistics_report(cases, {0: "background", 1: "liver"})
    assert "cardiac" not in generic
    with pytest.raises(StatisticsError, match="lack"):
        statistics_report(cases, {0: "background", 1: "liver"}, phases=["ED=a", "ES=b"])


def _bright_is_lv(x: torch.Tensor) -> torch.Tensor:
    v = x[:, :1]
    return torch.cat([0.5 - v, v.new_full(v.shape, -5.0), v.new_full(v.shape, -5.0), v - 0.5], dim=1) * 20


def _cardiac_model(tmp_path: Path) -> Path:
    cfg = load_config("demo", overrides=["infer.roi_size=[32,32,32]", "model.in_channels=1"])
    cfg["labels"] = {"background": 0, "RV": 1, "Myo": 2, "LV": 3}
    cfg["model"]["num_classes"] = 4
    path = tmp_path / "run" / "model_best.safetensors"
    save_model(path, build_model(cfg), cfg)
    return path.parent


def _blob(radius: float, shape=(8, 32, 32)) -> np.ndarray:
    z, y, x = np.meshgrid(*[np.arange(n) - (n - 1) / 2 for n in shape], indexing="ij")
    return ((z * 2.0) ** 2 + y ** 2 + x ** 2 < radius ** 2).astype(np.float32) * 100 + 1


def test_predict_statistics_pairs_frames_and_matches_the_label_maps(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _cardiac_model(tmp_path)
    (tmp_path / "in").mkdir()
    affine = np.diag([1.5, 1.5, 6.0, 1.0])
    for name, r in (("pat_frame01", 7.0), ("pat_frame09", 11.0)):  # frame09 has the larger LV: it is ED
        nib.save(nib.Nifti1Image(_blob(r).transpose(2, 1, 0), affine), str(tmp_path / "in" / f"{name}.nii.gz"))
    lines: list[str] = []
    report = predict(tmp_path / "in", tmp_path / "out", model, device="cpu", progress=False, forward_fn=_bright_is_lv,
                     statistics=True, log=lines.append)
    assert [p.name for p in report.statistics] == ["statistics.json", "statistics.csv"]
    data = json.loads((tmp_path / "out" / "statistics.json").read_text())
    voxel_ml = 1.5 * 1.5 * 6.0 / 1000
    lv = {c: int((np.asarray(nib.load(str(tmp_path / "out" / f"{c}.nii.gz")).dataobj) == 3).sum())
          for c in ("pat_frame01", "pat_frame09")}
    assert lv["pat_frame09"] > lv["pat_frame01"] > 0
    assert data["cases"]["pat_frame09"]["labels"]["LV"]["voxels"] == lv["pat_frame09"]
    cardiac = data["cardiac"]["pat"]
    assert (cardiac["ED"], cardiac["ES"]) == ("pat_frame09", "pat_frame01")
    assert cardiac["LV"]["EDV_ml"] == pytest.approx(lv["pat_frame09"] * voxel_ml)
    assert cardiac["LV"]["EF_percent"] == pytest.approx(100 * (lv["pat_frame09"] - lv["pat_frame01"]) / lv["pat_frame09"])
    assert any(m.startswith("pat: ED pat_frame09") and "EF" in m for m in lines)
    # a rerun skips the predicted cases but still reports them (read back); explicit phases win over volumes
    again = predict(tmp_path / "in", tmp_path / "out", model, device="cpu", progress=False, forward_fn=_bright_is_lv,
                    cardiac_phases=["ED=pat_frame01", "ES=pat_frame09"], log=lambda m: None)
    assert len(again.skipped) == 2 and again.statistics
    swapped = json.loads((tmp_path / "out" / "statistics.json").read_text())["cardiac"]
    assert swapped["pat"]["ED"] == "pat_frame01" and swapped["pat"]["LV"]["EF_percent"] < 0
    with pytest.raises(PredictionError, match="patient,ED,ES"):
        predict(tmp_path / "in", tmp_path / "out2", model, device="cpu", progress=False, forward_fn=_bright_is_lv,
                cardiac_phases=[str(tmp_path / "in" / "pat_frame01.nii.gz")], log=lambda m: None)
    assert not (tmp_path / "out2").exists()  # refused before predicting anything


def test_segment_returns_statistics(tmp_path: Path) -> None:
    import lightmedseg

    torch.manual_seed(0)
    img = nib.Nifti1Image(_blob(9.0).transpose(2, 1, 0), np.diag([1.5, 1.5, 6.0, 1.0]))
    seg, stats = lightmedseg.segment(img, model=_cardiac_model(tmp_path), device="cpu", forward_fn=_bright_is_lv,
                                     statistics=True)
    n = int((np.asarray(seg.dataobj) == 3).sum())
    assert n > 0 and stats["labels"]["LV"]["voxels"] == n
    assert stats["labels"]["LV"]["volume_ml"] == pytest.approx(n * 1.5 * 1.5 * 6.0 / 1000)


def test_acdc_reference_ef_equals_numpy_on_the_masks(shared_data: Path, tmp_path: Path) -> None:
    """--statistics arithmetic on real ACDC reference labels: EF, EDV and mass as computed directly with numpy."""
    h5py = pytest.importorskip("h5py")
    folder = shared_data / "acdc-wsl4mis"
    spacing = (10.0, 1.5625, 1.5625)  # the shared HDF5 stores none; patient001's, as the converted dataset uses
    affine = np.diag([spacing[2], spacing[1], spacing[0], 1.0])
    patients = ["patient001", "patient004", "patient089"]
    labels = {}
    for f in sorted(folder.glob("*.h5")):
        if f.name.split("_")[0] in patients:
            with h5py.File(f, "r") as h:
                labels[f.stem] = np.asarray(h["label"][()], dtype=np.int16)
            nib.save(nib.Nifti1Image(labels[f.stem].transpose(2, 1, 0).astype(np.uint8), affine),
                     str(tmp_path / f"{f.stem}.nii.gz"))
    assert len(labels) == 2 * len(patients)
    report = folder_statistics(tmp_path, ACDC_NAMES)
    voxel_ml = float(np.prod(spacing)) / 1000
    for patient in patients:
        c = report["cardiac"][patient]
        assert c["ED"] == f"{patient}_frame01"  # ACDC: frame01 is ED, found here by the larger LV
        ed, es = labels[c["ED"]], labels[c["ES"]]
        edv, esv = (ed == 3).sum() * voxel_ml, (es == 3).sum() * voxel_ml
        assert c["LV"]["EF_percent"] == pytest.approx(100 * (edv - esv) / edv, rel=1e-9)
        rv_edv, rv_esv = (ed == 1).sum() * voxel_ml, (es == 1).sum() * voxel_ml
        assert c["RV"]["EF_percent"] == pytest.approx(100 * (rv_edv - rv_esv) / rv_edv, rel=1e-9)
        assert c["LV"]["EDV_ml"] == pytest.approx(edv, rel=1e-9)
        assert c["Myo"]["mass_ED_g"] == pytest.approx((ed == 2).sum() * voxel_ml * 1.05, rel=1e-9)
        assert 10 < c["LV"]["EF_percent"] < 90  # a physiological range: the pairing is not reversed


def _label_is_the_intensity(x: torch.Tensor) -> torch.Tensor:
    """Logits whose argmax is the voxel's value: an image that holds a label map is 'predicted' as itself."""
    v = x[:, :1]
    return torch.cat([-20 * (v - k) ** 2 for k in range(4)], dim=1)


def test_predict_statistics_on_acdc_reference_labels_equals_numpy(shared_data: Path, tmp_path: Path) -> None:
    """``predict --statistics`` end to end (reading, sliding window, writing, pairing by name) on real ACDC
    reference labels: a forward that returns each voxel's value makes the label maps the references themselves,
    so its EF, EDV and mass must be those of the reference masks computed with numpy."""
    h5py = pytest.importorskip("h5py")
    spacing = (10.0, 1.5625, 1.5625)
    affine = np.diag([spacing[2], spacing[1], spacing[0], 1.0])
    (tmp_path / "ref").mkdir()
    labels = {}
    for f in sorted((shared_data / "acdc-wsl4mis").glob("patient089_*.h5")):  # a validation patient
        with h5py.File(f, "r") as h:
            labels[f.stem] = np.asarray(h["label"][()], dtype=np.int16)
        nib.save(nib.Nifti1Image(labels[f.stem].transpose(2, 1, 0).astype(np.float32), affine),
                 str(tmp_path / "ref" / f"{f.stem}.nii.gz"))
    assert len(labels) == 2
    cfg = load_config("demo", overrides=["infer.roi_size=[16,160,160]", "model.in_channels=1",
                                         "data.normalization=none", "data.crop_nonzero=false"])
    cfg["labels"] = {name: value for value, name in ACDC_NAMES.items()}
    save_model(tmp_path / "run" / "model_best.safetensors", build_model(cfg), cfg)
    report = predict(tmp_path / "ref", tmp_path / "out", tmp_path / "run", device="cpu", progress=False,
                     forward_fn=_label_is_the_intensity, statistics=True, log=lambda m: None)
    assert [p.name for p in report.statistics] == ["statistics.json", "statistics.csv"]
    for case, ref in labels.items():  # the label maps written are the references
        np.testing.assert_array_equal(np.asarray(nib.load(str(tmp_path / "out" / f"{case}.nii.gz")).dataobj),
                                      ref.transpose(2, 1, 0), err_msg=case)
    c = json.loads((tmp_path / "out" / "statistics.json").read_text())["cardiac"]["patient089"]
    ed, es = labels[c["ED"]], labels[c["ES"]]
    assert c["ED"] == "patient089_frame01"
    voxel_ml = float(np.prod(spacing)) / 1000
    edv, esv = (ed == 3).sum() * voxel_ml, (es == 3).sum() * voxel_ml
    assert c["LV"]["EF_percent"] == pytest.approx(100 * (edv - esv) / edv, rel=1e-9)
    assert c["LV"]["EDV_ml"] == pytest.approx(edv, rel=1e-9) and c["LV"]["ESV_ml"] == pytest.approx(esv, rel=1e-9)
    rv_edv, rv_esv = (ed == 1).sum() * voxel_ml, (es == 1).sum() * voxel_ml
    assert c["RV"]["EF_percent"] == pytest.approx(100 * (rv_edv - rv_esv) / rv_edv, rel=1e-9)
    assert c["Myo"]["mass_ED_g"] == pytest.approx((ed == 2).sum() * voxel_ml * MYOCARDIUM_DENSITY, rel=1e-9)


def test_statistics_need_no_extra_and_preview_names_its_extra(tmp_path: Path) -> None:
    """--statistics works in the predict-only install; --preview without matplotlib is one line naming the extra,
    before anything is predicted."""
    from test_packaging import NOT_HARD, _run_without_extras

    (tmp_path / "in").mkdir()
    nib.save(nib.Nifti1Image(_blob(9.0, (8, 40, 36)).transpose(2, 1, 0), np.diag([1.5625, 1.5625, 10.0, 1.0])),
             str(tmp_path / "in" / "p_frame01.nii.gz"))
    argv = ["predict", "-i", "in", "-o", "out", "-m", "acdc", "-q", "--device", "cpu", "--no-tta"]
    proc = _run_without_extras(tmp_path, argv + ["--preview"], NOT_HARD)
    assert proc.returncode == 2 and not (tmp_path / "out").exists()
    assert proc.stderr.strip().endswith("--preview needs matplotlib, which is not installed: pip install 'lightmedseg[train]'")
    proc = _run_without_extras(tmp_path, argv + ["--statistics"], NOT_HARD)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((tmp_path / "out" / "statistics.json").read_text())
    assert set(data["cases"]["p_frame01"]["labels"]) == {"RV", "Myo", "LV"} and data["unpaired_cases"] == ["p_frame01"]
