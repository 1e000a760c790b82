"""Issue 29: an exported IR carries the shipped model's card, so ``predict -m acdc.xml`` gives the labels
``predict -m acdc`` gives, on real ACDC validation volumes (skipped without ../shared/data).

The two volumes are the first validation patient of ``splits/acdc_nnformer.json`` (its ED and ES frames),
converted from the shared WSL4MIS HDF5 files into a temporary folder.
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


def test_exported_ir_predicts_as_the_shipped_model_on_acdc(shared_data: Path, tmp_path: Path, capsys) -> None:
    pytest.importorskip("h5py")  # the [convert] extra
    from lightmedseg.data.convert import convert

    cases = read_split(SPLIT)["validation"][:2]  # patient089 ED and ES
    h5 = tmp_path / "h5"
    h5.mkdir()
    for case in cases:
        source = shared_data / "acdc-wsl4mis" / f"{case}.h5"
        if not source.is_file():
            pytest.skip(f"{source} is absent")
        shutil.copy(source, h5)
    convert("acdc-h5", h5, tmp_path / "acdc")
    images = tmp_path / "acdc" / "imagesTr"
    assert sorted(p.name for p in images.iterdir()) == [f"{c}_0000.nii.gz" for c in cases]

    assert main(["export", "-m", "acdc", "-o", str(tmp_path / "acdc.xml")]) == 0
    assert "embedded card: TTA rot90; largest component of RV, Myo; LV must touch Myo" in capsys.readouterr().out
    logs: dict[str, list[str]] = {"shipped": [], "exported": []}
    predict(images, tmp_path / "shipped", "acdc", device="cpu", progress=False, log=logs["shipped"].append)
    predict(images, tmp_path / "exported", tmp_path / "acdc.xml", device="cpu", progress=False,
            log=logs["exported"].append)
    assert any("OpenVINO" in m and "given file" in m for m in logs["exported"]), logs
    assert any("tta rot90" in m.lower() for m in logs["exported"]), logs
    for case in cases:
        a, b = (np.asarray(nib.load(str(tmp_path / run / f"{case}.nii.gz")).dataobj) for run in ("shipped", "exported"))
        assert set(np.unique(a)) == {0, 1, 2, 3}, case  # a real segmentation of the heart
        np.testing.assert_array_equal(a, b, err_msg=case)
