"""Issue 29: an exported model carries the shipped model's card, so ``predict -m acdc.xml`` (and ``-m acdc.onnx``)
gives the labels ``predict -m acdc`` gives, on real ACDC validation volumes (skipped without ../shared/data).

The volumes are the first validation patient of ``splits/acdc_nnformer.json`` (its ED and ES frames),
converted once per module from the shared WSL4MIS HDF5 files into a temporary folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from lightmedseg.cli.main import main
from lightmedseg.data.splits import read_split
from lightmedseg.inference.pipeline import predict

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]
SPLIT = Path(__file__).resolve().parents[1] / "src" / "lightmedseg" / "splits" / "acdc_nnformer.json"
CARD_LINE = "embedded card: TTA rot90; largest component of RV, Myo; LV must touch Myo"


@pytest.fixture(scope="module")
def acdc_images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """(imagesTr folder, case IDs) of patient089's two frames, converted from ../shared/data/acdc-wsl4mis."""
    from conftest import SHARED_DATA

    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (only present in the development setup)")
    pytest.importorskip("h5py")  # the [convert] extra
    from lightmedseg.data.convert import convert

    root = tmp_path_factory.mktemp("acdc_real")
    cases = read_split(SPLIT)["validation"][:2]  # patient089 ED and ES
    h5 = root / "h5"
    h5.mkdir()
    for case in cases:
        source = SHARED_DATA.resolve() / "acdc-wsl4mis" / f"{case}.h5"
        if not source.is_file():
            pytest.skip(f"{source} is absent")
        shutil.copy(source, h5)
    convert("acdc-h5", h5, root / "acdc")
    images = root / "acdc" / "imagesTr"
    assert sorted(p.name for p in images.iterdir()) == [f"{c}_0000.nii.gz" for c in cases]
    return images, cases


def _labels(folder: Path, case: str) -> np.ndarray:
    return np.asarray(nib.load(str(folder / f"{case}.nii.gz")).dataobj)


def test_exported_ir_predicts_as_the_shipped_model_on_acdc(acdc_images, tmp_path: Path, capsys) -> None:
    images, cases = acdc_images
    assert main(["export", "-m", "acdc", "-o", str(tmp_path / "acdc.xml")]) == 0
    assert CARD_LINE in capsys.readouterr().out
    logs: dict[str, list[str]] = {"shipped": [], "exported": []}
    predict(images, tmp_path / "shipped", "acdc", device="cpu", progress=False, log=logs["shipped"].append)
    predict(images, tmp_path / "exported", tmp_path / "acdc.xml", device="cpu", progress=False,
            log=logs["exported"].append)
    assert any("OpenVINO" in m and "given file" in m for m in logs["exported"]), logs
    assert any("tta rot90" in m.lower() for m in logs["exported"]), logs
    for case in cases:
        a, b = _labels(tmp_path / "shipped", case), _labels(tmp_path / "exported", case)
        assert set(np.unique(a)) == {0, 1, 2, 3}, case  # a real segmentation of the heart
        np.testing.assert_array_equal(a, b, err_msg=case)


def test_exported_onnx_predicts_as_the_shipped_model_on_acdc(acdc_images, tmp_path: Path, capsys) -> None:
    """``-m acdc.onnx`` runs on ONNX Runtime, in f32 only: its labels are those of ``-m acdc --precision fp32``
    (on a CPU with native bf16 the default ``-m acdc`` runs bf16, a few boundary voxels apart). One volume (ED):
    ONNX Runtime with the card's 8 TTA views takes about a minute a volume on one thread."""
    pytest.importorskip("onnxruntime")  # the [export] extra
    pytest.importorskip("onnx")
    images, cases = acdc_images
    case = cases[0]
    single = images / f"{case}_0000.nii.gz"  # a case file: that case only, written into the output folder
    assert main(["export", "-m", "acdc", "-o", str(tmp_path / "acdc.onnx"), "--exporter", "legacy"]) == 0
    assert CARD_LINE in capsys.readouterr().out
    logs: list[str] = []
    predict(single, tmp_path / "shipped", "acdc", device="cpu", precision="fp32", progress=False, log=lambda m: None)
    predict(single, tmp_path / "exported", tmp_path / "acdc.onnx", device="cpu", progress=False, log=logs.append)
    assert any("onnxruntime" in m and "tta rot90" in m.lower() for m in logs), logs
    a, b = _labels(tmp_path / "shipped", case), _labels(tmp_path / "exported", case)
    assert set(np.unique(a)) == {0, 1, 2, 3}, case
    np.testing.assert_array_equal(a, b, err_msg=case)
