"""Round trips for every importer on tiny fake source trees, and one test per kind of bad input."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest

from lightmedseg.cli.main import main
from lightmedseg.config import load_config
from lightmedseg.data import labels as L
from lightmedseg.data.convert import convert
from lightmedseg.data.cases import load_preprocessed_case
from lightmedseg.data.io import read_image_channels, read_label
from lightmedseg.data.layout import case_files, list_cases, validate_dataset
from lightmedseg.data.synth import make_synthetic_dataset

SHAPE = (12, 10, 8)  # nibabel order (x, y, z)
AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])
BRATS21 = ("t1", "t1ce", "t2", "flair")
BRATS23 = ("t1n", "t1c", "t2w", "t2f")


def _save(path: Path, data: np.ndarray, affine=AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def _label(rng, values) -> np.ndarray:
    lab = rng.choice(np.asarray(values, np.uint8), size=SHAPE)
    lab[0] = 0
    return lab


def _image(rng, offset: float) -> np.ndarray:
    img = (rng.random(SHAPE) + offset).astype(np.float32)
    img[0] = 0  # background border, as in skull-stripped data
    return img


def make_brats(root: Path, names=BRATS21, values=(0, 1, 2, 4), sep="_", n=2, seed=0) -> dict:
    """BraTS 2021 (or 2023 with names=BRATS23, sep='-') tree; channel k has intensities in [10k, 10k+1)."""
    rng = np.random.default_rng(seed)
    labels = {}
    for i in range(n):
        case = f"BraTS-GLI-{i:05d}-000" if sep == "-" else f"BraTS2021_{i:05d}"
        for k, mod in enumerate(names):
            _save(root / case / f"{case}{sep}{mod}.nii.gz", _image(rng, 10 * k))
        labels[case] = _label(rng, values)
        _save(root / case / f"{case}{sep}seg.nii.gz", labels[case])
    return labels


def _expected(raw_xyz: np.ndarray, scheme: str) -> np.ndarray:
    return L.remap_values(raw_xyz.transpose(2, 1, 0), L.BRATS_SOURCE_MAPS[scheme], "test")


def _check_channel_order(dst: Path, case: str, expected_offsets: list[int]) -> None:
    img, _ = read_image_channels(case_files(dst, case)[0])
    means = [img[c][img[c] != 0].min() for c in range(img.shape[0])]
    assert [int(m // 10) * 10 for m in means] == expected_offsets


@pytest.mark.parametrize("release", ["2021", "2023"])
def test_brats_release_roundtrip(tmp_path, release):
    names, sep, values, scheme = ((BRATS21, "_", (0, 1, 2, 4), "brats2021") if release == "2021"
                                  else (BRATS23, "-", (0, 1, 2, 3), "brats2023"))
    labels = make_brats(tmp_path / "src", names, values, sep)
    meta = convert("brats", tmp_path / "src", tmp_path / "dst")
    assert list(meta["channel_names"].values()) == list(L.BRATS_MODALITIES)
    assert L.label_values(meta) == [0, 1, 2, 4] and meta["release_label_scheme"] == scheme
    assert list_cases(tmp_path / "dst") == sorted(labels)
    for case, raw in labels.items():
        lab, geom = read_label(case_files(tmp_path / "dst", case)[1])
        assert np.array_equal(lab, _expected(raw, scheme))
        assert np.allclose(geom.affine, AFFINE)
    _check_channel_order(tmp_path / "dst", sorted(labels)[0], [0, 10, 20, 30])
    cfg = load_config("brats", overrides=["data.patch_size=[8,8,8]"])
    case = load_preprocessed_case(tmp_path / "dst", sorted(labels)[0], cfg)
    assert case["label"].max() == 3  # value 4 (ET) -> class index 3


def test_brats2015_style_with_mask(tmp_path):
    rng = np.random.default_rng(1)
    src = tmp_path / "src"
    mask = np.zeros(SHAPE, np.int32)
    mask[2:10, 2:8, 1:7] = 1
    raw = _label(rng, (0, 1, 2, 3, 4)) * mask.astype(np.uint8)
    for name, off in (("Flair", 30), ("T1c", 10)):
        _save(src / "train" / "pat1" / f"{name}_subtrMeanDivStd.nii.gz", np.where(mask, _image(rng, off), -3.5).astype(np.float32))
    _save(src / "train" / "pat1" / "brainmask.nii.gz", mask)
    _save(src / "train" / "pat1" / "OTMultiClass.nii.gz", raw.astype(np.float32))
    meta = convert("brats", src, tmp_path / "dst")
    assert list(meta["channel_names"].values()) == ["T1ce", "FLAIR"]
    assert L.label_values(meta) == [0, 1, 2, 3, 4] and meta["source_groups"] == {"train": ["pat1"]}
    lab, _ = read_label(case_files(tmp_path / "dst", "pat1")[1])
    assert np.array_equal(lab, raw.transpose(2, 1, 0))
    img, _ = read_image_channels(case_files(tmp_path / "dst", "pat1")[0])
    assert np.all(img[:, mask.transpose(2, 1, 0) == 0] == 0)  # background outside the brain mask is 0
    _check_channel_order(tmp_path / "dst", "pat1", [10, 30])


def test_msd_brain_roundtrip(tmp_path):
    rng = np.random.default_rng(2)
    src = tmp_path / "Task01_BrainTumour"
    (src).mkdir()
    (src / "dataset.json").write_text(json.dumps({"modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}}))
    raws = {}
    for i in (1, 2):
        img = np.stack([_image(rng, off) for off in (30, 0, 10, 20)], axis=-1)  # FLAIR, T1, T1ce, T2
        _save(src / "imagesTr" / f"BRATS_{i:03d}.nii.gz", img)
        raws[i] = _label(rng, (0, 1, 2, 3))
        _save(src / "labelsTr" / f"BRATS_{i:03d}.nii.gz", raws[i])
    _save(src / "imagesTs" / "BRATS_900.nii.gz", np.stack([_image(rng, 0)] * 4, axis=-1))
    (src / "imagesTr" / "._BRATS_001.nii.gz").write_bytes(b"\x00\x05junk")  # macOS resource fork
    meta = convert("msd-brain", src, tmp_path / "dst")
    assert meta["numTraining"] == 2 and list_cases(tmp_path / "dst", "Ts") == ["BRATS_900"]
    for i, raw in raws.items():
        lab, _ = read_label(case_files(tmp_path / "dst", f"BRATS_{i:03d}")[1])
        assert np.array_equal(lab, _expected(raw, "msd"))
    _check_channel_order(tmp_path / "dst", "BRATS_001", [0, 10, 20, 30])


def _make_acdc(root: Path, rng) -> dict:
    raws = {}
    for pid, es in ((1, 12), (2, 9)):
        folder = root / "training" / f"patient{pid:03d}"
        folder.mkdir(parents=True)
        (folder / "Info.cfg").write_text(f"ED: 1\nES: {es}\nGroup: DCM\nHeight: 180\n")
        for frame in (1, es):
            name = f"patient{pid:03d}_frame{frame:02d}"
            _save(folder / f"{name}.nii.gz", _image(rng, 0) * 300, np.diag([1.5, 1.5, 10.0, 1]))
            raws[name] = _label(rng, (0, 1, 2, 3))
            _save(folder / f"{name}_gt.nii.gz", raws[name], np.diag([1.5, 1.5, 10.0, 1]))
    return raws


def test_acdc_roundtrip(tmp_path):
    raws = _make_acdc(tmp_path / "src", np.random.default_rng(3))
    meta = convert("acdc", tmp_path / "src", tmp_path / "dst")
    assert meta["numTraining"] == 4 and meta["label_convention"] == "acdc"
    assert meta["case_info"]["patient002_frame09"] == {"patient": "patient002", "phase": "ES", "group": "DCM"}
    for name, raw in raws.items():
        lab, geom = read_label(case_files(tmp_path / "dst", name)[1])
        assert np.array_equal(lab, raw.transpose(2, 1, 0)) and geom.spacing == pytest.approx((10, 1.5, 1.5))
    assert L.regions(meta) == {"RV": [1], "Myo": [2], "LV": [3]}


def _make_h5(root: Path, rng) -> dict:
    raws = {}
    root.mkdir(parents=True, exist_ok=True)
    for name in ("patient001_frame01", "patient001_frame12", "patient003_frame01"):
        raws[name] = rng.integers(0, 4, (5, 16, 12)).astype(np.uint8)
        with h5py.File(root / f"{name}.h5", "w") as f:
            f["image"] = rng.random((5, 16, 12)).astype(np.float32)
            f["label"] = raws[name]
            f["scribble"] = np.zeros((5, 16, 12), np.uint16)
    return raws


def test_acdc_h5_roundtrip_and_spacing(tmp_path):
    raws = _make_h5(tmp_path / "src", np.random.default_rng(4))
    meta = convert("acdc-h5", tmp_path / "src", tmp_path / "dst", spacing=(8.0, 1.25, 1.3))
    assert meta["spacing"] == [8.0, 1.25, 1.3] and "--spacing" in meta["spacing_note"]
    for name, raw in raws.items():
        lab, geom = read_label(case_files(tmp_path / "dst", name)[1])
        assert np.array_equal(lab, raw) and geom.spacing == pytest.approx((8.0, 1.25, 1.3))
    default = convert("acdc-h5", tmp_path / "src", tmp_path / "dst2")
    assert default["spacing"] == [10.0, 1.5625, 1.5625]


def test_nnunet_validate_and_copy(tmp_path):
    src = make_synthetic_dataset(tmp_path / "src", num_cases=2, seed=0, shape=(16, 16, 16))
    meta = convert("nnunet", src, tmp_path / "dst")
    assert meta["numTraining"] == 2 and validate_dataset(tmp_path / "dst")["labels"] == meta["labels"]
    a, _ = read_label(case_files(src, "synth_001")[1])
    b, _ = read_label(case_files(tmp_path / "dst", "synth_001")[1])
    assert np.array_equal(a, b)


def test_cli_convert_and_overwrite(tmp_path, capsys):
    _make_h5(tmp_path / "src", np.random.default_rng(5))
    assert main(["convert", "acdc-h5", str(tmp_path / "src"), str(tmp_path / "dst")]) == 0
    assert main(["convert", "acdc-h5", str(tmp_path / "src"), str(tmp_path / "dst")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["convert", "acdc-h5", str(tmp_path / "src"), str(tmp_path / "dst"), "--overwrite"]) == 0
    assert main(["convert", "acdc-h5", str(tmp_path / "src"), str(tmp_path / "src" / "out")]) == 2


# ---------------------------------------------------------------- bad input: clear error, no output


def _fails(tmp_path: Path, fmt: str, match: str, names: list[str]) -> None:
    with pytest.raises(ValueError, match=match) as info:
        convert(fmt, tmp_path / "src", tmp_path / "out" / "dst")
    for name in names:
        assert name in str(info.value), f"error does not name {name}: {info.value}"
    leftovers = list((tmp_path / "out").iterdir()) if (tmp_path / "out").exists() else []
    assert leftovers == [], f"partial output left behind: {leftovers}"


def test_bad_missing_modality(tmp_path):
    make_brats(tmp_path / "src")
    (tmp_path / "src" / "BraTS2021_00001" / "BraTS2021_00001_t2.nii.gz").unlink()
    _fails(tmp_path, "brats", "missing modality", ["BraTS2021_00001", "T2"])


def test_bad_modality_shape(tmp_path):
    make_brats(tmp_path / "src")
    bad = tmp_path / "src" / "BraTS2021_00001" / "BraTS2021_00001_t2.nii.gz"
    _save(bad, np.ones((12, 10, 9), np.float32))
    _fails(tmp_path, "brats", "geometry differs", [bad.name])


def test_bad_label_affine(tmp_path):
    make_brats(tmp_path / "src")
    bad = tmp_path / "src" / "BraTS2021_00000" / "BraTS2021_00000_seg.nii.gz"
    shifted = AFFINE.copy()
    shifted[0, 3] = 5.0
    _save(bad, np.zeros(SHAPE, np.uint8), shifted)
    _fails(tmp_path, "brats", "differs from the images", [bad.name])


def test_bad_label_shape(tmp_path):
    make_brats(tmp_path / "src")
    bad = tmp_path / "src" / "BraTS2021_00000" / "BraTS2021_00000_seg.nii.gz"
    _save(bad, np.zeros((12, 10, 7), np.uint8))
    _fails(tmp_path, "brats", "differs from the images", [bad.name])


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_bad_nan_inf(tmp_path, value):
    make_brats(tmp_path / "src")
    bad = tmp_path / "src" / "BraTS2021_00001" / "BraTS2021_00001_flair.nii.gz"
    img = np.ones(SHAPE, np.float32)
    img[3, 3, 3] = value
    _save(bad, img)
    _fails(tmp_path, "brats", "NaN or Inf", [bad.name])


def test_bad_label_value_outside_set(tmp_path):
    make_brats(tmp_path / "src")
    bad = tmp_path / "src" / "BraTS2021_00001" / "BraTS2021_00001_seg.nii.gz"
    _save(bad, np.full(SHAPE, 3, np.uint8))  # 3 does not exist in the 2021 scheme (1/2/4)
    _fails(tmp_path, "brats", "outside the declared set", [bad.name, "[3]"])


def test_bad_non_integer_label(tmp_path):
    make_brats(tmp_path / "src")
    bad = tmp_path / "src" / "BraTS2021_00000" / "BraTS2021_00000_seg.nii.gz"
    _save(bad, np.full(SHAPE, 1.5, np.float32))
    _fails(tmp_path, "brats", "non-integer", [bad.name])


def test_bad_2d_image(tmp_path):
    make_brats(tmp_path / "src")
    bad = tmp_path / "src" / "BraTS2021_00000" / "BraTS2021_00000_t1.nii.gz"
    _save(bad, np.ones((12, 10), np.float32))
    _fails(tmp_path, "brats", "expected a 3D volume, got 2D", [bad.name])


def test_bad_4d_image(tmp_path):
    make_brats(tmp_path / "src")
    bad = tmp_path / "src" / "BraTS2021_00000" / "BraTS2021_00000_t1.nii.gz"
    _save(bad, np.ones(SHAPE + (2,), np.float32))
    _fails(tmp_path, "brats", "expected a 3D volume, got 4D", [bad.name])


def test_bad_3d_where_msd_expects_4d(tmp_path):
    src = tmp_path / "src"
    _save(src / "imagesTr" / "BRATS_001.nii.gz", np.ones(SHAPE, np.float32))
    _save(src / "labelsTr" / "BRATS_001.nii.gz", np.zeros(SHAPE, np.uint8))
    _fails(tmp_path, "msd-brain", "expected 4D", ["BRATS_001.nii.gz"])


def test_bad_truncated_nifti(tmp_path):
    make_brats(tmp_path / "src")
    bad = tmp_path / "src" / "BraTS2021_00001" / "BraTS2021_00001_t1ce.nii.gz"
    data = bad.read_bytes()
    assert gzip.decompress(data)  # a valid file before truncation
    bad.write_bytes(data[: len(data) // 2])
    _fails(tmp_path, "brats", "truncated or corrupt", [bad.name])


def test_bad_truncated_h5(tmp_path):
    _make_h5(tmp_path / "src", np.random.default_rng(6))
    bad = tmp_path / "src" / "patient001_frame12.h5"
    bad.write_bytes(bad.read_bytes()[:1000])
    _fails(tmp_path, "acdc-h5", "truncated or corrupt", [bad.name])


def test_bad_empty_input(tmp_path):
    (tmp_path / "src" / "sub").mkdir(parents=True)
    _fails(tmp_path, "brats", "empty", [str(tmp_path / "src")])


def test_bad_nnunet_missing_label(tmp_path):
    src = make_synthetic_dataset(tmp_path / "src", num_cases=2, seed=0, shape=(16, 16, 16))
    (src / "labelsTr" / "synth_001.nii.gz").unlink()
    _fails(tmp_path, "nnunet", "missing", ["synth_001"])


def test_bad_acdc_missing_info(tmp_path):
    _make_acdc(tmp_path / "src", np.random.default_rng(7))
    (tmp_path / "src" / "training" / "patient002" / "Info.cfg").unlink()
    _fails(tmp_path, "acdc", "missing", ["patient002", "Info.cfg"])


def test_bad_spacing_and_format(tmp_path):
    _make_h5(tmp_path / "src", np.random.default_rng(8))
    with pytest.raises(ValueError, match="three positive sizes"):
        convert("acdc-h5", tmp_path / "src", tmp_path / "dst", spacing=(0.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="unknown format"):
        convert("dicom", tmp_path / "src", tmp_path / "dst")
    assert not (tmp_path / "dst").exists()
