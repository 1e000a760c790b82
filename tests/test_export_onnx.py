"""ONNX / TorchScript export and the ONNX Runtime predict path agree with PyTorch.

Tolerance: max |logit difference| <= lightmedseg.inference.export.ORT_ATOL (1e-4), float32 re-association.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from lightmedseg.checkpoint import CONFIG_KEY
from lightmedseg.cli.main import main
from lightmedseg.inference.export import ORT_ATOL, export_onnx, export_torchscript


@pytest.fixture(scope="module")
def trained(demo_run):
    model, cfg, root = demo_run("export")
    onnx_path = root / "model.onnx"
    result = export_onnx(model, cfg, onnx_path, exporter="legacy")
    return model, cfg, root, onnx_path, result


def test_onnx_metadata_and_logits_match(trained):
    model, cfg, _, onnx_path, result = trained
    assert result.exporter == "legacy" and result.max_abs_diff <= ORT_ATOL
    proto = onnx.load(str(onnx_path))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta[CONFIG_KEY]) == cfg
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    for shape in [(1, 4, 48, 16, 32), (3, 4, 16, 16, 16)]:  # sizes not used during export or its check
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(5))
        with torch.inference_mode():
            ref = model(x).numpy()
        out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
        assert out.shape == ref.shape
        assert np.abs(out - ref).max() <= ORT_ATOL


def test_onnxruntime_predict_matches_pytorch_without_model_code(trained, check_matches_torch):
    _, _, root, onnx_path, _ = trained
    aff = np.array([[0, 0, -2.0, 4], [-0.9, 0, 0, 1], [0, 1.3, 0, -2], [0, 0, 0, 1]])  # permuted axes
    check_matches_torch(root / "run", onnx_path, aff)


def test_torchscript_export(trained, tmp_path):
    model, cfg, _, _, _ = trained
    path = tmp_path / "m.torchscript.pt"
    export_torchscript(model, cfg, path)
    extra = {"lightmedseg_config.json": ""}
    loaded = torch.jit.load(str(path), _extra_files=extra)
    assert json.loads(extra["lightmedseg_config.json"]) == cfg
    x = torch.randn(1, 4, 32, 16, 48)
    with torch.inference_mode():
        assert (loaded(x) - model(x)).abs().max() <= ORT_ATOL


def test_cli_export_refuses_existing_and_bad_names(trained, tmp_path, capsys):
    _, _, root, onnx_path, _ = trained
    rc = main(["export", "-m", str(root / "run"), "-o", str(onnx_path)])
    assert rc == 2 and "--overwrite" in capsys.readouterr().err
    rc = main(["export", "-m", str(root / "run"), "-o", str(tmp_path / "model.bin"), "--exporter", "legacy"])
    assert rc == 2 and "must end in .onnx" in capsys.readouterr().err
    assert not (tmp_path / "model.bin").exists()


def test_cli_export_of_a_card_ensemble_exports_the_first_member_and_says_so(trained, tmp_path, capsys):
    import shutil

    from lightmedseg.checkpoint import resolve_model_path

    _, _, root, _, _ = trained
    folder = tmp_path / "carded"
    folder.mkdir()
    shutil.copy(resolve_model_path(root / "run"), folder / "model_best.safetensors")
    shutil.copy(folder / "model_best.safetensors", folder / "member_2.safetensors")
    (folder / "card.json").write_text(json.dumps({"ensemble": {"members": ["model_best.safetensors", "member_2.safetensors"]}}))
    assert main(["export", "-m", str(folder), "-o", str(tmp_path / "m.onnx"), "--exporter", "legacy"]) == 0
    out = capsys.readouterr().out
    assert "an ensemble of 2 models; this exports the first" in out and "model_best.safetensors" in out
    assert (tmp_path / "m.onnx").is_file()


def test_onnx_without_config_is_rejected(trained, tmp_path, capsys):
    _, _, _, onnx_path, _ = trained
    proto = onnx.load(str(onnx_path))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    (tmp_path / "in").mkdir()
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), np.eye(4)), str(tmp_path / "in" / "a_0000.nii.gz"))
    rc = main(["predict", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "o"), "-m", str(bare), "--quiet"])
    assert rc == 2 and CONFIG_KEY in capsys.readouterr().err


@pytest.mark.slow
def test_dynamo_exporter(trained, tmp_path):
    """The torch.export-based exporter (default); about a minute on a small CPU."""
    model, cfg, _, _, _ = trained
    result = export_onnx(model, cfg, tmp_path / "dyn.onnx", exporter="dynamo")
    assert result.exporter == "dynamo" and result.max_abs_diff <= ORT_ATOL
    sess = ort.InferenceSession(str(tmp_path / "dyn.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(1, 4, 16, 64, 32)
    with torch.inference_mode():
        ref = model(x).numpy()
    assert np.abs(sess.run(None, {"image": x.numpy()})[0] - ref).max() <= ORT_ATOL


def test_onnx_export_carries_the_card_and_predicts_as_its_source(trained, tmp_path, capsys):
    # TTA, post-processing, labels and training spacing travel in metadata_props; predicting from the file
    # (ONNX Runtime, no card.json beside it) applies them as predicting from the source folder does
    import shutil

    from lightmedseg.data.io import ImageGeometry
    from lightmedseg.inference.cards import ONNX_CARD_KEY, embedded_card, load_card
    from lightmedseg.inference.segment import Segmenter

    _, _, root, _, _ = trained
    card = {"labels": {"background": 0, "NCR": 1, "ED": 2, "ET": 4}, "geometry": {"spacing": [2.0, 1.0, 1.0]},
            "predict": {"tta": "rot90"}, "postprocess": {"keep_largest": True, "require_contact": {"ET": ["ED"]}},
            "validation": {"mean_dice": 1.0}}
    source = tmp_path / "source"
    shutil.copytree(root / "run", source)
    (source / "card.json").write_text(json.dumps(card))
    path = tmp_path / "out" / "m.onnx"
    assert main(["export", "-m", str(source), "-o", str(path), "--exporter", "legacy"]) == 0
    out = capsys.readouterr().out
    assert "embedded card: TTA rot90; largest component of every label; ET must touch ED" in out, out
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(meta[ONNX_CARD_KEY]) == embedded_card(card) and load_card(path) == embedded_card(card)

    a = Segmenter(source, "cpu", backend="torch", precision="fp32")
    b = Segmenter(path, "cpu")
    assert "onnxruntime" in b.description
    for seg in (a, b):
        assert seg.predictor.tta_mode == "rot90" and seg.keep_largest == [1, 2, 4] and seg.require_contact == {4: [2]}
        assert seg.config["geometry"]["spacing"] == [2.0, 1.0, 1.0]
    image = np.random.default_rng(4).normal(size=(4, 20, 36, 36)).astype(np.float32)
    geometry = ImageGeometry.from_spacing(image.shape[1:], (2.0, 1.0, 1.0))
    la, lb = (seg.predict(image, geometry)[0].labels for seg in (a, b))
    assert np.mean(la == lb) > 0.999  # ONNX Runtime vs PyTorch: identical up to exact ties


def test_export_of_a_model_without_a_card_says_so(trained, tmp_path, capsys):
    _, _, root, _, _ = trained
    assert main(["export", "-m", str(root / "run"), "-o", str(tmp_path / "m.onnx"), "--exporter", "legacy"]) == 0
    assert "embedded card: none (the model has no card.json)" in capsys.readouterr().out


def test_onnx_runtime_says_an_asked_precision_does_not_apply(trained):
    # ONNX Runtime runs the exported graph in fp32: an explicit --precision bf16 is named as not applied,
    # instead of silently giving fp32 results under a bf16 request
    from lightmedseg.inference.backends import load_backend

    _, _, _, onnx_path, _ = trained
    assert "does not apply" not in load_backend(onnx_path, precision="auto").description
    assert "--precision bf16 does not apply" in load_backend(onnx_path, precision="bf16").description
