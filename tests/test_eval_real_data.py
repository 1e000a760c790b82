"""Evaluation on a real BraTS 2015 label map (read in place from ../shared/data, never copied)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance

from lightmedseg.evaluation.evaluate import evaluate_folders

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "brats2015-sample"
CASE = DATA / "train" / "brats_2013_pat0005_1" / "OTMultiClass.nii.gz"
BRATS2015 = {
    "channel_names": {"0": "T1ce", "1": "FLAIR"},
    "labels": {"background": 0, "NCR": 1, "ED": 2, "NET": 3, "ET": 4},
    "numTraining": 1, "file_ending": ".nii.gz", "label_convention": "brats",
}

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    if not CASE.is_file():
        pytest.skip(f"real BraTS sample not available at {CASE}")
    root = tmp_path_factory.mktemp("real")
    (root / "ref").mkdir()
    (root / "ref" / "pat0005.nii.gz").symlink_to(CASE.resolve())  # the reference is the shared file itself
    img = nib.load(str(CASE))
    lab = np.asarray(img.dataobj).astype(np.uint8)
    shifted = np.roll(lab, 2, axis=0)  # a prediction 2 voxels (2 mm) off along x
    (root / "pred").mkdir()
    nib.save(nib.Nifti1Image(shifted, img.affine, img.header), str(root / "pred" / "pat0005.nii.gz"))
    (root / "dataset.json").write_text(json.dumps(BRATS2015))
    return root, lab, shifted


@pytest.mark.filterwarnings("ignore::FutureWarning")  # MONAI internal deprecation in the direct call
def test_real_case_against_monai(folders):
    root, lab, shifted = folders
    rows, summary = evaluate_folders(root / "pred", root / "ref", mode="strict", progress=False)
    assert summary["regions"] == {"WT": [1, 2, 3, 4], "TC": [1, 3, 4], "ET": [4]}
    wt = next(r for r in rows if r["kind"] == "region" and r["name"] == "WT")
    p = torch.as_tensor(np.isin(shifted, [1, 2, 3, 4]).transpose(2, 1, 0))[None, None].float()  # (z, y, x)
    r = torch.as_tensor(np.isin(lab, [1, 2, 3, 4]).transpose(2, 1, 0))[None, None].float()
    assert wt["dice"] == pytest.approx(float(compute_dice(p, r, include_background=True)), abs=1e-6)
    monai_hd = float(compute_hausdorff_distance(p, r, include_background=True, percentile=95, spacing=[1.0, 1.0, 1.0]))
    assert wt["hd95"] == pytest.approx(monai_hd, abs=1e-4)
    assert 0.0 < wt["hd95"] <= 2.0 + 1e-6  # a 2 mm shift cannot move any surface point further


def test_real_case_self_is_perfect_in_both_modes(folders, tmp_path):
    root, _, _ = folders
    copy = tmp_path / "ref_copy"  # a folder scored against itself is refused (issue 13); a copy scores 100 %
    shutil.copytree(root / "ref", copy)
    for mode in ("strict", "nnformer"):
        _, summary = evaluate_folders(copy, root / "ref", labels=root / "dataset.json", mode=mode, progress=False)
        for name, v in summary["metrics"]["regions"].items():
            assert v["dice"]["mean"] == 1.0 and v["hd95"]["mean"] == 0.0, (mode, name)
