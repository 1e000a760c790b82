"""Conversion of the real data in ../shared/data (skipped when that folder is absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lightmedseg.data import labels as L
from lightmedseg.data.convert import convert
from lightmedseg.data.io import read_image_channels, read_label
from lightmedseg.data.layout import case_files, list_cases, patient_id

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
pytestmark = pytest.mark.shared_data


def _need(path: Path) -> Path:
    if not path.is_dir():
        pytest.skip(f"real data not available: {path} is absent (only present in the development setup)")
    return path


def _check_cases(dst: Path, n_channels: int) -> set[int]:
    seen: set[int] = set()
    for case in list_cases(dst):
        images, label = case_files(dst, case)
        img, geom = read_image_channels(images)
        lab, lgeom = read_label(label)
        assert img.shape[0] == n_channels
        assert lgeom.matches(geom) and lab.shape == img.shape[1:], case
        seen |= set(np.unique(lab).tolist())
    return seen


def test_convert_real_acdc_h5(tmp_path):
    src = _need(SHARED / "acdc-wsl4mis")
    meta = convert("acdc-h5", src, tmp_path / "acdc")
    cases = list_cases(tmp_path / "acdc")
    assert meta["numTraining"] == 160 and len(cases) == 160
    assert len({patient_id(c) for c in cases}) == 80
    assert meta["channel_names"] == {"0": "cineMRI"} and L.label_values(meta) == [0, 1, 2, 3]
    assert _check_cases(tmp_path / "acdc", 1) == {0, 1, 2, 3}
    lab, geom = read_label(case_files(tmp_path / "acdc", "patient001_frame01")[1])
    assert lab.shape == (10, 256, 216) and geom.spacing == pytest.approx((10.0, 1.5625, 1.5625))


def test_convert_real_brats2015(tmp_path):
    src = _need(SHARED / "brats2015-sample")
    meta = convert("brats", src, tmp_path / "brats")
    assert meta["numTraining"] == 4 and meta["release_label_scheme"] == "brats2015"
    assert list(meta["channel_names"].values()) == ["T1ce", "FLAIR"]
    assert L.label_values(meta) == [0, 1, 2, 3, 4]
    assert sorted(meta["source_groups"]) == ["train", "validation"]
    assert _check_cases(tmp_path / "brats", 2) == {0, 1, 2, 3, 4}  # all five classes occur in the sample
    img, geom = read_image_channels(case_files(tmp_path / "brats", "brats_2013_pat0005_1")[0])
    assert img.shape == (2, 155, 240, 240) and geom.spacing == pytest.approx((1.0, 1.0, 1.0))
    assert img[0, 0, 0, 0] == 0  # the constant z-scored background was reset to 0 outside the brain mask
    lab, _ = read_label(case_files(tmp_path / "brats", "brats_2013_pat0005_1")[1])
    raw, _ = read_label(src / "train" / "brats_2013_pat0005_1" / "OTMultiClass.nii.gz")
    assert np.array_equal(lab, raw)  # 2013-2015 labels are already canonical: preserved exactly
