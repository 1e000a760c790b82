"""Bad input to ``lightmedseg predict``: each a clear error (exit 2, message naming the problem), nothing half-written."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from lightmedseg.checkpoint import save_model

from lightmedseg.model.factory import build_model
from lightmedseg.cli.main import main
from lightmedseg.config import load_config

AFFINE = np.diag([1.1, 0.9, 2.5, 1.0])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = load_config("demo", overrides=["infer.roi_size=[32,32,32]"])
    cfg["labels"] = {"background": 0, "NCR": 1, "ED": 2, "ET": 4}
    path = tmp_path_factory.mktemp("run") / "model_best.safetensors"
    save_model(path, build_model(cfg), cfg)
    return path.parent


def _case(folder: Path, case: str, channels=range(4), shape=(21, 19, 17)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for c in channels:
        data = np.random.default_rng(c).normal(size=shape).astype(np.float32)
        nib.save(nib.Nifti1Image(data, AFFINE), str(folder / f"{case}_{c:04d}.nii.gz"))


def _predict(capsys, inp: Path, out: Path, model: Path, *extra: str) -> tuple[int, str]:
    rc = main(["predict", "-i", str(inp), "-o", str(out), "-m", str(model), "--quiet", *extra])
    return rc, capsys.readouterr().err


def _nothing_written(out: Path) -> bool:
    return not out.exists() or not any(out.rglob("*"))


def test_unreadable_file(tmp_path, capsys, run_dir):
    _case(tmp_path / "in", "c1")
    (tmp_path / "in" / "c1_0002.nii.gz").write_bytes(b"\x1f\x8b not really a gzip stream")
    rc, err = _predict(capsys, tmp_path / "in", tmp_path / "out", run_dir)
    assert rc == 2 and "c1_0002.nii.gz" in err
    assert _nothing_written(tmp_path / "out")


def test_truncated_second_case_leaves_first_complete_and_no_partial(tmp_path, capsys, run_dir):
    _case(tmp_path / "in", "a")
    _case(tmp_path / "in", "b")
    good = (tmp_path / "in" / "b_0001.nii.gz").read_bytes()
    (tmp_path / "in" / "b_0001.nii.gz").write_bytes(good[: len(good) // 2])
    rc, err = _predict(capsys, tmp_path / "in", tmp_path / "out", run_dir)
    assert rc == 2 and "b_0001.nii.gz" in err and "truncated or corrupt" in err
    # no temporaries, no b; the sidecars come before the first label map, so a rerun goes on from here
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.nii.gz", "labels.ctbl", "labels.json",
                                                                    "provenance.json"]
    assert nib.load(str(tmp_path / "out" / "a.nii.gz")).shape == (21, 19, 17)
    (tmp_path / "in" / "b_0001.nii.gz").write_bytes(good)  # the file replaced: the same command finishes the job
    rc, err = _predict(capsys, tmp_path / "in", tmp_path / "out", run_dir)
    assert rc == 0 and (tmp_path / "out" / "b.nii.gz").is_file(), err


def test_missing_channel_file(tmp_path, capsys, run_dir):
    _case(tmp_path / "in", "c1", channels=(0, 1, 3))
    rc, err = _predict(capsys, tmp_path / "in", tmp_path / "out", run_dir)
    assert rc == 2 and "c1_0002.nii.gz" in err and "missing channel" in err
    assert _nothing_written(tmp_path / "out")


def test_wrong_channel_count(tmp_path, capsys, run_dir):
    _case(tmp_path / "in", "c1", channels=range(5))
    rc, err = _predict(capsys, tmp_path / "in", tmp_path / "out", run_dir)
    assert rc == 2 and "5 channel files" in err and "expects 4" in err
    # a lone 3D file is one channel; a 4D file with 2 channels is also wrong for a 4-channel model
    lone = tmp_path / "lone" / "x.nii.gz"
    lone.parent.mkdir()
    nib.save(nib.Nifti1Image(np.zeros((20, 20, 20), np.float32), AFFINE), str(lone))
    rc, err = _predict(capsys, lone, tmp_path / "out2", run_dir)
    assert rc == 2 and "expects 4" in err
    nib.save(nib.Nifti1Image(np.zeros((20, 20, 20, 2), np.float32), AFFINE), str(lone))
    rc, err = _predict(capsys, lone, tmp_path / "out2", run_dir)
    assert rc == 2 and "2 channels" in err
    assert _nothing_written(tmp_path / "out") and _nothing_written(tmp_path / "out2")


def test_size_too_small(tmp_path, capsys, run_dir):
    _case(tmp_path / "in", "flat", shape=(40, 40, 1))  # one slice: a 2D image
    rc, err = _predict(capsys, tmp_path / "in", tmp_path / "out", run_dir)
    assert rc == 2 and "too small" in err
    assert _nothing_written(tmp_path / "out")


def test_output_inside_input_folder(tmp_path, capsys, run_dir):
    _case(tmp_path / "in", "c1")
    for out in (tmp_path / "in" / "preds", tmp_path / "in", tmp_path / "in" / "c1.nii.gz"):
        rc, err = _predict(capsys, tmp_path / "in", out, run_dir)
        assert rc == 2 and "inside the input folder" in err
    rc, err = _predict(capsys, tmp_path / "in" / "c1_0000.nii.gz", tmp_path / "in" / "seg.nii.gz", run_dir)
    assert rc == 2 and "inside the input folder" in err
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == [f"c1_{c:04d}.nii.gz" for c in range(4)]


def test_missing_model_and_missing_cuda(tmp_path, capsys, run_dir):
    _case(tmp_path / "in", "c1")
    rc, err = _predict(capsys, tmp_path / "in", tmp_path / "out", tmp_path / "no_such_run")
    assert rc == 2 and "no such file, run folder or shipped model" in err
    rc, err = _predict(capsys, tmp_path / "in", tmp_path / "out", run_dir, "--device", "gpu0")
    assert rc == 2 and "not a device name" in err
    if not torch.cuda.is_available():
        rc, err = _predict(capsys, tmp_path / "in", tmp_path / "out", run_dir, "--device", "cuda")
        assert rc == 2 and "CUDA is not available" in err
    assert _nothing_written(tmp_path / "out")


def test_bf16_with_reference_path(tmp_path, capsys, run_dir):
    _case(tmp_path / "in", "c1")
    rc, err = _predict(capsys, tmp_path / "in", tmp_path / "out", run_dir, "--reference", "--precision", "bf16")
    assert rc == 2 and "--precision bf16 needs the fast path" in err
    assert _nothing_written(tmp_path / "out")


def test_num_parts_split_the_cases_without_overlap(tmp_path, capsys, run_dir):
    inp, out = tmp_path / "in", tmp_path / "out"
    for case in ("c0", "c1", "c2"):
        _case(inp, case, shape=(16, 16, 16))
    written = []
    for part in (0, 1):
        rc, err = _predict(capsys, inp, out / f"p{part}", run_dir, "--num-parts", "2", "--part-id", str(part))
        assert rc == 0, err
        written.append(sorted(p.name for p in (out / f"p{part}").glob("*.nii.gz")))
    assert written == [["c0.nii.gz", "c2.nii.gz"], ["c1.nii.gz"]]
    rc, err = _predict(capsys, inp, out / "bad", run_dir, "--num-parts", "2", "--part-id", "2")
    assert rc == 2 and "--part-id must lie in [0, --num-parts)" in err and _nothing_written(out / "bad")


def test_provenance_refuses_a_folder_written_by_another_model_or_options(tmp_path, capsys, demo_run):
    """Issue 29: predict records which model and options wrote a folder; a rerun with others is refused unless
    --overwrite (which redoes every case), the same model and options skip what is done, as before."""
    import json

    from lightmedseg.cli.main import main
    import nibabel as nib
    import numpy as np

    import torch

    from lightmedseg.checkpoint import save_model

    one, second = demo_run("prov1", in_channels=1).model_file, demo_run("prov2", in_channels=1)
    with torch.no_grad():  # another model: other weights
        next(second.model.parameters()).add_(1.0)
    save_model(second.model_file, second.model, second.config)
    other = second.model_file
    (tmp_path / "in").mkdir()
    data = np.random.default_rng(0).random((32, 32, 32)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "in" / "c1.nii.gz"))
    out = tmp_path / "out"
    base = ["predict", "-i", str(tmp_path / "in"), "-o", str(out), "--quiet", "--no-tta"]
    assert main([*base, "-m", str(one)]) == 0
    record = json.loads((out / "provenance.json").read_text())
    assert record["identity"]["models"][0]["file"] == str(one) and record["identity"]["options"]["tta"] is None
    capsys.readouterr()
    assert main([*base, "-m", str(one)]) == 0  # same model and options: skipped, not refused
    assert "skipping 1 case" in capsys.readouterr().err
    before = (out / "c1.nii.gz").read_bytes()
    assert main([*base, "-m", str(other)]) == 2
    err = capsys.readouterr().err
    assert "another model or other options" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert (out / "c1.nii.gz").read_bytes() == before
    assert main(["predict", "-i", str(tmp_path / "in"), "-o", str(out), "--quiet", "-m", str(one), "--tta"]) == 2
    assert "tta" in capsys.readouterr().err
    assert main([*base, "-m", str(other), "--overwrite"]) == 0
    assert json.loads((out / "provenance.json").read_text())["identity"]["models"][0]["file"] == str(other)
    (out / "provenance.json").unlink()  # outputs nobody vouches for
    assert main([*base, "-m", str(other)]) == 2
    assert "no provenance.json" in capsys.readouterr().err
