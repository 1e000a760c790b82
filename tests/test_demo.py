"""The demo runs end to end (tiny settings) and writes a complete report folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lightmedseg.cli.main import main
from lightmedseg.tools.demo import chance_dice, learned_verdict


@pytest.mark.slow
def test_demo_end_to_end_tiny(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    rc = main([
        "demo", "--out", str(out), "--shape", "32", "32", "32", "--train-cases", "3", "--test-cases", "2",
        "--max-steps", "2", "--no-progress",
        "--set", "data.patch_size=[32,32,32]", "--set", "infer.roi_size=[32,32,32]",
        "--set", "train.iterations_per_epoch=2",
    ])
    assert rc == 0
    report = out / "report"
    for name in ("README.md", "curves.png", "profile.json", "demo_summary.json", "synth_000_overlay.png",
                 "synth_000_anchors.png"):
        assert (report / name).is_file(), name
    assert any((report / "evaluation").glob("*.csv"))
    summary = json.loads((report / "demo_summary.json").read_text())
    assert set(summary["test_dice"]) == {"WT", "TC", "ET"}
    assert summary["train"]["steps"] == 2
    assert 0 < summary["chance_dice"]["ET"] < summary["chance_dice"]["WT"] < 1
    assert str(report.resolve() / "README.md") in capsys.readouterr().out


def test_demo_refuses_a_non_empty_output_folder(tmp_path: Path, capsys) -> None:
    (tmp_path / "keep.txt").write_text("x")
    assert main(["demo", "--out", str(tmp_path), "--max-steps", "1"]) == 2
    assert "not empty" in capsys.readouterr().err


def test_chance_dice_is_the_prevalence(tmp_path: Path) -> None:
    import nibabel as nib
    import numpy as np

    lab = np.zeros((4, 4, 4), np.uint8)
    lab[:2] = 1  # half the voxels
    lab[0, 0, 0] = 4
    nib.save(nib.Nifti1Image(lab, np.eye(4)), tmp_path / "c.nii.gz")
    chance = chance_dice(tmp_path, {"WT": [1, 4], "ET": [4]})
    assert chance == {"WT": 0.5, "ET": 1 / 64}


def test_learned_verdict_needs_absolute_and_relative_margin() -> None:
    def summ(d: float) -> dict:
        return {"metrics": {"regions": {"WT": {"dice": {"mean": d}}}}}

    assert learned_verdict(summ(0.8), {"WT": 0.1})
    assert not learned_verdict(summ(0.4), {"WT": 0.01})  # below 50%
    assert not learned_verdict(summ(0.6), {"WT": 0.25})  # less than 3x chance
