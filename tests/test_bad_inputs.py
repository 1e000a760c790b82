"""The bad-input matrix of issue 13: nothing lost, nothing silently wrong.

Each case runs the CLI as a user would and asserts the exit status, that the message names the file or
key, that no output is left behind and that every input file is byte-for-byte unchanged.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from safetensors.torch import save_file

from lightmedseg.checkpoint import CONFIG_KEY, save_model

from lightmedseg.model.factory import build_model
from lightmedseg.cli.main import main
from lightmedseg.config import load_config
from lightmedseg.data.synth import make_synthetic_dataset

SHAPE = (17, 19, 21)  # (x, y, z) on disk: small, one 32^3 window


def _checksums(root: Path) -> dict[str, str]:
    """SHA-256 of every file below ``root`` (links followed), keyed by relative path."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _nifti(path: Path, data: np.ndarray | None = None, affine: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if data is None:
        data = np.random.default_rng(len(path.name)).normal(100, 10, SHAPE).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path


# what predict writes beside the label maps, before the first one (so a stopped run is resumed by a rerun)
SIDECARS = ["labels.ctbl", "labels.json", "provenance.json"]


def _files(folder: Path) -> list[str]:
    """Names of the files below ``folder`` (hidden temporaries included), sorted."""
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


def _config(channels: int) -> dict:
    cfg = load_config("demo", overrides=["infer.roi_size=[32,32,32]", f"model.in_channels={channels}"])
    cfg["labels"] = {"background": 0, "NCR": 1, "ED": 2, "ET": 4}
    return cfg


@pytest.fixture(scope="module")
def model1(demo_run) -> Path:
    """A 1-channel model file (untrained: only the file paths matter here)."""
    return demo_run("run1", in_channels=1).model_file


@pytest.fixture(scope="module")
def model4(demo_run) -> Path:
    return demo_run("run4", in_channels=4).model_file


def _run(capsys, *argv: str) -> tuple[int, str]:
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    return rc, err


def _predict(capsys, inp: Path, out: Path | str, model: Path, *extra: str) -> tuple[int, str]:
    return _run(capsys, "predict", "-i", inp, "-o", out, "-m", model, "--quiet", "--no-tta", *extra)


def _one_line_error(rc: int, err: str, *needles: str) -> None:
    lines = [ln for ln in err.strip().splitlines() if "error" in ln]
    assert rc == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], (n, err)


# -- 1. data lost: symlinks around "never write into the input folder" --------------------------------

@pytest.mark.parametrize("overwrite", [True, False])
def test_symlinked_input_never_leads_output_into_the_real_input_folder(tmp_path, capsys, model1, overwrite):
    images = tmp_path / "images"
    _nifti(images / "patient001_frame01.nii.gz")
    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "patient001_frame01.nii.gz").symlink_to(images / "patient001_frame01.nii.gz")
    before = _checksums(images)
    rc, err = _predict(capsys, tmp_path / "links", images, model1, *(["--overwrite"] if overwrite else []))
    _one_line_error(rc, err, str(images), "links resolved")
    assert _checksums(images) == before  # image not replaced, no stray file added


# -- 2. data lost: convert/synth --overwrite deleting a user's folder -----------------------------------

@pytest.mark.parametrize("command", ["synth", "convert"])
def test_overwrite_replaces_only_a_dataset_the_tool_wrote(tmp_path, capsys, command):
    src = make_synthetic_dataset(tmp_path / "src", num_cases=1, seed=0, shape=(16, 16, 16))
    dst = tmp_path / "dst"
    (dst / "sub").mkdir(parents=True)
    (dst / "notes.txt").write_text("my notes")
    (dst / "sub" / "f.txt").write_text("keep")
    argv = (["synth", dst, "--cases", "1", "--shape", "16", "16", "16"] if command == "synth"
            else ["convert", "nnunet", src, dst])
    before = _checksums(dst), _checksums(src)
    rc, err = _run(capsys, *argv, "--overwrite")
    _one_line_error(rc, err, str(dst), "written by lightmedseg")
    assert (_checksums(dst), _checksums(src)) == before
    # a dataset the tool wrote, with a user's file added, is refused too (the file is named)
    dst2 = make_synthetic_dataset(tmp_path / "dst2", num_cases=1, seed=1, shape=(16, 16, 16))
    (dst2 / "notes.txt").write_text("my notes")
    rc, err = _run(capsys, "synth", dst2, "--cases", "1", "--shape", "16", "16", "16", "--overwrite")
    _one_line_error(rc, err, "notes.txt", "did not write")
    assert (dst2 / "notes.txt").read_text() == "my notes"


# -- 3-8. silently wrong ---------------------------------------------------------------------------------

def test_two_files_with_one_case_id(tmp_path, capsys, model1):
    _nifti(tmp_path / "dup" / "scan.nii.gz")
    _nifti(tmp_path / "dup" / "scan.nii")
    rc, err = _predict(capsys, tmp_path / "dup", tmp_path / "out", model1)
    _one_line_error(rc, err, "scan.nii", "scan.nii.gz", "same case 'scan'")
    assert not (tmp_path / "out").exists()


def test_probabilities_after_a_crash_and_stale_temporaries(tmp_path, capsys, model1):
    _nifti(tmp_path / "in" / "c1.nii.gz")
    out = tmp_path / "out"
    assert _predict(capsys, tmp_path / "in", out, model1)[0] == 0  # label map only: as if killed before probs
    label_before = (out / "c1.nii.gz").read_bytes()
    stale = out / ".c1.nii.gz.abcd_123.nii.gz"
    stale.write_bytes(b"half a file")
    (out / "probabilities").mkdir()
    stale_prob = out / "probabilities" / ".c1.nii.gz.x1y2z3w4.nii.gz"
    stale_prob.write_bytes(b"half")
    mine = out / ".my_hidden_notes.nii.gz"
    mine.write_bytes(b"user file")
    rc, err = _predict(capsys, tmp_path / "in", out, model1, "--probabilities")
    assert rc == 0, err
    assert (out / "probabilities" / "c1.nii.gz").is_file()
    assert (out / "c1.nii.gz").read_bytes() == label_before
    assert not stale.exists() and not stale_prob.exists() and mine.exists()


def test_evaluate_a_folder_against_itself_is_refused(tmp_path, capsys):
    ref = tmp_path / "ref"
    _nifti(ref / "c1.nii.gz", np.zeros(SHAPE, np.uint8))
    before = _checksums(ref)
    rc, err = _run(capsys, "evaluate", "--pred", ref, "--ref", ref, "--quiet")
    _one_line_error(rc, err, str(ref), "same folder")
    pred = tmp_path / "pred"
    _nifti(pred / "c1.nii.gz", np.zeros(SHAPE, np.uint8))
    rc, err = _run(capsys, "evaluate", "--pred", pred, "--ref", ref, "--out", ref / "reports", "--quiet")
    _one_line_error(rc, err, "reference folder")
    assert _checksums(ref) == before and not (ref / "reports").exists()
    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "c1.nii.gz").symlink_to(ref / "c1.nii.gz")
    rc, err = _run(capsys, "evaluate", "--pred", tmp_path / "links", "--ref", ref, "--out", tmp_path / "r", "--quiet")
    _one_line_error(rc, err, "c1.nii.gz", "itself")


@pytest.mark.parametrize("channels", [1, 4])
def test_nan_in_the_affine(tmp_path, capsys, model1, model4, channels):
    affine = np.eye(4)
    affine[0, 3] = np.nan
    for c in range(channels):
        _nifti(tmp_path / "in" / f"c1_{c:04d}.nii.gz", affine=affine)
    before = _checksums(tmp_path / "in")
    rc, err = _predict(capsys, tmp_path / "in", tmp_path / "out", model1 if channels == 1 else model4)
    _one_line_error(rc, err, "c1_0000.nii.gz", "NaN or Inf")
    assert "max difference" not in err and not (tmp_path / "out").exists()
    assert _checksums(tmp_path / "in") == before


def test_empty_and_upper_case_output_names(tmp_path, capsys, model1, monkeypatch):
    _nifti(tmp_path / "in" / "c1.nii.gz")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["predict", "-i", "in", "-o", "", "-m", str(model1)])
    assert exc.value.code == 2 and "empty path" in capsys.readouterr().err
    rc, err = _predict(capsys, tmp_path / "in", tmp_path / "x.NII.GZ", model1)
    _one_line_error(rc, err, "x.NII.GZ", "lower case")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_constant_image_warns_and_complex_image_is_refused(tmp_path, capsys, model1):
    _nifti(tmp_path / "zero" / "c1.nii.gz", np.zeros(SHAPE, np.float32))
    rc, err = _predict(capsys, tmp_path / "zero", tmp_path / "out", model1)
    assert rc == 0 and "WARNING" in err and "c1.nii.gz" in err and "every voxel is 0" in err
    data = (np.ones(SHAPE) + 1j * np.ones(SHAPE)).astype(np.complex64)
    _nifti(tmp_path / "cplx" / "c1.nii.gz", data)
    rc, err = _predict(capsys, tmp_path / "cplx", tmp_path / "out2", model1)
    _one_line_error(rc, err, "c1.nii.gz", "complex")
    assert not (tmp_path / "out2").exists()


# -- 9. write failures: one line, found before inference --------------------------------------------------

def test_read_only_output_folder_is_found_before_inference(tmp_path, capsys, model1, monkeypatch):
    _nifti(tmp_path / "in" / "a.nii.gz")
    _nifti(tmp_path / "in" / "b.nii.gz")
    out = tmp_path / "out"
    out.mkdir()
    real_access = os.access
    monkeypatch.setattr("lightmedseg.io_utils.os.access",
                        lambda p, mode: False if Path(p) == out else real_access(p, mode))
    rc, err = _predict(capsys, tmp_path / "in", out, model1)
    _one_line_error(rc, err, str(out), "not writable", "EACCES")
    assert not any(out.iterdir())


def test_full_disk_during_predict_is_one_line_and_leaves_no_temporary(tmp_path, capsys, model1, monkeypatch):
    _nifti(tmp_path / "in" / "a.nii.gz")
    import lightmedseg.data.io as dio

    def full(img, path, *args, **kwargs):
        Path(path).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(dio.nib, "save", full)
    rc, err = _predict(capsys, tmp_path / "in", tmp_path / "out", model1)
    _one_line_error(rc, err, str(tmp_path / "out" / "a.nii.gz"), "No space left on device", "ENOSPC")
    assert _files(tmp_path / "out") == SIDECARS  # complete (written before the first output), no temporary


def test_full_disk_during_train_is_one_line(tmp_path, capsys, monkeypatch):
    data = make_synthetic_dataset(tmp_path / "ds", num_cases=2, seed=0, shape=(16, 16, 16))

    def full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr("lightmedseg.training.trainer.write_text_atomic", full)
    rc, err = _run(capsys, "train", "--preset", "demo", "--data", data, "--out", tmp_path / "run",
                   "--max-steps", "1", "--no-progress", "--set", "data.patch_size=[16,16,16]")
    _one_line_error(rc, err, "config.yaml", "ENOSPC")


# -- 10. malformed model files -----------------------------------------------------------------------------

def _model_with_config(path: Path, config_text: str) -> Path:
    state = {k: v.contiguous() for k, v in build_model(_config(1)).state_dict().items()}
    save_file(state, str(path), metadata={CONFIG_KEY: config_text})
    return path


@pytest.mark.parametrize("mutate, needle", [
    (lambda cfg: "{not json", "not valid JSON"),
    (lambda cfg: json.dumps({**cfg, "infer": {**cfg["infer"], "roi_size": "abc"}}), "infer.roi_size 'abc'"),
    (lambda cfg: json.dumps({k: v for k, v in cfg.items() if k != "model"}), "no 'model' section"),
    (lambda cfg: json.dumps({**cfg, "model": {**cfg["model"], "bogus_key": 1}}), "bogus_key"),
])
def test_malformed_model_files(tmp_path, capsys, mutate, needle):
    _nifti(tmp_path / "in" / "c1.nii.gz")
    model = _model_with_config(tmp_path / "m.safetensors", mutate(_config(1)))
    rc, err = _predict(capsys, tmp_path / "in", tmp_path / "out", model)
    _one_line_error(rc, err, str(model), needle)
    assert not (tmp_path / "out").exists()


def test_corrupt_pt_in_predict_gives_no_training_advice(tmp_path, capsys):
    _nifti(tmp_path / "in" / "c1.nii.gz")
    (tmp_path / "bad.pt").write_bytes(b"PK\x03\x04 not a zip")
    rc, err = _predict(capsys, tmp_path / "in", tmp_path / "out", tmp_path / "bad.pt")
    _one_line_error(rc, err, "bad.pt", "corrupt")
    assert "retrain" not in err


# -- 11. every input and setting checked before the first write ---------------------------------------------

@pytest.mark.parametrize("override, key", [
    ("data.patch_size=[20,20,20]", "data.patch_size"),
    ("train.amp=fp8", "train.amp"),
    ("train.batch_size=0", "train.batch_size"),
    ("train.epochs=ten", "train.epochs"),
])
def test_train_config_errors_before_the_run_folder_exists(tmp_path, capsys, override, key):
    data = make_synthetic_dataset(tmp_path / "ds", num_cases=2, seed=0, shape=(16, 16, 16))
    rc, err = _run(capsys, "train", "--preset", "demo", "--data", data, "--out", tmp_path / "run",
                   "--max-steps", "1", "--no-progress", "--set", override)
    _one_line_error(rc, err, key)
    assert not (tmp_path / "run").exists()


def test_single_slice_case_is_named_before_any_case_is_written(tmp_path, capsys, model1):
    _nifti(tmp_path / "in" / "a.nii.gz")
    _nifti(tmp_path / "in" / "b.nii.gz", np.ones((17, 19, 1), np.float32))
    rc, err = _predict(capsys, tmp_path / "in", tmp_path / "out", model1)
    _one_line_error(rc, err, "b.nii.gz", "too small")
    assert not (tmp_path / "out").exists()


# -- 12. output modes follow the umask ------------------------------------------------------------------------

def test_outputs_are_written_with_the_umask_mode(tmp_path, capsys, model1):
    _nifti(tmp_path / "in" / "c1.nii.gz")
    old = os.umask(0o022)
    try:
        assert _predict(capsys, tmp_path / "in", tmp_path / "out", model1, "--probabilities")[0] == 0
        save_model(tmp_path / "m.safetensors", build_model(_config(1)), _config(1))
    finally:
        os.umask(old)
    for f in (tmp_path / "out" / "c1.nii.gz", tmp_path / "out" / "probabilities" / "c1.nii.gz", tmp_path / "m.safetensors"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f


# -- 13. wording ------------------------------------------------------------------------------------------------

def test_geometry_and_channel_mismatch_wording(tmp_path, capsys):
    from lightmedseg.data.io import read_image_channels
    from lightmedseg.data.layout import list_cases

    a = _nifti(tmp_path / "a.nii.gz")
    b = _nifti(tmp_path / "b.nii.gz", affine=np.diag([1.0, 1.0, 1.5, 1.0]))
    with pytest.raises(ValueError, match=r"same shape .* affines differ by up to 0.5 mm"):
        read_image_channels([a, b])
    ds = make_synthetic_dataset(tmp_path / "ds", num_cases=1, seed=0, shape=(16, 16, 16))
    meta = json.loads((ds / "dataset.json").read_text())
    meta["channel_names"] = {"0": "T1", "1": "T1ce"}
    meta["label_convention"] = "generic"
    (ds / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError) as exc:
        list_cases(ds)
    msg = str(exc.value)
    assert "has extra channel file(s) ['synth_000_0002.nii.gz', 'synth_000_0003.nii.gz']" in msg
    assert "missing" not in msg and "[]" not in msg


def test_checkpoint_write_failure_is_an_os_error_naming_the_file(tmp_path, monkeypatch):
    from lightmedseg.training import checkpointing as C

    def failing_save(obj, f, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(C.torch, "save", failing_save)
    with pytest.raises(OSError, match=r"checkpoint_last.pt: cannot write"):
        C.save_training_checkpoint(tmp_path / "checkpoint_last.pt", {"model": {}, "config": {}})
    assert list(tmp_path.iterdir()) == []


def test_empty_output_through_the_python_api(tmp_path, model1):
    from lightmedseg.inference.inputs import InputError
    from lightmedseg.inference.pipeline import predict

    _nifti(tmp_path / "in" / "c1.nii.gz")
    with pytest.raises(InputError, match="OUTPUT is empty"):
        predict(tmp_path / "in", "", model1, progress=False)


# == issue 26: one rule for every file the tool writes ======================================================

def _steps_csv(run: Path) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    (run / "steps.csv").write_text("step,loss,dice,ce,boundary,lr\n1,1.0,0.5,0.5,0.0,0.001\n2,0.9,0.4,0.5,0.0,0.001\n")
    return run


@pytest.fixture
def dataset(tmp_path) -> Path:
    return make_synthetic_dataset(tmp_path / "ds", num_cases=2, seed=0, shape=(16, 16, 16))


def test_split_plot_profile_never_replace_a_file_they_did_not_write(tmp_path, capsys, dataset):
    before = _checksums(dataset)
    image = dataset / "imagesTr" / "synth_000_0000.nii.gz"
    for target in (dataset / "dataset.json", image, dataset / "new_split.json"):
        rc, err = _run(capsys, "split", dataset, "--kfold", "2", "-o", target)
        _one_line_error(rc, err, str(target), "dataset folder")
    rc, err = _run(capsys, "plot", _steps_csv(tmp_path / "run"), "--out", image)
    _one_line_error(rc, err, str(image), "dataset folder")
    assert _checksums(dataset) == before
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    for argv in (["split", dataset, "--kfold", "2", "-o", notes], ["plot", tmp_path / "run", "--out", notes],
                 ["profile", "--preset", "demo", "--json", notes]):
        rc, err = _run(capsys, *argv)
        _one_line_error(rc, err, str(notes), "--overwrite")
        assert notes.read_text() == "my notes"
    assert _run(capsys, "split", dataset, "--kfold", "2", "-o", notes, "--overwrite")[0] == 0
    assert "folds" in json.loads(notes.read_text())
    # the run's own curves.png is replaced without --overwrite (training writes it)
    assert _run(capsys, "plot", tmp_path / "run")[0] == 0
    assert _run(capsys, "plot", tmp_path / "run", "--out", tmp_path / "run" / "curves.png")[0] == 0


def test_predict_keeps_a_users_label_sidecars(tmp_path, capsys, model1):
    _nifti(tmp_path / "in" / "c1.nii.gz")
    out = tmp_path / "out"
    out.mkdir()
    (out / "labels.json").write_text('{"my": "own"}')
    (out / "labels.ctbl").write_text("my colours\n")
    rc, err = _predict(capsys, tmp_path / "in", out, model1)
    _one_line_error(rc, err, "labels.json", "--overwrite")
    assert (out / "labels.json").read_text() == '{"my": "own"}' and not (out / "c1.nii.gz").exists()
    (out / "labels.json").unlink()
    rc, err = _predict(capsys, tmp_path / "in", out, model1)
    _one_line_error(rc, err, "labels.ctbl")
    assert (out / "labels.ctbl").read_text() == "my colours\n"
    assert _predict(capsys, tmp_path / "in", out, model1, "--overwrite")[0] == 0
    assert json.loads((out / "labels.json").read_text())["0"] == "background"
    # a rerun writing the same names is not a replacement: no --overwrite needed
    _nifti(tmp_path / "in" / "c2.nii.gz")
    assert _predict(capsys, tmp_path / "in", out, model1)[0] == 0 and (out / "c2.nii.gz").is_file()


@pytest.mark.parametrize("overwrite", [False, True])
def test_predict_never_writes_into_a_dataset(tmp_path, capsys, model1, overwrite):
    ds = make_synthetic_dataset(tmp_path / "ds", num_cases=1, seed=0, shape=(16, 16, 16))
    meta = json.loads((ds / "dataset.json").read_text())
    # a one-channel copy of the dataset's images, so the one-channel model can read them
    (ds / "imagesTs").mkdir()
    _nifti(ds / "imagesTs" / "synth_000_0000.nii.gz")
    before = _checksums(ds)
    for out in (ds / "labelsTr", ds / "predictions", ds / "labelsTr" / "synth_000.nii.gz"):
        rc, err = _predict(capsys, ds / "imagesTs", out, model1, *(["--overwrite"] if overwrite else []))
        _one_line_error(rc, err, str(ds), "dataset folder")
    assert _checksums(ds) == before and meta["numTraining"] == 1


def test_an_empty_output_is_redone_not_skipped(tmp_path, capsys, model1):
    _nifti(tmp_path / "in" / "c1.nii.gz")
    out = tmp_path / "out"
    out.mkdir()
    (out / "c1.nii.gz").write_bytes(b"")  # left by a writer that failed (a full disk)
    rc, err = _predict(capsys, tmp_path / "in", out, model1)
    assert rc == 0 and "skipping" not in err, err
    assert nib.load(str(out / "c1.nii.gz")).shape == SHAPE


def _nrrd(path: Path) -> Path:
    import SimpleITK as sitk

    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(0).normal(100, 10, SHAPE[::-1]).astype(np.float32)
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(path))
    return path


def test_full_disk_during_an_nrrd_write_names_the_file_and_a_rerun_redoes_it(tmp_path, capsys, model1, monkeypatch):
    import SimpleITK as sitk

    _nrrd(tmp_path / "in" / "case.nrrd")
    out = tmp_path / "out"
    real_write = sitk.WriteImage

    def full(img, path, *args, **kwargs):
        Path(path).write_bytes(b"")
        raise RuntimeError("Exception thrown in SimpleITK ImageFileWriter_Execute: ... No space left on device")

    monkeypatch.setattr(sitk, "WriteImage", full)
    rc, err = _predict(capsys, tmp_path / "in", out, model1, "--output-format", "input")
    _one_line_error(rc, err, str(out / "case.nrrd"), "ENOSPC")
    line = next(ln for ln in err.splitlines() if "error" in ln)
    assert ".tmp" not in line and ".case.nrrd" not in line and _files(out) == SIDECARS
    monkeypatch.setattr(sitk, "WriteImage", real_write)
    rc, err = _predict(capsys, tmp_path / "in", out, model1, "--output-format", "input")
    assert rc == 0 and "skipping" not in err and (out / "case.nrrd").stat().st_size > 0


def test_mhd_output_is_all_or_nothing(tmp_path):
    from lightmedseg.data.io import ImageGeometry
    from lightmedseg.data.readers import read_image, write_image

    geometry = ImageGeometry.from_spacing((4, 5, 6), (1.0, 1.0, 1.0))
    (tmp_path / "case.zraw").mkdir()  # the data file's name taken by a folder
    with pytest.raises(OSError, match="case.mhd: cannot write"):
        write_image(tmp_path / "case.mhd", np.ones((4, 5, 6), np.float32), geometry)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case.zraw"]
    (tmp_path / "case.zraw").rmdir()
    write_image(tmp_path / "case.mhd", np.ones((4, 5, 6), np.float32), geometry)
    assert read_image(tmp_path / "case.mhd")[0].shape[-3:] == (4, 5, 6)


def test_two_writers_in_one_folder_keep_each_others_temporaries(tmp_path):
    from lightmedseg.io_utils import atomic_path, remove_stale_temporaries

    target = tmp_path / "c1.nii.gz"
    with atomic_path(target, ".nii.gz") as tmp:  # a live writer (this process)
        tmp.write_bytes(b"in progress")
        dead = tmp.with_name(tmp.name.replace(f"-{os.getpid()}.", "-999999999."))
        dead.write_bytes(b"killed writer")
        assert remove_stale_temporaries(target, ".nii.gz") == [dead]
        assert tmp.exists()
    assert target.read_bytes() == b"in progress"


@pytest.mark.parametrize("command", ["synth", "convert"])
def test_overwrite_keeps_hand_made_files_inside_the_dataset(tmp_path, capsys, command):
    src = make_synthetic_dataset(tmp_path / "src", num_cases=1, seed=0, shape=(16, 16, 16))
    dst = make_synthetic_dataset(tmp_path / "dst", num_cases=1, seed=0, shape=(16, 16, 16))
    argv = (["synth", dst, "--cases", "1", "--shape", "16", "16", "16"] if command == "synth"
            else ["convert", "nnunet", src, dst])
    _nifti(dst / "labelsTr" / "mine.nii.gz", np.zeros(SHAPE, np.uint8))  # a hand-made label
    before = _checksums(dst)
    rc, err = _run(capsys, *argv, "--overwrite")
    _one_line_error(rc, err, "labelsTr/mine.nii.gz", "did not write")
    assert _checksums(dst) == before
    (dst / "labelsTr" / "mine.nii.gz").unlink()
    label = dst / "labelsTr" / "synth_000.nii.gz"
    _nifti(label, np.ones(SHAPE, np.uint8))  # a reference label corrected by hand
    rc, err = _run(capsys, *argv, "--overwrite")
    _one_line_error(rc, err, "labelsTr/synth_000.nii.gz", "did not write")
    assert np.asarray(nib.load(str(label)).dataobj).max() == 1
    label.unlink()
    assert _run(capsys, *argv, "--overwrite")[0] == 0  # only the tool's own files (one missing): replaced
    assert _run(capsys, *argv, "--overwrite")[0] == 0  # and what it wrote now is its own again


# == issue 26: the run folder ==================================================================================

def _train(capsys, data: Path, out: Path, *extra: str) -> tuple[int, str]:
    return _run(capsys, "train", "--preset", "demo", "--data", data, "--out", out, "--no-progress",
                "--set", "data.patch_size=[16,16,16]", *extra)


def test_train_never_writes_its_run_into_the_dataset(tmp_path, capsys, dataset):
    before = _checksums(dataset)
    for out in (dataset, dataset / "imagesTr" / "run", dataset / "run"):
        rc, err = _train(capsys, dataset, out, "--max-steps", "1")
        _one_line_error(rc, err, str(dataset), "dataset folder")
    assert _checksums(dataset) == before and not (dataset / "run").exists()


def test_a_run_started_meanwhile_is_seen_under_the_lock(tmp_path, capsys, dataset, monkeypatch):
    """Two `train --out SAME` started together: the second checks the folder (empty), then the first runs,
    ends and releases the lock before the second takes it. The second must see the first's run then."""
    import lightmedseg.training.runlock as runlock

    run = tmp_path / "run"
    real_try_lock = runlock._try_lock

    def other_run_finished_first(run_dir):
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "checkpoint_last.pt").write_bytes(b"the first run's checkpoint")
        return real_try_lock(run_dir)

    monkeypatch.setattr(runlock, "_try_lock", other_run_finished_first)
    rc, err = _train(capsys, dataset, run, "--max-steps", "1")
    _one_line_error(rc, err, str(run), "already holds a run")
    assert (run / "checkpoint_last.pt").read_bytes() == b"the first run's checkpoint"
    assert not (run / "config.yaml").exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0"])
def test_max_minutes_must_be_finite_and_positive(tmp_path, capsys, dataset, value):
    rc, err = _train(capsys, dataset, tmp_path / "run", f"--max-minutes={value}")
    _one_line_error(rc, err, "--max-minutes")
    assert not (tmp_path / "run").exists()


def test_resume_never_changes_the_stored_schedule_silently(tmp_path, capsys, dataset):
    from lightmedseg.training.checkpointing import load_training_checkpoint

    run = tmp_path / "run"
    assert _train(capsys, dataset, run, "--set", "train.epochs=2", "--max-steps", "1")[0] == 0
    stored = (run / "checkpoint_last.pt").read_bytes()
    rc, err = _train(capsys, dataset, run, "--resume", "--max-steps", "2")  # the demo preset says 12 epochs
    _one_line_error(rc, err, "checkpoint_last.pt", "train.epochs 2 -> 12", "--set")
    assert (run / "checkpoint_last.pt").read_bytes() == stored
    # the original command line (its --set included) resumes; an explicit --set applies a budget change
    assert _train(capsys, dataset, run, "--set", "train.epochs=3", "--resume", "--max-steps", "2")[0] == 0
    assert load_training_checkpoint(run / "checkpoint_last.pt")["config"]["train"]["epochs"] == 3


def test_merge_resumed_config_rules():
    from lightmedseg.config import ConfigError
    from lightmedseg.training.resume import merge_resumed_config

    stored = {"model": {"num_anchors": 8}, "train": {"epochs": 2, "device": "cuda", "optimizer": {"lr": 1e-3, "name": "adamw"}}}
    assert merge_resumed_config(stored, {"train": {"epochs": 5}})["train"]["epochs"] == 5  # API: explicit
    assert merge_resumed_config(stored, {"train": {"epochs": 2, "device": "cpu"}}, explicit=[])["train"]["device"] == "cuda"
    with pytest.raises(ConfigError, match=r"train.epochs 2 -> 12"):
        merge_resumed_config(stored, {"train": {"epochs": 12}}, explicit=[])
    with pytest.raises(ConfigError, match=r"train.optimizer .*start a new run"):
        merge_resumed_config(stored, {"train": {"optimizer": {"lr": 1e-2}}}, explicit=["train.optimizer"])
    assert merge_resumed_config(stored, {"train": {"optimizer": {"lr": 1e-3}}}, explicit=[])["train"]["epochs"] == 2
    # a key added to the schema after the run was stored resumes as its default, not as a change
    from lightmedseg.config import load_config

    given = load_config("acdc")
    older = {s: {k: (dict(v) if isinstance(v, dict) else v) for k, v in given[s].items()} for s in ("model", "data", "train")}
    del older["train"]["loss"]["class_emphasis"], older["train"]["optimizer"]["momentum"]
    assert merge_resumed_config(older, given, explicit=[])["train"]["loss"] == older["train"]["loss"]
    with pytest.raises(ConfigError, match="class_emphasis"):  # a real change of it is still refused
        changed = load_config("acdc", overrides=["train.loss.class_emphasis=[1,2,1,1]"])
        merge_resumed_config(older, changed, explicit=[])


def test_dicom_output_name_is_refused_not_made_a_folder(tmp_path, capsys, model1):
    _nifti(tmp_path / "in" / "c1.nii.gz")
    rc, err = _predict(capsys, tmp_path / "in", tmp_path / "out.dcm", model1)
    _one_line_error(rc, err, "out.dcm", "does not write DICOM")
    assert not (tmp_path / "out.dcm").exists()


# == issue 26: every input's geometry ==========================================================================

def _nifti_with_zooms(path: Path, zooms) -> Path:
    img = nib.Nifti1Image(np.random.default_rng(0).normal(100, 10, SHAPE).astype(np.float32), np.eye(4))
    img.header.set_zooms(zooms)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
    return path


@pytest.mark.parametrize("zooms, needle", [((np.nan, 1.0, 1.0), "voxel spacing [1.0, 1.0, nan]"),
                                           ((1000.0, 1.0, 1.0), "voxel spacing [1.0, 1.0, 1000.0]"),
                                           ((1.0, 1.0, 1e-6), "voxel spacing [")])
def test_broken_spacing_is_refused(tmp_path, capsys, model1, zooms, needle):
    _nifti_with_zooms(tmp_path / "in" / "c1.nii.gz", zooms)
    rc, err = _predict(capsys, tmp_path / "in", tmp_path / "out", model1)
    _one_line_error(rc, err, "c1.nii.gz", needle)
    assert not (tmp_path / "out").exists()


def test_zero_axis_is_refused():  # nibabel cannot even save one; an ITK direction or a nibabel image can hold it
    from lightmedseg.data.geometry_checks import check_grid

    with pytest.raises(ValueError, match="x.nrrd: the voxel-to-world affine has a zero axis"):
        check_grid(np.diag([1.0, 0.0, 1.0, 1.0]), (1.0, 1.0, 1.0), "x.nrrd")


def test_sheared_grid_is_refused(tmp_path, capsys, model1):
    affine = np.eye(4)
    affine[0, 1] = 0.3  # the y axis leans into x
    _nifti(tmp_path / "in" / "c1.nii.gz", affine=affine)
    rc, err = _predict(capsys, tmp_path / "in", tmp_path / "out", model1)
    _one_line_error(rc, err, "c1.nii.gz", "sheared")
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.zeros(SHAPE[::-1], np.float32))
    img.SetDirection((1, 0.3, 0, 0, 1, 0, 0, 0, 1))
    sitk.WriteImage(img, str(tmp_path / "in2" / "c1.nrrd") if (tmp_path / "in2").mkdir() is None else "")
    rc, err = _predict(capsys, tmp_path / "in2", tmp_path / "out2", model1, "--output-format", "input")
    _one_line_error(rc, err, "c1.nrrd", "sheared")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out2").exists()


def test_segment_refuses_nan_affines_and_complex_images(model1):
    from lightmedseg import segment

    affine = np.eye(4)
    affine[1, 3] = np.nan
    with pytest.raises(ValueError, match="nibabel image: the voxel-to-world affine has NaN or Inf"):
        segment(nib.Nifti1Image(np.ones(SHAPE, np.float32), affine), model1, device="cpu", tta=False)
    with pytest.raises(ValueError, match="nibabel image: voxels are complex"):
        segment(nib.Nifti1Image((np.ones(SHAPE) + 1j).astype(np.complex64), np.eye(4)), model1, device="cpu", tta=False)
    image = nib.Nifti1Image(np.ones(SHAPE, np.float32), np.eye(4))
    image.header.set_zooms((1.0, np.nan, 1.0))  # the affine stays finite: only the pixdim is broken
    with pytest.raises(ValueError, match=r"nibabel image: voxel spacing \[1.0, nan, 1.0\]"):
        segment(image, model1, device="cpu", tta=False)


def test_label_name_with_a_line_break_is_refused(tmp_path, capsys):
    cfg = _config(1)
    cfg["labels"] = {"background": 0, "NCR\nx": 1, "ED": 2, "ET": 4}
    model = tmp_path / "m.safetensors"
    save_model(model, build_model(cfg), cfg)
    _nifti(tmp_path / "in" / "c1.nii.gz")
    rc, err = _predict(capsys, tmp_path / "in", tmp_path / "out", model)
    _one_line_error(rc, err, "line break")
    assert not (tmp_path / "out").exists()


def test_resampling_refuses_a_grid_it_cannot_allocate():
    from lightmedseg.data.io import ImageGeometry
    from lightmedseg.inference.geometry import to_training_grid

    geometry = ImageGeometry.from_spacing((17, 19, 21), (100.0, 100.0, 100.0))
    with pytest.raises(ValueError, match=r"resampling .* would need [\d,.]+ GiB of memory \(6.783e\+09 voxels\)"):
        to_training_grid(np.zeros((1, 17, 19, 21), np.float32), geometry, {"geometry": {"spacing": [1.0, 1.0, 1.0]}})


def test_synth_refuses_a_shape_it_cannot_allocate(tmp_path, capsys):
    rc, err = _run(capsys, "synth", tmp_path / "ds", "--cases", "1", "--shape", "2000", "2000", "2000")
    _one_line_error(rc, err, "[2000, 2000, 2000]", "GiB of memory")
    assert not (tmp_path / "ds").exists()


# == issue 26: a corrupt case met by training ===================================================================

@pytest.mark.parametrize("workers", [0, 2])
def test_truncated_case_is_named_before_training(tmp_path, capsys, dataset, workers):
    image = dataset / "imagesTr" / "synth_001_0002.nii.gz"
    image.write_bytes(image.read_bytes()[:-200])
    rc, err = _train(capsys, dataset, tmp_path / "run", "--max-steps", "1", "--set", f"train.num_workers={workers}")
    _one_line_error(rc, err, "synth_001_0002.nii.gz", "truncated")
    assert not (tmp_path / "run" / "checkpoint_last.pt").exists()


def test_complete_files_pass_the_check(tmp_path, dataset, monkeypatch):
    from lightmedseg.data import integrity
    from lightmedseg.data.integrity import check_complete

    monkeypatch.setattr(integrity, "_gzip_length", lambda p: pytest.fail(f"{p}: read to the end"))
    for f in sorted(dataset.rglob("*.nii.gz")):  # the gzip trailer decides: no file is decompressed
        check_complete(f)
    plain = _nifti(tmp_path / "x.nii", np.ones(SHAPE, np.float32))
    check_complete(plain)
    plain.write_bytes(plain.read_bytes()[:-10])
    with pytest.raises(ValueError, match=r"x.nii: holds \d+ bytes but its header declares \d+"):
        check_complete(plain)


# == issue 26: a full disk during training ======================================================================

def test_full_disk_at_a_checkpoint_is_one_line_and_the_run_resumes(tmp_path, capsys, dataset, monkeypatch):
    from collections import namedtuple

    from lightmedseg.training import checkpointing as C

    run = tmp_path / "run"
    assert _train(capsys, dataset, run, "--max-steps", "1")[0] == 0
    stored = (run / C.LAST).read_bytes()
    real_save, real_usage = C.torch.save, __import__("shutil").disk_usage

    def full(obj, f, *args, **kwargs):  # what torch raises on a full disk: the second of two RuntimeErrors
        Path(f).write_bytes(b"PK partial")
        raise RuntimeError("[enforce fail at inline_container.cc:778] . unexpected pos 1152 vs 1088")

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(C.torch, "save", full)
    monkeypatch.setattr("lightmedseg.io_utils.shutil.disk_usage", lambda p: usage(10**9, 10**9 - 4096, 4096))
    rc, err = _train(capsys, dataset, run, "--resume", "--max-steps", "2")
    _one_line_error(rc, err, str(run / C.LAST), "No space left on device", "ENOSPC")
    assert (run / C.LAST).read_bytes() == stored and not list(run.glob(".checkpoint_last.pt.*"))
    monkeypatch.setattr(C.torch, "save", real_save)
    monkeypatch.setattr("lightmedseg.io_utils.shutil.disk_usage", real_usage)
    assert _train(capsys, dataset, run, "--resume", "--max-steps", "2")[0] == 0
    assert C.load_training_checkpoint(run / C.LAST)["step"] == 2


# == issue 26: stop signals while a rank waits for its peers ====================================================

_PEER_WAIT_CHECK = """
import os, signal, sys, threading
import lightmedseg.training.runtime as R
from lightmedseg.cli.main import main

data, run, sig = sys.argv[1], sys.argv[2], sys.argv[3]
never = threading.Event()

def peer_never_comes(*args, **kwargs):  # the rendezvous blocks (in C++ in reality) until the timeout
    signal.pthread_kill(threading.main_thread().ident, getattr(signal, sig))  # sent once the rank waits
    if not never.wait(120):
        raise RuntimeError("DistStoreError: timed out")

R.dist.init_process_group = peer_never_comes
os.environ.update(RANK="1", WORLD_SIZE="2", LOCAL_RANK="1", MASTER_ADDR="127.0.0.1", MASTER_PORT="29999")
os.environ.pop("TORCHELASTIC_RUN_ID", None)
rc = main(["train", "--preset", "demo", "--data", data, "--out", run, "--no-progress",
           "--set", "data.patch_size=[16,16,16]", "--resume", "--max-steps", "2", "--device", "cpu"])
never.set()
sys.exit(rc)
"""


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_rank_waiting_for_its_peers_stops_on_a_signal(tmp_path, capsys, dataset, sig):
    # The stopped run is a fresh interpreter: a signal raised inside the pytest process, after earlier tests
    # loaded OpenVINO's and torch's thread pools, now and then killed pytest with SIGSEGV (CI's exit 139), as
    # in tests/test_train_cluster.py's signal test.
    import subprocess
    import sys

    run = tmp_path / "run"
    assert _train(capsys, dataset, run, "--max-steps", "1")[0] == 0
    proc = subprocess.run([sys.executable, "-c", _PEER_WAIT_CHECK, str(dataset), str(run), sig],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 75, proc.stderr[-2000:]  # stopped, resume me: the checkpoint of step 1 is there
    assert f"stopped by {sig} while waiting for the job's other processes" in proc.stderr


# == issue 26: unclear messages =================================================================================

class _RunsCode:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_code_carrying_pickle_is_refused_as_unsafe(tmp_path, capsys):
    import torch

    marker = tmp_path / "executed"
    torch.save({"model": _RunsCode(str(marker)), "config_json": "{}"}, str(tmp_path / "evil.pt"))
    _nifti(tmp_path / "in" / "c1.nii.gz")
    rc, err = _predict(capsys, tmp_path / "in", tmp_path / "out", tmp_path / "evil.pt")
    _one_line_error(rc, err, "evil.pt", "refused as unsafe", "not loaded")
    assert "corrupt" not in err and not marker.exists()


def test_export_and_evaluate_follow_the_write_rule(tmp_path, capsys, dataset, model1):
    """export never writes into a dataset nor over a file it did not write; evaluate's reports never go into a dataset."""
    before = _checksums(dataset)
    rc, err = _run(capsys, "export", "-m", model1, "-o", dataset / "model.xml")
    _one_line_error(rc, err, "model.xml", "dataset folder")
    mine = tmp_path / "mine.xml"
    mine.write_text("<my own file/>")
    rc, err = _run(capsys, "export", "-m", model1, "-o", mine)
    _one_line_error(rc, err, str(mine), "--overwrite")
    assert mine.read_text() == "<my own file/>"
    import shutil

    shutil.copytree(dataset / "labelsTr", tmp_path / "ref")
    rc, err = _run(capsys, "evaluate", "--pred", dataset / "labelsTr", "--ref", tmp_path / "ref", "-q")
    _one_line_error(rc, err, "labelsTr", "dataset folder")
    assert _checksums(dataset) == before


# == issue 26, audit: gaps found by rerunning the reproductions =================================================

def test_nrrd_left_truncated_without_an_error_is_refused_and_redone(tmp_path, capsys, model1, monkeypatch):
    """On a full disk NRRD's writer (teem) ignores the failed write and leaves a truncated file without an error
    (seen on a full tmpfs); the output is read back, so this is the full-disk error, not a broken label map."""
    import SimpleITK as sitk
    from collections import namedtuple

    _nrrd(tmp_path / "in" / "case.nrrd")
    out = tmp_path / "out"
    real_write, real_usage = sitk.WriteImage, __import__("shutil").disk_usage

    def silently_truncated(img, path, *args, **kwargs):
        real_write(img, path, *args, **kwargs)
        Path(path).write_bytes(Path(path).read_bytes()[:-100])

    monkeypatch.setattr(sitk, "WriteImage", silently_truncated)
    monkeypatch.setattr("lightmedseg.io_utils.shutil.disk_usage",
                        lambda p: namedtuple("usage", "total used free")(10**9, 10**9 - 4096, 4096))
    rc, err = _predict(capsys, tmp_path / "in", out, model1, "--output-format", "input")
    _one_line_error(rc, err, str(out / "case.nrrd"), "No space left on device", "ENOSPC")
    assert _files(out) == SIDECARS
    monkeypatch.setattr(sitk, "WriteImage", real_write)
    monkeypatch.setattr("lightmedseg.io_utils.shutil.disk_usage", real_usage)
    assert _predict(capsys, tmp_path / "in", out, model1, "--output-format", "input")[0] == 0
    assert sitk.ReadImage(str(out / "case.nrrd")).GetSize() == SHAPE


def test_a_full_disk_at_the_sidecars_is_resumed_by_a_rerun(tmp_path, capsys, model1, monkeypatch):
    """labels.json / provenance.json come before the first label map: a failure there leaves no output, and a
    failure later leaves a folder a rerun goes on with (not one refused as outputs with no provenance)."""
    import lightmedseg.inference.pipeline as pipeline

    for case in ("a", "b"):
        _nifti(tmp_path / "in" / f"{case}.nii.gz")
    out = tmp_path / "out"
    real = pipeline.write_provenance

    def full(path, record):
        raise OSError(errno.ENOSPC, f"{path}: cannot write (No space left on device)")

    monkeypatch.setattr(pipeline, "write_provenance", full)
    rc, err = _predict(capsys, tmp_path / "in", out, model1)
    _one_line_error(rc, err, "provenance.json", "ENOSPC")
    assert _files(out) == ["labels.ctbl", "labels.json"]
    monkeypatch.setattr(pipeline, "write_provenance", real)
    import lightmedseg.data.io as dio

    real_save, saved = dio.nib.save, []

    def full_at_the_second(img, path, *args, **kwargs):
        if saved:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        saved.append(path)
        real_save(img, path, *args, **kwargs)

    monkeypatch.setattr(dio.nib, "save", full_at_the_second)
    rc, err = _predict(capsys, tmp_path / "in", out, model1)
    _one_line_error(rc, err, "b.nii.gz", "ENOSPC")
    monkeypatch.setattr(dio.nib, "save", real_save)
    rc, err = _predict(capsys, tmp_path / "in", out, model1)
    assert rc == 0 and "skipping 1 case" in err, err
    assert _files(out) == sorted(["a.nii.gz", "b.nii.gz", *SIDECARS])


def test_resampling_refusal_names_the_file(tmp_path, capsys):
    cfg = _config(1)
    cfg["geometry"] = {"spacing": [1.0, 1.0, 1.0], "orientation": "RAS"}
    model = tmp_path / "m.safetensors"
    save_model(model, build_model(cfg), cfg)
    _nifti_with_zooms(tmp_path / "in" / "c1.nii.gz", (100.0, 100.0, 100.0))  # the largest spacing accepted
    rc, err = _predict(capsys, tmp_path / "in", tmp_path / "out", model, "--resample")
    _one_line_error(rc, err, "c1.nii.gz", "would need", "GiB of memory")
    assert not (tmp_path / "out").exists()


def test_nifti_cut_before_it_was_compressed(tmp_path, capsys, model1):
    """A complete gzip stream of a NIfTI that is too short: the trailer disagrees with the header, the stream
    reads to its end, but its length is what decides."""
    import gzip

    from lightmedseg.data.integrity import check_complete

    full = _nifti(tmp_path / "full.nii", np.ones(SHAPE, np.float32)).read_bytes()
    short = tmp_path / "in" / "c1.nii.gz"
    short.parent.mkdir()
    short.write_bytes(gzip.compress(full[:-1000]))
    with pytest.raises(ValueError, match=r"c1.nii.gz: holds \d+ bytes uncompressed but its header declares \d+"):
        check_complete(short)
    rc, err = _predict(capsys, tmp_path / "in", tmp_path / "out", model1)
    _one_line_error(rc, err, "c1.nii.gz", "truncated or corrupt")
    assert "error" in err.strip().splitlines()[-1], err  # the whole message on that line (nibabel's has a break)


@pytest.fixture
def label_outside_the_set(tmp_path) -> Path:
    """A dataset whose first training case (default split: synth_001, synth_002; validation synth_000) has a label
    value not in dataset.json."""
    dataset = make_synthetic_dataset(tmp_path / "ds3", num_cases=3, seed=0, shape=(32, 32, 32))
    label = dataset / "labelsTr" / "synth_001.nii.gz"  # the first training case: the loader then reads the next
    img = nib.load(str(label))
    data = np.asarray(img.dataobj).copy()
    data[16, 16, 16] = 7  # inside the crop, so the loader meets it
    nib.save(nib.Nifti1Image(data, img.affine, img.header), str(label))
    return dataset


@pytest.mark.parametrize("where", [["data.cache=memory"], ["data.cache=null", "train.num_workers=2"]],
                         ids=["caching", "loader-worker"])
def test_label_value_outside_the_set_ends_training_cleanly(tmp_path, label_outside_the_set, where):
    """Met while MONAI's cache is filled (its thread pool used to leave a worker loading the next case while the
    error ended the process, which then aborted: SIGABRT, exit 134), or in a DataLoader worker (the error arrives
    as text). A fresh interpreter: loader worker processes and an abort must not touch the pytest process."""
    import subprocess
    import sys

    sets = [a for w in where for a in ("--set", w)]
    data = str(label_outside_the_set)
    proc = subprocess.run([sys.executable, "-m", "lightmedseg", "train", "--preset", "demo", "--data", data,
                           "--out", str(tmp_path / "run"), "--no-progress", "--max-steps", "1",
                           "--set", "data.patch_size=[16,16,16]", *sets], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    _one_line_error(proc.returncode, proc.stderr, "synth_001.nii.gz", "label values [7] are outside the declared set")


def test_average_score_checkpoints_and_demo_follow_the_write_rule(tmp_path, capsys, dataset, model1):
    mine = tmp_path / "mine.safetensors"
    mine.write_text("my file")
    for target in (mine, dataset / "avg.safetensors"):
        rc, err = _run(capsys, "average", "-o", target, model1, model1)
        _one_line_error(rc, err, str(target), "--overwrite" if target == mine else "dataset folder")
    assert mine.read_text() == "my file" and not (dataset / "avg.safetensors").exists()
    assert _run(capsys, "average", "-o", mine, model1, model1, "--overwrite")[0] == 0
    table = tmp_path / "table.csv"
    table.write_text("my,table\n")
    rc, err = _run(capsys, "score-checkpoints", tmp_path / "run", "--data", dataset, "-o", table)
    _one_line_error(rc, err, str(table), "--overwrite")
    assert table.read_text() == "my,table\n"
    rc, err = _run(capsys, "demo", "-o", dataset / "demo", "--max-steps", "1")
    _one_line_error(rc, err, "dataset folder")
    assert not (dataset / "demo").exists()


def test_a_full_disk_while_appending_a_log_names_it_and_leaves_no_half_row(tmp_path, monkeypatch):
    import lightmedseg.training.logs as logs

    log = logs.CsvLog(tmp_path / "steps.csv", ["step", "loss"], "step")
    log.append([{"step": 1, "loss": 0.5}])
    before = (tmp_path / "steps.csv").read_bytes()

    class HalfThenFull:
        def __init__(self, fh):
            self.fh = fh

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            if len(data) > 3:
                return self.fh.write(data[:3])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(logs, "open", lambda *a, **k: HalfThenFull(open(*a, **k)), raising=False)
    with pytest.raises(OSError, match=r"steps.csv: cannot write \(No space left on device\)"):
        log.append([{"step": 2, "loss": 0.25}, {"step": 3, "loss": 0.125}])
    assert (tmp_path / "steps.csv").read_bytes() == before


def test_a_full_disk_in_tensorboards_writer_thread_is_one_line_without_a_thread_traceback(tmp_path, monkeypatch):
    # TensorBoard writes events in a thread of its own; a full disk there used to print the thread's traceback
    # before the training thread's one-line error. The error must still reach the training thread, naming the
    # events folder, and the thread must print nothing.
    import threading

    from tensorboard.summary.writer import record_writer

    import lightmedseg.training.logs as logs

    def full(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    reported = []
    monkeypatch.setattr(threading, "excepthook", lambda args: reported.append(args.exc_value))
    logger = logs.RunLogger(tmp_path, ["epoch", "step"], 0, 1, tensorboard=True)
    monkeypatch.setattr(record_writer.RecordWriter, "write", full)
    row = {"step": 1, "epoch": 0, "loss": 0.5, "dice": 0.2, "ce": 0.2, "boundary": 0.1, "lr": 1e-3}
    with pytest.raises(OSError, match=r"tensorboard: cannot write \(No space left on device\)"):
        for step in range(1, 50):  # the thread fails on its first write; the next call in this thread sees it
            logger.log_step({**row, "step": step})
            logger.flush_steps()
    assert reported == []
