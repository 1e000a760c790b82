"""Prediction writes label maps in the input's exact geometry with the dataset's label values."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from lightmedseg.checkpoint import save_model

from lightmedseg.model.factory import build_model
from lightmedseg.config import load_config
from lightmedseg.inference.pipeline import predict
from lightmedseg.inference.predictor import Predictor, plain_forward

LABELS = {"background": 0, "NCR": 1, "ED": 2, "ET": 4}
LPS_ANISO = np.array([[-1.2, 0, 0, 10.0], [0, -0.8, 0, 3.0], [0, 0, 3.0, -5.0], [0, 0, 0, 1]])


def _oblique() -> np.ndarray:
    c, s = np.cos(0.3), np.sin(0.3)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.array([[1, 0, 0], [0, np.cos(0.2), -np.sin(0.2)], [0, np.sin(0.2), np.cos(0.2)]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag([0.7, 1.9, 2.4])
    aff[:3, 3] = [-4.0, 7.0, 1.5]
    return aff


def _model(tmp_path: Path, in_channels: int = 4, labels=LABELS, tta: bool = False) -> Path:
    torch.manual_seed(0)
    cfg = load_config("demo", overrides=["infer.roi_size=[32,32,32]", f"model.in_channels={in_channels}",
                                         f"infer.tta={str(tta).lower()}"])
    if labels is not None:
        cfg["labels"] = labels
    path = tmp_path / "run" / "model_best.safetensors"
    save_model(path, build_model(cfg), cfg)
    return path.parent


def _write_case(folder: Path, case: str, shape_xyz, affine, channels: int, seed: int = 0, qform: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for c in range(channels):
        img = nib.Nifti1Image(rng.normal(size=shape_xyz).astype(np.float32) + 1.0, affine)
        if qform:
            img.set_qform(affine, code=1)
            img.set_sform(affine, code=1)
        nib.save(img, str(folder / f"{case}_{c:04d}.nii.gz"))


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _assert_same_geometry(out: nib.Nifti1Image, ref: nib.Nifti1Image) -> None:
    assert out.shape == ref.shape
    np.testing.assert_allclose(out.affine, ref.affine, atol=1e-5)
    assert nib.aff2axcodes(out.affine) == nib.aff2axcodes(ref.affine)
    np.testing.assert_allclose(out.header.get_zooms()[:3], ref.header.get_zooms()[:3], rtol=1e-6)
    assert out.header.get_qform(coded=True)[1] == ref.header.get_qform(coded=True)[1]
    assert out.header.get_sform(coded=True)[1] == ref.header.get_sform(coded=True)[1]


@pytest.mark.parametrize("affine,qform", [(LPS_ANISO, False), (_oblique(), True)])
def test_geometry_and_label_values(tmp_path, affine, qform):
    run = _model(tmp_path)
    _write_case(tmp_path / "in", "c1", (37, 41, 23), affine, 4, qform=qform)
    report = predict(tmp_path / "in", tmp_path / "out", run, progress=False, probabilities=True)
    assert report.written == [tmp_path / "out" / "c1.nii.gz"]
    out = nib.load(str(report.written[0]))
    _assert_same_geometry(out, nib.load(str(tmp_path / "in" / "c1_0000.nii.gz")))
    values = set(np.unique(np.asarray(out.dataobj)).tolist())
    assert values <= set(LABELS.values()) and values  # dataset values (4, never index 3)
    assert np.issubdtype(out.get_data_dtype(), np.integer)
    prob = nib.load(str(tmp_path / "out" / "probabilities" / "c1.nii.gz"))
    assert prob.shape == (37, 41, 23, 4)
    p = np.asarray(prob.dataobj)
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-4)
    lab = np.asarray(out.dataobj)
    assert np.array_equal(np.asarray([0, 1, 2, 4])[p.argmax(-1)], lab)


def test_crop_outside_foreground_is_background(tmp_path):
    run = _model(tmp_path)
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for c in range(4):
        data = np.zeros((30, 26, 19), np.float32)
        data[5:20, 4:18, 3:15] = rng.normal(size=(15, 14, 12)) + 2  # "brain" box; zeros outside are cropped
        nib.save(nib.Nifti1Image(data, LPS_ANISO), str(folder / f"b_{c:04d}.nii.gz"))
    predict(folder, tmp_path / "out", run, progress=False)
    lab = np.asarray(nib.load(str(tmp_path / "out" / "b.nii.gz")).dataobj)
    inside = np.zeros(lab.shape, bool)
    inside[5:20, 4:18, 3:15] = True
    assert lab.shape == (30, 26, 19)
    assert not lab[~inside].any()


def test_single_channel_folder_without_channel_suffix(tmp_path):
    run = _model(tmp_path, in_channels=1, labels={"background": 0, "RV": 1, "Myo": 2, "LV": 3})
    folder = tmp_path / "acdc"
    folder.mkdir()
    for name in ("patient001_frame01", "patient001_frame12"):
        nib.save(nib.Nifti1Image(np.random.default_rng(2).random((27, 22, 7)).astype(np.float32), _oblique()),
                 str(folder / f"{name}.nii.gz"))
    report = predict(folder, tmp_path / "out", run, progress=False)
    assert sorted(p.name for p in report.written) == ["patient001_frame01.nii.gz", "patient001_frame12.nii.gz"]
    assert nib.load(str(report.written[0])).shape == (27, 22, 7)


def test_mirroring_tta_is_flip_equivariant():
    # One window covers the whole 32^3 volume, so averaging over all 8 flips makes the prediction of a
    # flipped input the flip of the prediction; without TTA a random network is not equivariant.
    torch.manual_seed(0)
    cfg = load_config("demo", overrides=["infer.roi_size=[32,32,32]", "model.in_channels=1"])
    cfg["labels"] = LABELS
    model = build_model(cfg)
    image = np.random.default_rng(3).normal(size=(1, 32, 32, 32)).astype(np.float32)
    flipped = image[:, ::-1, :, ::-1].copy()
    for tta, equal in ((True, True), (False, False)):
        pred = Predictor(cfg, plain_forward(model), tta=tta)
        a = pred.predict_image(image, probabilities=True).probabilities
        b = pred.predict_image(flipped, probabilities=True).probabilities[:, ::-1, :, ::-1]
        assert np.allclose(a, b, atol=1e-5) == equal


def test_skip_existing_and_overwrite(tmp_path):
    run = _model(tmp_path)
    _write_case(tmp_path / "in", "c1", (20, 18, 17), LPS_ANISO, 4)
    predict(tmp_path / "in", tmp_path / "out", run, progress=False)
    target = tmp_path / "out" / "c1.nii.gz"
    target.write_bytes(b"sentinel")
    again = predict(tmp_path / "in", tmp_path / "out", run, progress=False)
    assert again.skipped == [target] and target.read_bytes() == b"sentinel"
    redo = predict(tmp_path / "in", tmp_path / "out", run, progress=False, overwrite=True)
    assert redo.written == [target] and nib.load(str(target)).shape == (20, 18, 17)
    # a single-case file output is refused, not skipped
    single = tmp_path / "single.nii.gz"
    predict(tmp_path / "in" / "c1_0002.nii.gz", single, run, progress=False)
    with pytest.raises(FileExistsError, match="--overwrite"):
        predict(tmp_path / "in" / "c1_0002.nii.gz", single, run, progress=False)


def test_missing_labels_in_config_writes_indices(tmp_path):
    run = _model(tmp_path, labels=None)
    _write_case(tmp_path / "in", "c1", (17, 17, 17), LPS_ANISO, 4)
    with pytest.warns(UserWarning, match="no 'labels'"):
        predict(tmp_path / "in", tmp_path / "out", run, progress=False)
    assert set(np.unique(np.asarray(nib.load(str(tmp_path / "out" / "c1.nii.gz")).dataobj))) <= {0, 1, 2, 3}


def test_fast_path_matches_reference_and_forward_fn_hook(tmp_path):
    run = _model(tmp_path)
    _write_case(tmp_path / "in", "c1", (33, 20, 18), LPS_ANISO, 4)
    predict(tmp_path / "in", tmp_path / "fast", run, progress=False, probabilities=True, precision="fp32",
            backend="torch")
    predict(tmp_path / "in", tmp_path / "ref", run, progress=False, probabilities=True, reference=True)
    pf = np.asarray(nib.load(str(tmp_path / "fast" / "probabilities" / "c1.nii.gz")).dataobj)
    pr = np.asarray(nib.load(str(tmp_path / "ref" / "probabilities" / "c1.nii.gz")).dataobj)
    assert np.abs(pf - pr).max() < 1e-4
    calls = []

    def counting_forward(x: torch.Tensor) -> torch.Tensor:  # a plugged-in forward_fn is what runs
        calls.append(tuple(x.shape))
        return torch.zeros(x.shape[0], 4, *x.shape[2:])

    predict(tmp_path / "in", tmp_path / "hook", run, progress=False, forward_fn=counting_forward)
    assert calls and all(s[2:] == (32, 32, 32) for s in calls)  # padded to 48x32x32, 32^3 windows
    assert not np.asarray(nib.load(str(tmp_path / "hook" / "c1.nii.gz")).dataobj).any()  # all-zero logits -> background


def test_msd_style_4d_input(tmp_path):
    run = _model(tmp_path)
    (tmp_path / "msd").mkdir()
    img = nib.Nifti1Image(np.random.default_rng(4).normal(size=(30, 25, 19, 4)).astype(np.float32), LPS_ANISO)
    img.header["pixdim"][4] = 2.5  # a time step in the source header must not leak into the outputs
    nib.save(img, str(tmp_path / "msd" / "BRATS_001.nii.gz"))
    predict(tmp_path / "msd" / "BRATS_001.nii.gz", tmp_path / "out" / "seg.nii.gz", run, progress=False, probabilities=True)
    out = nib.load(str(tmp_path / "out" / "seg.nii.gz"))
    assert out.shape == (30, 25, 19) and np.allclose(out.affine, LPS_ANISO)
    prob = nib.load(str(tmp_path / "out" / "probabilities" / "seg.nii.gz"))
    assert prob.shape == (30, 25, 19, 4) and prob.header.get_zooms()[3] == 1.0


def test_precision_switch(tmp_path):
    from lightmedseg.hardware import native_bf16
    from lightmedseg.inference.backends import resolve_precision
    from lightmedseg.inference.predictor import PredictionError

    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu, fast=True) is None
    assert resolve_precision("bf16", cpu, fast=True) == torch.bfloat16
    assert resolve_precision("auto", cpu, fast=True) == (torch.bfloat16 if native_bf16() else None)
    assert resolve_precision("auto", cpu, fast=False) is None  # reference path and baselines stay fp32
    with pytest.raises(PredictionError, match="needs the fast path"):
        resolve_precision("bf16", cpu, fast=False)
    with pytest.raises(PredictionError, match="expected one of"):
        resolve_precision("fp16", cpu, fast=True)
    run = _model(tmp_path)
    _write_case(tmp_path / "in", "c1", (33, 20, 18), LPS_ANISO, 4)
    messages: list[str] = []
    predict(tmp_path / "in", tmp_path / "bf16", run, progress=False, precision="bf16", backend="torch",
            log=messages.append)
    assert any("fast path, bf16" in m for m in messages)
    out = nib.load(str(tmp_path / "bf16" / "c1.nii.gz"))
    assert out.shape == (33, 20, 18)
