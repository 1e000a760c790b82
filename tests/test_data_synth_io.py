"""Synthetic generator, NIfTI I/O convention and canonical layout."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from lightmedseg.cli.main import main
from lightmedseg.data import labels as L
from lightmedseg.data.io import ImageGeometry, read_image_channels, read_label, write_label
from lightmedseg.data.layout import case_files, list_cases, load_dataset_json, patient_id, validate_dataset
from lightmedseg.data.synth import make_synthetic_dataset


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("s") / "ds", num_cases=3, seed=1, shape=(32, 40, 48))


def test_synth_layout_and_labels(synth):
    meta = validate_dataset(synth)
    assert meta["numTraining"] == 3 and meta["file_ending"] == ".nii.gz"
    assert list(meta["channel_names"].values()) == ["T1", "T1ce", "T2", "FLAIR"]
    assert L.label_values(meta) == [0, 1, 2, 4]
    assert L.regions(meta) == {"WT": [1, 2, 4], "TC": [1, 4], "ET": [4]}
    assert list_cases(synth) == ["synth_000", "synth_001", "synth_002"]
    images, label = case_files(synth, "synth_001")
    img, geom = read_image_channels(images)
    lab, lgeom = read_label(label)
    assert img.shape == (4, 32, 40, 48) and img.dtype == np.float32
    assert lab.shape == (32, 40, 48) and lgeom.matches(geom)
    assert set(np.unique(lab)) == {0, 1, 2, 4}  # every sub-region present
    # Nested: necrosis and enhancing voxels lie inside the whole tumour; background is zero outside the brain.
    assert np.all(img[:, lab > 0] > 0)
    assert (img[0] == 0).sum() > 0.2 * img[0].size


def test_synth_is_seeded(tmp_path):
    a = make_synthetic_dataset(tmp_path / "a", num_cases=1, seed=5, shape=(24, 24, 24))
    b = make_synthetic_dataset(tmp_path / "b", num_cases=1, seed=5, shape=(24, 24, 24))
    c = make_synthetic_dataset(tmp_path / "c", num_cases=1, seed=6, shape=(24, 24, 24))
    la, lb, lc = (read_label(d / "labelsTr" / "synth_000.nii.gz")[0] for d in (a, b, c))
    assert np.array_equal(la, lb) and not np.array_equal(la, lc)


def test_synth_modalities_have_different_contrast(synth):
    img, _ = read_image_channels(case_files(synth, "synth_000")[0])
    lab, _ = read_label(case_files(synth, "synth_000")[1])
    et_over_ed = img[:, lab == 4].mean(1) / img[:, lab == 2].mean(1)
    assert et_over_ed[1] > 1.5 and et_over_ed[0] < 1.3  # enhancing tumour bright on T1ce only


def test_zyx_convention_and_native_geometry(tmp_path):
    data = np.zeros((5, 6, 7), np.uint8)  # nibabel order (x, y, z)
    data[4, 0, 0] = 3
    affine = np.diag([0.8, 0.9, 2.5, 1.0])
    affine[:3, 3] = [10, -5, 3]
    nib.save(nib.Nifti1Image(data, affine), str(tmp_path / "l.nii.gz"))
    lab, geom = read_label(tmp_path / "l.nii.gz")
    assert lab.shape == (7, 6, 5) and lab[0, 0, 4] == 3
    assert geom.spacing == pytest.approx((2.5, 0.9, 0.8))
    write_label(tmp_path / "out.nii.gz", lab, geom)
    back = nib.load(str(tmp_path / "out.nii.gz"))
    assert np.array_equal(np.asarray(back.dataobj), data) and np.allclose(back.affine, affine)


def test_geometry_from_spacing_roundtrip(tmp_path):
    geom = ImageGeometry.from_spacing((4, 5, 6), (10.0, 1.5, 1.25))
    write_label(tmp_path / "x.nii.gz", np.ones((4, 5, 6), np.int16), geom)
    _, g2 = read_label(tmp_path / "x.nii.gz")
    assert g2.spacing == pytest.approx((10.0, 1.5, 1.25)) and g2.shape == (4, 5, 6)


def test_patient_id():
    assert patient_id("patient001_frame01") == "patient001"
    assert patient_id("BraTS2021_00001") == "BraTS2021_00001"


def test_load_dataset_json_rejects_missing_keys(tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0}}))
    with pytest.raises(ValueError, match="missing required keys"):
        load_dataset_json(tmp_path)


def test_synth_cli_refuses_existing_folder(tmp_path, capsys):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep.txt").write_text("x")
    assert main(["synth", str(tmp_path / "d"), "--cases", "1", "--shape", "16", "16", "16"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "d" / "keep.txt").exists()
    # --overwrite replaces only a dataset lightmedseg wrote: a user's folder is refused, not deleted
    assert main(["synth", str(tmp_path / "d"), "--cases", "1", "--shape", "16", "16", "16", "--overwrite"]) == 2
    assert "written by lightmedseg" in capsys.readouterr().err
    assert (tmp_path / "d" / "keep.txt").read_text() == "x"
    (tmp_path / "d" / "keep.txt").unlink()
    assert main(["synth", str(tmp_path / "d"), "--cases", "1", "--shape", "16", "16", "16"]) == 0
    assert main(["synth", str(tmp_path / "d"), "--cases", "1", "--shape", "16", "16", "16", "--overwrite"]) == 0
    assert (tmp_path / "d" / "dataset.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["d"]  # no staging folders left behind


def test_brats_channel_order_is_checked(tmp_path):
    ds = make_synthetic_dataset(tmp_path / "ds", num_cases=1, seed=0, shape=(16, 16, 16))
    meta = json.loads((ds / "dataset.json").read_text())
    meta["channel_names"] = {"0": "FLAIR", "1": "T1", "2": "T1ce", "3": "T2"}
    (ds / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="in that order"):
        load_dataset_json(ds)


def test_label_value_index_mapping():
    meta = {"labels": {"background": 0, "NCR": 1, "ED": 2, "ET": 4}, "label_convention": "brats"}
    lab = np.array([[[0, 1, 2, 4]]])
    idx = L.values_to_indices(lab, L.label_values(meta))
    assert idx.tolist() == [[[0, 1, 2, 3]]]
    assert np.array_equal(L.indices_to_values(idx, L.label_values(meta)), lab)
    with pytest.raises(ValueError, match=r"outside the declared set"):
        L.values_to_indices(np.array([3]), L.label_values(meta), "x.nii.gz")
    assert L.regions({"labels": {"background": 0, "liver": 1, "tumour": 2}}) == {"liver": [1], "tumour": [2]}
