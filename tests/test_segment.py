"""lightmedseg.segment() and predict are one path; formats, geometry rules, label names and CLI options."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

import lightmedseg
from lightmedseg.checkpoint import save_model
from lightmedseg.model.factory import build_model
from lightmedseg.cli.main import main
from lightmedseg.config import load_config
from lightmedseg.data.io import ImageGeometry
from lightmedseg.inference.cards import load_card, with_card
from lightmedseg.inference.geometry import (
    RESAMPLE_TOLERANCE, SPACING_WARN_FACTOR, from_training_grid, geometry_notes, resample_decision,
    spacing_out_of_tolerance, to_training_grid, training_geometry,
)
from lightmedseg.inference.options import pick_device
from lightmedseg.inference.pipeline import predict
from lightmedseg.inference.predictor import PredictionError, Predictor
from lightmedseg.inference.segment import GeometryWarning, Segmenter

sitk = pytest.importorskip("SimpleITK")

ACDC_SPACING = (10.0, 1.5625, 1.5625)


def _heart(shape=(8, 40, 36)) -> np.ndarray:
    """A bright ellipsoid in a dark field (z, y, x), smooth enough to survive resampling."""
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    r = np.sqrt((z / 0.8) ** 2 + (y / 0.6) ** 2 + (x / 0.5) ** 2)
    return (100.0 / (1 + np.exp((r - 0.7) * 12)) + 5).astype(np.float32)


def _itk(array: np.ndarray, spacing_xyz=(1.5625, 1.5625, 10.0)) -> "sitk.Image":
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(spacing_xyz)
    img.SetOrigin((-20.5, 13.25, 4.0))
    c, s = np.cos(0.2), np.sin(0.2)
    img.SetDirection((c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0))
    return img


def _threshold_forward(x: torch.Tensor) -> torch.Tensor:
    """Logits that segment normalised intensity > 0.5 as class 3 (LV): a model with a known answer."""
    v = x[:, :1]
    return torch.cat([0.5 - v, v.new_full(v.shape, -5.0), v.new_full(v.shape, -5.0), v - 0.5], dim=1) * 20


def _tiny_config_and_model(geometry: dict | None = None) -> tuple[torch.nn.Module, dict]:
    cfg = load_config("demo", overrides=["infer.roi_size=[32,32,32]", "model.in_channels=1"])
    cfg["labels"] = {"background": 0, "a": 1, "b": 2, "c": 3}
    cfg["model"]["num_classes"] = 4
    if geometry is not None:
        cfg["geometry"] = geometry
    return build_model(cfg), cfg


def _tiny_model(tmp_path: Path, geometry: dict | None = None) -> Path:
    path = tmp_path / "run" / "model_best.safetensors"
    save_model(path, *_tiny_config_and_model(geometry))
    return path.parent


def test_segment_nrrd_equals_cli_predict_on_nifti(tmp_path: Path) -> None:
    """The README's promise: the Python call on an .nrrd gives what the CLI gives on the same volume as NIfTI."""
    array = _heart()
    sitk.WriteImage(_itk(array), str(tmp_path / "case.nrrd"))
    (tmp_path / "in").mkdir()
    sitk.WriteImage(_itk(array), str(tmp_path / "in" / "case.nii.gz"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GeometryWarning)
        seg = lightmedseg.segment(str(tmp_path / "case.nrrd"), model="acdc", device="cpu")
    assert isinstance(seg, nib.Nifti1Image)
    assert main(["predict", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-m", "acdc", "-q", "--device", "cpu"]) == 0
    cli = nib.load(str(tmp_path / "out" / "case.nii.gz"))
    np.testing.assert_array_equal(np.asarray(seg.dataobj), np.asarray(cli.dataobj))
    np.testing.assert_allclose(seg.affine, cli.affine, atol=1e-5)
    assert seg.header.get_intent()[0] == "label" and b"1=RV" in seg.header["descrip"].tobytes()
    assert json.loads((tmp_path / "out" / "labels.json").read_text()) == {"0": "background", "1": "RV", "2": "Myo", "3": "LV"}
    ctbl = (tmp_path / "out" / "labels.ctbl").read_text().splitlines()
    assert ctbl[1].startswith("0 background 0 0 0 0") and ctbl[2].startswith("1 RV ")


def test_mha_in_mha_out_keeps_geometry_exactly(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    src = _itk(_heart())
    sitk.WriteImage(src, str(tmp_path / "in" / "case.mha"))
    report = predict(tmp_path / "in", tmp_path / "out", _tiny_model(tmp_path), device="cpu", progress=False,
                     output_format="input", forward_fn=_threshold_forward, log=lambda m: None)
    assert report.written == [tmp_path / "out" / "case.mha"]
    out = sitk.ReadImage(str(tmp_path / "out" / "case.mha"))
    assert out.GetSize() == src.GetSize() and out.GetSpacing() == src.GetSpacing()
    assert out.GetOrigin() == src.GetOrigin() and out.GetDirection() == src.GetDirection()
    labels = sitk.GetArrayFromImage(out)
    assert set(np.unique(labels)) == {0, 3}
    assert (tmp_path / "out" / "labels.json").is_file() and (tmp_path / "out" / "labels.ctbl").is_file()


def test_output_file_name_picks_the_format_and_sidecars_sit_beside_it(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    sitk.WriteImage(_itk(_heart()), str(tmp_path / "in" / "case.nii.gz"))
    predict(tmp_path / "in" / "case.nii.gz", tmp_path / "out" / "seg.nrrd", _tiny_model(tmp_path), device="cpu",
            progress=False, forward_fn=_threshold_forward, log=lambda m: None)
    assert sitk.ReadImage(str(tmp_path / "out" / "seg.nrrd")).GetSize() == (36, 40, 8)
    assert json.loads((tmp_path / "out" / "seg.labels.json").read_text())["3"] == "c"


def test_dicom_folder_through_the_cli(tmp_path: Path) -> None:
    from test_readers import write_dicom_series

    write_dicom_series(tmp_path / "series", np.rint(_heart()).astype(np.int16))
    rc = main(["predict", "-i", str(tmp_path / "series"), "-o", str(tmp_path / "out"), "-m", str(_tiny_model(tmp_path)),
               "-q", "--device", "cpu"])
    assert rc == 0
    out = nib.load(str(tmp_path / "out" / "series.nii.gz"))
    assert out.shape == (36, 40, 8)


def test_segment_takes_a_nibabel_image(tmp_path: Path) -> None:
    img = nib.Nifti1Image(_heart().transpose(2, 1, 0), np.diag([1.5625, 1.5625, 10.0, 1.0]))
    seg = Segmenter(_tiny_model(tmp_path), "cpu", forward_fn=_threshold_forward)(img)
    assert seg.shape == img.shape
    np.testing.assert_array_equal(seg.affine, img.affine)
    assert 3 in np.unique(np.asarray(seg.dataobj))


def test_geometry_notes_name_the_factor_and_the_axes() -> None:
    cfg = {"geometry": {"spacing": list(ACDC_SPACING), "orientation": "RAS"}}
    same = ImageGeometry.from_spacing((8, 40, 36), (9.0, 1.3, 1.3))  # within the factor, RAS
    assert geometry_notes(same, cfg) == []
    thin = ImageGeometry.from_spacing((8, 40, 36), (5.0, 1.5625, 1.5625))
    (note,) = geometry_notes(thin, cfg)
    assert f"more than {SPACING_WARN_FACTOR}x along z" in note and "--no-resample" in note
    lps = ImageGeometry((8, 40, 36), ACDC_SPACING, np.diag([-1.5625, -1.5625, 10.0, 1.0]))
    assert any("voxel axes are LPS" in n for n in geometry_notes(lps, cfg))
    assert geometry_notes(thin, {}) == []  # a model that does not know its spacing stays silent


def test_bad_training_geometry_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="geometry.spacing"):
        training_geometry({"geometry": {"spacing": [1, 2]}})
    with pytest.raises(ValueError, match="axis codes"):
        training_geometry({"geometry": {"spacing": [1, 1, 1], "orientation": "RRS"}})


def test_resampling_round_trip_is_on_the_input_grid() -> None:
    cfg = {"geometry": {"spacing": [4.0, 1.0, 1.0], "orientation": "RAS"}}
    affine = np.array([[-2.0, 0, 0, 5.0], [0, 2.0, 0, -3.0], [0, 0, 8.0, 1.0], [0, 0, 0, 1]])  # LAS, 8 x 2 x 2 mm
    image = _heart((8, 20, 18))[None]
    geometry = ImageGeometry((8, 20, 18), (8.0, 2.0, 2.0), affine)
    on_grid, grid_affine = to_training_grid(image, geometry, cfg)
    assert abs(on_grid.shape[1] - 16) <= 1 and abs(on_grid.shape[2] - 40) <= 1 and abs(on_grid.shape[3] - 36) <= 1
    np.testing.assert_allclose(np.abs(np.diag(grid_affine)[:3]), [1.0, 1.0, 4.0])
    assert grid_affine[0, 0] > 0  # reoriented to RAS
    back = from_training_grid(on_grid, grid_affine, geometry)
    assert back.shape == image.shape
    assert np.abs(back - image).max() < 0.25 * np.ptp(image)
    assert np.abs(back - image).mean() < 0.02 * np.ptp(image)


def test_resample_predicts_on_the_training_grid_and_returns_the_input_grid(tmp_path: Path, caplog) -> None:
    model = _tiny_model(tmp_path, geometry={"spacing": [5.0, 0.8, 0.8], "orientation": "RAS"})
    img = nib.Nifti1Image(_heart((8, 40, 36)).transpose(2, 1, 0), np.diag([1.6, 1.6, 10.0, 1.0]))
    plain = Segmenter(model, "cpu", forward_fn=_threshold_forward, resample=False)
    with pytest.warns(GeometryWarning, match="differs from the model's training spacing"):
        a = np.asarray(plain(img).dataobj)
    resampled = Segmenter(model, "cpu", forward_fn=_threshold_forward, resample=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GeometryWarning)  # resampling removes the reason to warn
        seg = resampled(img)
    b = np.asarray(seg.dataobj)
    assert seg.shape == img.shape
    np.testing.assert_array_equal(seg.affine, img.affine)
    assert (a == b).mean() > 0.97 and 3 in np.unique(b)
    # the default (resample=None) resamples this input (2x off along every axis): the forced result, no warning
    with warnings.catch_warnings(), caplog.at_level("INFO", logger="lightmedseg.inference.segment"):
        warnings.simplefilter("error", GeometryWarning)
        default = Segmenter(model, "cpu", forward_fn=_threshold_forward)(img)
    np.testing.assert_array_equal(np.asarray(default.dataobj), b)
    assert "resampled to the training grid and back" in caplog.text  # segment() logs its decision too


def test_resample_decision_both_ways_and_its_log_line() -> None:
    cfg = {"geometry": {"spacing": list(ACDC_SPACING), "orientation": "RAS"}}
    near = ImageGeometry.from_spacing((8, 40, 36), (10.0, 1.45, 1.7))  # -7 % and +9 %: within 10 %
    far = ImageGeometry.from_spacing((8, 40, 36), (10.0, 0.78, 0.78))  # the 0.78 mm reconstruction
    assert spacing_out_of_tolerance(near.spacing, ACDC_SPACING) == []
    assert spacing_out_of_tolerance(far.spacing, ACDC_SPACING) == ["y", "x"]
    kept, moved = resample_decision(near, cfg), resample_decision(far, cfg)
    assert not kept.resample and "not resampled (within 10%)" in kept.line
    assert moved.resample and "along y, x" in moved.line and "0.78 x 0.78" in moved.line and "10 x 1.562" in moved.line
    assert not resample_decision(far, cfg, resample=False).resample  # --no-resample
    assert resample_decision(near, cfg, resample=True).resample  # --resample forces it
    assert not resample_decision(far, {}).resample  # no training spacing: nothing to resample to
    assert 0 < RESAMPLE_TOLERANCE < 0.5


def test_predict_resamples_by_default_logs_each_case_and_no_resample_opts_out(tmp_path: Path) -> None:
    model = _tiny_model(tmp_path, geometry={"spacing": [5.0, 0.8, 0.8], "orientation": "RAS"})
    (tmp_path / "in").mkdir()
    src = nib.Nifti1Image(_heart((8, 40, 36)).transpose(2, 1, 0), np.diag([1.6, 1.6, 10.0, 1.0]))
    nib.save(src, str(tmp_path / "in" / "far.nii.gz"))
    nib.save(nib.Nifti1Image(_heart((8, 40, 36)).transpose(2, 1, 0), np.diag([0.8, 0.8, 5.2, 1.0])),
             str(tmp_path / "in" / "near.nii.gz"))
    lines: list[str] = []
    predict(tmp_path / "in", tmp_path / "out", model, device="cpu", progress=False, forward_fn=_threshold_forward,
            log=lines.append)
    (far,) = [m for m in lines if m.startswith("far: ")]
    (near,) = [m for m in lines if m.startswith("near: ")]
    assert "resampled to the training grid and back" in far and "not resampled" in near
    out = nib.load(str(tmp_path / "out" / "far.nii.gz"))
    assert out.shape == src.shape and np.allclose(out.affine, src.affine)  # mapped back to the input grid
    lines.clear()
    rc = main(["predict", "-i", str(tmp_path / "in" / "far.nii.gz"), "-o", str(tmp_path / "plain.nii.gz"),
               "-m", str(model), "-q", "--device", "cpu", "--no-resample"])
    assert rc == 0 and nib.load(str(tmp_path / "plain.nii.gz")).shape == src.shape


def test_resample_without_training_geometry_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not record its training spacing"):
        Segmenter(_tiny_model(tmp_path), "cpu", resample=True)


def test_shipped_card_fills_the_config() -> None:
    card = load_card("acdc")
    assert card["geometry"]["spacing"] == list(ACDC_SPACING)
    cfg = with_card({"model": {"num_classes": 4}}, "acdc")
    assert training_geometry(cfg) == {"spacing": ACDC_SPACING, "orientation": "RAS"}
    assert with_card({"geometry": {"spacing": [1, 1, 1]}}, "acdc")["geometry"]["spacing"] == [1, 1, 1]  # config wins


def test_models_command_lists_the_shipped_card(capsys) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    card = load_card("acdc")
    assert "acdc:" in out and "10 x 1.5625 x 1.5625 mm" in out and "1 RV" in out
    assert f"mean Dice {card['validation']['mean_dice']}%" in out  # the card's own score, whatever ships
    assert "acdc_v" not in out  # one shipped ACDC model (issue 27); the earlier ones load from their files
    acdc = out
    largest = ", ".join(card["postprocess"]["keep_largest"])
    assert f"post-processing (default): largest connected component of {largest};" in acdc
    card_tta = card.get("predict", {}).get("tta")
    mode = card_tta if isinstance(card_tta, str) else "mirror"
    assert (f"test-time augmentation (default): {mode}, 8 passes" in acdc) == bool(card_tta)


def test_device_names() -> None:
    assert pick_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("gpu") == "cuda" and pick_device("GPU:1") == "cuda:1" and pick_device("cpu") == "cpu"
    assert pick_device("mps") == "mps"


def test_mps_is_accepted_where_torch_has_it_and_refused_with_the_reason_elsewhere(monkeypatch) -> None:
    from lightmedseg.inference import backends

    why = backends.mps_unavailable_reason()
    if why is None:  # an Apple-silicon Mac
        assert backends.resolve_device("mps").type == "mps"
    else:
        with pytest.raises(PredictionError, match=r"--device mps: .*MPS.*\(use --device cpu\)"):
            backends.resolve_device("mps")
    monkeypatch.setattr(backends, "mps_unavailable_reason", lambda: None)
    assert backends.resolve_device("mps") == torch.device("mps")
    assert backends.auto_backend("acdc", torch.device("mps")) == ("torch", "")  # OpenVINO is CPU-only


def test_a_local_folder_never_shadows_a_shipped_model_silently(tmp_path: Path, monkeypatch) -> None:
    # `convert acdc-h5 ... acdc` makes a dataset folder `acdc`; `predict -m acdc` beside it means the shipped
    # model and says so; a local `acdc` holding a model too is refused, naming both and how to pick
    from lightmedseg.checkpoint import SHIPPED_MODELS_DIR, CheckpointError, resolve_model_path

    monkeypatch.chdir(tmp_path)
    (tmp_path / "acdc" / "imagesTr").mkdir(parents=True)
    (tmp_path / "acdc" / "dataset.json").write_text("{}")
    seg = Segmenter("acdc", "cpu", backend="torch")
    assert "./acdc here holds no model, so -m acdc is the shipped model acdc" in seg.description
    assert seg.predictor.tta_mode == "rot90" and seg.names[3] == "LV"  # the shipped card applies
    assert resolve_model_path("acdc") == SHIPPED_MODELS_DIR / "acdc" / "model_best.safetensors"
    _tiny_model(tmp_path / "acdc")  # now ./acdc/run holds a model, ./acdc itself still none
    assert resolve_model_path("acdc").parent == SHIPPED_MODELS_DIR / "acdc"
    save_model(tmp_path / "acdc" / "model_best.safetensors", *_tiny_config_and_model())
    with pytest.raises(CheckpointError, match=r"both a local folder holding a model \./acdc and the shipped model acdc "
                                              r"exist; pass -m \./acdc for the local one, or -m .*pretrained.acdc for"):
        Segmenter("acdc", "cpu", backend="torch")
    assert resolve_model_path("./acdc") == Path("acdc/model_best.safetensors")
    assert Segmenter("./acdc", "cpu", backend="torch").names[1] == "a"  # the local model, no note


@pytest.mark.parametrize("args, message", [
    (["--overlap", "1.5"], "overlap must be in [0, 1)"),
    (["--sw-batch-size", "0"], "--sw-batch-size 0"),
    (["--device", "tpu"], "--device 'tpu'"),
] + ([] if torch.cuda.is_available() else [(["--device", "gpu"], "CUDA is not available")]))
def test_cli_option_errors_are_one_line(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    (tmp_path / "in").mkdir()
    sitk.WriteImage(_itk(_heart()), str(tmp_path / "in" / "case.mha"))
    rc = main(["predict", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-m", "acdc", "-q"] + args)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_cli_resamples_by_default_and_warns_about_spacing_with_no_resample(tmp_path: Path, capsys) -> None:
    (tmp_path / "in").mkdir()
    sitk.WriteImage(_itk(_heart(), spacing_xyz=(0.7, 0.7, 5.0)), str(tmp_path / "in" / "case.mha"))
    assert main(["predict", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-m", "acdc", "-q",
                 "--device", "cpu", "--overlap", "0.25", "--sw-batch-size", "2"]) == 0
    err = capsys.readouterr().err
    assert "case: spacing 5 x 0.7 x 0.7 mm, training 10 x 1.562 x 1.562 mm (z, y, x): resampled" in err
    assert "warning" not in err and "overlap 0.25" in err
    assert sitk.ReadImage(str(tmp_path / "out" / "case.nii.gz")).GetSize() == (36, 40, 8)  # the input grid
    assert main(["predict", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "plain"), "-m", "acdc", "-q",
                 "--device", "cpu", "--no-resample"]) == 0
    err = capsys.readouterr().err
    assert "not resampled (--no-resample)" in err and "warning: case: spacing 5 x 0.7 x 0.7 mm" in err


def test_keep_largest_removes_islands_per_class() -> None:
    from lightmedseg.inference.postprocess import keep_largest_component

    labels = np.zeros((10, 12, 12), np.int16)
    labels[1:5, 1:5, 1:5] = 1  # class 1: big blob ...
    labels[8, 10, 10] = 1  # ... and a stray voxel
    labels[6:9, 1:4, 6:9] = 2  # class 2: one blob, untouched
    labels[2, 8, 8] = 3  # class 3: two single voxels, one survives
    labels[7, 10, 1] = 3
    out = keep_largest_component(labels, [1, 2, 3])
    assert out[8, 10, 10] == 0 and (out == 1).sum() == 64
    np.testing.assert_array_equal(out == 2, labels == 2)
    assert (out == 3).sum() == 1
    diag = np.zeros((4, 4, 4), np.int16)
    diag[0, 0, 0] = diag[1, 1, 1] = 1  # touching corners: one 26-connected component
    np.testing.assert_array_equal(keep_largest_component(diag, [1]), diag)


def test_detached_components_are_removed_unless_nothing_touches() -> None:
    from lightmedseg.inference.postprocess import remove_detached_components

    labels = np.zeros((6, 12, 12), np.int16)
    labels[2:4, 2:7, 2:7] = 2  # "Myo" ring ...
    labels[2:4, 3:6, 3:6] = 3  # ... around an "LV" that touches it
    labels[1, 10, 10] = labels[0, 11, 11] = 3  # a detached "LV" pair, larger than nothing but far away
    labels[4, 7, 7] = 3  # touches the ring only across a corner (26-neighbourhood)
    out = remove_detached_components(labels, 3, [2])
    assert out[1, 10, 10] == out[0, 11, 11] == 0 and out[4, 7, 7] == 3
    np.testing.assert_array_equal(out[:, :8, :8], labels[:, :8, :8])
    no_anchor = np.where(labels == 2, 0, labels)  # nothing to touch: nothing is judged
    np.testing.assert_array_equal(remove_detached_components(no_anchor, 3, [2]), no_anchor)


def test_postprocess_keeps_the_largest_component_before_the_contact_rule() -> None:
    from lightmedseg.inference.postprocess import postprocess_labels, remove_detached_components

    labels = np.zeros((6, 12, 12), np.int16)
    labels[2:4, 2:7, 2:7] = 2
    labels[2:4, 3:6, 3:6] = 3  # the true LV inside the Myo ring
    labels[0:2, 9:12, 9:12] = 3  # a false "LV" far away ...
    labels[2, 10, 10] = 2  # ... touching a stray Myo speck (patient100's case)
    assert (remove_detached_components(labels, 3, [2]) == labels).all()  # the speck saves it on the raw map
    out = postprocess_labels(labels, [2], {3: [2]})  # the speck goes first, then the false LV
    assert (out[0:2, 9:12, 9:12] == 0).all() and out[2, 10, 10] == 0
    np.testing.assert_array_equal(out[:, :8, :8], labels[:, :8, :8])


def _ring_forward(x: torch.Tensor) -> torch.Tensor:
    """Logits: normalised intensity > 0.6 is class 3, 0.2-0.6 class 2 (a ring around it), else background."""
    v = x[:, :1]
    core, ring = v - 0.6, torch.minimum(v - 0.2, 0.6 - v)
    return torch.cat([0.2 - v, v.new_full(v.shape, -5.0), ring, core], dim=1) * 20


def _heart_with_speck(tmp_path: Path) -> Path:
    """``tmp_path/in/case.mha``: the ellipsoid plus one bright voxel far from it; returns a tiny model."""
    (tmp_path / "in").mkdir()
    array = _heart()
    array[1, 2, 2] = array.max()
    sitk.WriteImage(_itk(array), str(tmp_path / "in" / "case.mha"))
    return _tiny_model(tmp_path)


def test_require_contact_through_predict_and_card_default(tmp_path: Path) -> None:
    # A bright speck far from the ellipsoid is class 3 with no class-2 ring: removed by the card's
    # postprocess.require_contact (c must touch b), kept without a card or with require_contact=False.
    model = _heart_with_speck(tmp_path)

    def run(option, out: str) -> np.ndarray:
        predict(tmp_path / "in", tmp_path / out, model, device="cpu", progress=False, require_contact=option,
                forward_fn=_ring_forward, log=lambda m: None)
        return np.asarray(nib.load(str(tmp_path / out / "case.nii.gz")).dataobj)

    plain = run(None, "no_card")
    assert plain[2, 2, 1] == 3 and (plain == 2).any()
    (Path(model) / "card.json").write_text(json.dumps({"postprocess": {"require_contact": {"c": ["b"]}}}))
    carded = run(None, "card")
    assert carded[2, 2, 1] == 0 and (carded == 3).sum() == (plain == 3).sum() - 1
    np.testing.assert_array_equal(run(False, "card_overruled"), plain)
    np.testing.assert_array_equal(run({"3": [2]}, "by_value"), carded)
    with pytest.raises(Exception, match="not a foreground label"):
        run({"c": ["aorta"]}, "bad")


def test_keep_largest_through_predict(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    array = _heart()
    array[1, 2, 2] = array.max()  # a bright speck far from the heart becomes an island of class 3
    sitk.WriteImage(_itk(array), str(tmp_path / "in" / "case.mha"))
    model = _tiny_model(tmp_path)
    for flag, out in ((False, "plain"), (True, "kept")):
        predict(tmp_path / "in", tmp_path / out, model, device="cpu", progress=False, keep_largest=flag,
                forward_fn=_threshold_forward, log=lambda m: None)
    plain = np.asarray(nib.load(str(tmp_path / "plain" / "case.nii.gz")).dataobj)
    kept = np.asarray(nib.load(str(tmp_path / "kept" / "case.nii.gz")).dataobj)
    assert plain[2, 2, 1] == 3 and kept[2, 2, 1] == 0  # (x, y, z) order on disk
    assert (kept == 3).sum() == (plain == 3).sum() - 1


def _seeded_model(tmp_path: Path, name: str, seed: int, labels=None) -> Path:
    torch.manual_seed(seed)
    cfg = load_config("demo", overrides=["infer.roi_size=[32,32,32]", "model.in_channels=1"])
    cfg["labels"] = labels or {"background": 0, "a": 1, "b": 2, "c": 3}
    cfg["model"]["num_classes"] = len(cfg["labels"])
    path = tmp_path / name / "model_best.safetensors"
    save_model(path, build_model(cfg), cfg)
    return path.parent


def test_ensemble_averages_probabilities(tmp_path: Path) -> None:
    a, b = _seeded_model(tmp_path, "fold0", 1), _seeded_model(tmp_path, "fold1", 2)
    image = _heart((8, 20, 18))[None]
    geometry = ImageGeometry.from_spacing((8, 20, 18), ACDC_SPACING)
    pa, _ = Segmenter(a, "cpu", reference=True).predict(image, geometry, probabilities=True)
    pb, _ = Segmenter(b, "cpu", reference=True).predict(image, geometry, probabilities=True)
    ens = Segmenter([a, b], "cpu", reference=True)
    assert ens.description.startswith("ensemble of 2 models")
    pe, _ = ens.predict(image, geometry, probabilities=True)
    np.testing.assert_allclose(pe.probabilities, (pa.probabilities + pb.probabilities) / 2, atol=1e-6)
    np.testing.assert_array_equal(pe.labels, np.asarray([0, 1, 2, 3])[pe.probabilities.argmax(0)])
    assert not np.allclose(pa.probabilities, pb.probabilities, atol=1e-3)  # the members really differ


def test_ensemble_through_the_cli_and_its_errors(tmp_path: Path, capsys) -> None:
    (tmp_path / "in").mkdir()
    sitk.WriteImage(_itk(_heart()), str(tmp_path / "in" / "case.mha"))
    a, b = _seeded_model(tmp_path, "fold0", 1), _seeded_model(tmp_path, "fold1", 2)
    assert main(["predict", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-m", str(a), "-m", str(b),
                 "-q", "--device", "cpu"]) == 0
    assert "ensemble of 2 models" in capsys.readouterr().err
    other = _seeded_model(tmp_path, "other", 3, labels={"background": 0, "x": 1, "y": 2, "z": 4})
    rc = main(["predict", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out2"), "-m", str(a), "-m", str(other), "-q"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "members must agree" in err and len(err.splitlines()) == 1
    with pytest.raises(ValueError, match="cannot be combined with an ensemble"):
        Segmenter([a, b], "cpu", forward_fn=_threshold_forward)


def _card_ensemble(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A model folder whose card names two member files, as a shipped ensemble does."""
    a, b = _seeded_model(tmp_path, "fold0", 1), _seeded_model(tmp_path, "fold1", 2)
    folder = tmp_path / "carded"
    folder.mkdir()
    (folder / "model_best.safetensors").write_bytes((a / "model_best.safetensors").read_bytes())
    (folder / "member_2.safetensors").write_bytes((b / "model_best.safetensors").read_bytes())
    card = {"name": "carded", "predict": {"tta": False},
            "ensemble": {"members": ["model_best.safetensors", "member_2.safetensors"]}}
    (folder / "card.json").write_text(json.dumps(card))
    return folder, a, b


def test_a_card_ensemble_averages_its_members(tmp_path: Path) -> None:
    folder, a, b = _card_ensemble(tmp_path)
    image = _heart((8, 20, 18))[None]
    geometry = ImageGeometry.from_spacing((8, 20, 18), ACDC_SPACING)
    listed, _ = Segmenter([a, b], "cpu", reference=True, tta=False).predict(image, geometry, probabilities=True)
    carded = Segmenter(folder, "cpu", reference=True)
    assert carded.description.startswith("ensemble of 2 models") and len(carded.predictors) == 2
    got, _ = carded.predict(image, geometry, probabilities=True)
    np.testing.assert_allclose(got.probabilities, listed.probabilities, atol=1e-6)
    first = Segmenter(folder, "cpu", reference=True, ensemble=False)  # --no-ensemble: the first member only
    alone, _ = Segmenter(a, "cpu", reference=True, tta=False).predict(image, geometry, probabilities=True)
    np.testing.assert_allclose(first.predict(image, geometry, probabilities=True)[0].probabilities, alone.probabilities, atol=1e-6)
    assert len(Segmenter(folder / "member_2.safetensors", "cpu", reference=True).predictors) == 1  # a member file is one model
    assert lightmedseg.load_model(folder)[0] is not None  # one network: the folder's model_best, the first member


def test_a_card_ensemble_through_the_cli_and_its_errors(tmp_path: Path, capsys) -> None:
    folder, _, _ = _card_ensemble(tmp_path)
    (tmp_path / "in").mkdir()
    sitk.WriteImage(_itk(_heart()), str(tmp_path / "in" / "case.mha"))
    assert main(["predict", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-m", str(folder), "-q", "--device", "cpu"]) == 0
    assert "ensemble of 2 models" in capsys.readouterr().err
    assert main(["predict", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "one"), "-m", str(folder), "-q", "--device", "cpu",
                 "--no-ensemble"]) == 0
    assert "ensemble of" not in capsys.readouterr().err
    card = json.loads((folder / "card.json").read_text())
    from lightmedseg.cli.models import format_card

    assert "ensemble: 2 models (model_best.safetensors, member_2.safetensors)" in format_card("carded", card)
    card["ensemble"]["members"].append("missing.safetensors")
    (folder / "card.json").write_text(json.dumps(card))
    rc = main(["predict", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out2"), "-m", str(folder), "-q"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "ensemble member missing.safetensors does not exist" in err and len(err.splitlines()) == 1
    for bad in ({"members": []}, ["model_best.safetensors"], {"members": ["../fold0/model_best.safetensors"]},
                {"members": ["member_2.safetensors", "model_best.safetensors"]}):  # the first must be model_best
        card["ensemble"] = bad
        (folder / "card.json").write_text(json.dumps(card))
        with pytest.raises(PredictionError, match="card.json: .*ensemble"):
            Segmenter(folder, "cpu")


def test_progress_without_a_terminal_is_plain_lines(tmp_path: Path, capsys) -> None:
    (tmp_path / "in").mkdir()
    for name in ("a", "b"):
        sitk.WriteImage(_itk(_heart()), str(tmp_path / "in" / f"{name}.mha"))
    lines: list[str] = []
    predict(tmp_path / "in", tmp_path / "out", _tiny_model(tmp_path), device="cpu", progress=True,
            forward_fn=_threshold_forward, log=lines.append)
    assert [line.split(" (")[0] for line in lines if line.startswith("predict:")] == ["predict: 1/2 a", "predict: 2/2 b"]
    assert "\r" not in capsys.readouterr().err  # no tqdm carriage-return updates in a log file


def test_training_records_the_dataset_geometry(tmp_path: Path) -> None:
    from lightmedseg.training.setup import config_for_dataset

    ds = tmp_path / "ds"
    (ds / "imagesTr").mkdir(parents=True)
    for i, sz in enumerate((8.0, 10.0, 10.0)):
        nib.save(nib.Nifti1Image(np.zeros((6, 5, 4), np.float32), np.diag([1.5, 1.5, sz, 1.0])),
                 str(ds / "imagesTr" / f"c{i}_0000.nii.gz"))
    (ds / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "MRI"}, "labels": {"background": 0, "LV": 1}, "numTraining": 3, "file_ending": ".nii.gz"}))
    cfg = config_for_dataset(load_config("demo", overrides=["model.in_channels=1", "model.num_classes=2"]), ds)
    assert cfg["geometry"] == {"spacing": [10.0, 1.5, 1.5], "orientation": "RAS"}
    assert training_geometry(cfg) == {"spacing": (10.0, 1.5, 1.5), "orientation": "RAS"}


def test_seg_nrrd_output_is_a_slicer_segmentation(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    src = _itk(_heart())
    sitk.WriteImage(src, str(tmp_path / "in" / "case.mha"))
    predict(tmp_path / "in" / "case.mha", tmp_path / "out" / "case.seg.nrrd", _tiny_model(tmp_path), device="cpu",
            progress=False, forward_fn=_threshold_forward, log=lambda m: None)
    seg = sitk.ReadImage(str(tmp_path / "out" / "case.seg.nrrd"))
    assert seg.GetSize() == src.GetSize() and seg.GetOrigin() == src.GetOrigin()
    assert seg.GetMetaData("Segmentation_MasterRepresentation") == "Binary labelmap"
    assert [seg.GetMetaData(f"Segment{i}_Name") for i in range(3)] == ["a", "b", "c"]
    assert seg.GetMetaData("Segment2_LabelValue") == "3" and seg.GetMetaData("Segment2_Extent") == "0 35 0 39 0 7"
    assert (tmp_path / "out" / "case.seg.labels.json").is_file()


def test_window_progress_only_for_large_volumes(monkeypatch) -> None:
    import lightmedseg.inference.predictor as P

    seen = []
    real = P.sliding_window_inference
    monkeypatch.setattr(P, "sliding_window_inference", lambda *a, **k: seen.append(k["progress"]) or real(*a, **k))
    cfg = {"model": {"in_channels": 1, "num_classes": 4}, "data": {"normalization": "none", "patch_size": [16, 16, 16]},
           "infer": {"roi_size": [16, 16, 16]}, "labels": {"background": 0, "a": 1, "b": 2, "c": 3}}
    pred = P.Predictor(cfg, _threshold_forward, progress=True)
    pred.predict_logits(np.zeros((1, 16, 16, 16), np.float32))
    pred.predict_logits(np.zeros((1, 16, 48, 48), np.float32))  # 9 windows' worth
    assert seen == [False, True]


def test_output_and_quiet_have_one_spelling_with_old_aliases() -> None:
    from lightmedseg.cli.main import build_parser

    parser = build_parser()
    for argv in (["demo", "-o", "d", "-q"], ["demo", "--out", "d", "--no-progress"]):
        args = parser.parse_args(argv)
        assert args.out == "d" and args.no_progress
    assert parser.parse_args(["plot", "run", "-o", "c.png"]).out == parser.parse_args(["plot", "run", "--out", "c.png"]).out
    assert parser.parse_args(["predict", "-i", "a", "-o", "b", "-m", "acdc", "-q"]).quiet


def test_keep_largest_per_label_and_card_default(tmp_path: Path) -> None:
    # A speck of class 3 far from the heart: kept unless class 3 (by name or value) is post-processed; with
    # no option the model card's postprocess.keep_largest decides.
    model = _heart_with_speck(tmp_path)

    def speck(option, out: str) -> int:
        predict(tmp_path / "in", tmp_path / out, model, device="cpu", progress=False, keep_largest=option,
                forward_fn=_threshold_forward, log=lambda m: None)
        return int(np.asarray(nib.load(str(tmp_path / out / "case.nii.gz")).dataobj)[2, 2, 1])

    assert speck(["3"], "by_value") == 0 and speck([1, 2], "others") == 3
    assert speck(None, "no_card") == 3
    (Path(model) / "card.json").write_text(json.dumps({"postprocess": {"keep_largest": ["c"]}}))
    assert speck(None, "card") == 0 and speck(False, "card_overruled") == 3
    with pytest.raises(Exception, match="not a foreground label"):
        predict(tmp_path / "in", tmp_path / "bad", model, device="cpu", progress=False, keep_largest=["aorta"],
                forward_fn=_threshold_forward, log=lambda m: None)


def test_card_chooses_tta_unless_told(tmp_path: Path) -> None:
    # Without --tta/--no-tta the model card's predict.tta decides (then the config's infer.tta); an explicit
    # choice always wins. The mirrored passes must reach the forward: count them.
    model = _tiny_model(tmp_path)
    image = np.zeros((1, 32, 32, 32), dtype=np.float32)
    calls: list[int] = []

    def counting(x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return _threshold_forward(x)

    def passes(tta) -> int:
        calls.clear()
        geometry = ImageGeometry.from_spacing(image.shape[1:], (1, 1, 1))
        Segmenter(model, "cpu", tta=tta, forward_fn=counting).predict(image, geometry)
        return len(calls)

    assert passes(None) == 1  # no card, config says no TTA
    (Path(model) / "card.json").write_text(json.dumps({"predict": {"tta": True}}))
    assert passes(None) == 8 and passes(False) == 1


def test_card_names_the_tta_mode_and_true_follows_it(tmp_path: Path) -> None:
    # predict.tta may name a mode; tta=True (plain --tta) then means that mode, a named mode wins, and a
    # window that is not square in-plane refuses rot90 with the reason instead of failing in the network.
    model = _tiny_model(tmp_path)

    def mode(tta) -> str | None:
        return Segmenter(model, "cpu", tta=tta, forward_fn=_threshold_forward).predictor.tta_mode

    assert mode(True) == "mirror" and mode("rot90") == "rot90"
    (Path(model) / "card.json").write_text(json.dumps({"predict": {"tta": "rot90"}}))
    assert mode(None) == mode(True) == "rot90" and mode("mirror") == "mirror" and mode(False) is None
    with pytest.raises(PredictionError, match=r"expected true, false or one of \['mirror', 'rot90'\]"):
        mode("rotate")
    cfg = load_config("demo", overrides=["infer.roi_size=[32,32,16]", "model.in_channels=1"])
    with pytest.raises(PredictionError, match="two in-plane sizes must be equal"):
        Predictor(cfg, _threshold_forward, tta="rot90")
