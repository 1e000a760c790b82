"""The demo runs end to end (tiny settings) and writes a complete report folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lightmedseg.cli.main import main
from lightmedseg.tools.demo import chance_dice, learned_verdict


@pytest.mark.slow
def test_demo_end_to_end_tiny(tmp_path: Path, capsys, monkeypatch) -> None:
    import lightmedseg.viz.case_figures as case_figures
    from lightmedseg.tools.demo import CROP_MARGIN_MM

    figure_calls = []
    real_figures = case_figures.save_case_figures

    def spy(*args, **kwargs):
        figure_calls.append(kwargs)
        return real_figures(*args, **kwargs)

    monkeypatch.setattr(case_figures, "save_case_figures", spy)  # the demo's case figures crop to the foreground
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
    printed = capsys.readouterr().out
    assert str(report.resolve() / "README.md") in printed
    table = [line for line in printed.splitlines() if line.startswith("| ")]  # the results table, on the console
    assert table[0].startswith("| region | test Dice") and {row.split("|")[1].strip() for row in table[2:]} == {"WT", "TC", "ET"}
    assert "Average test Dice" in printed
    assert [c["crop_margin_mm"] for c in figure_calls] == [CROP_MARGIN_MM] and CROP_MARGIN_MM > 0


@pytest.mark.slow
def test_step_time_probe_leaves_nothing_behind(tmp_path: Path) -> None:
    from lightmedseg.config import load_config
    from lightmedseg.data.synth import make_synthetic_dataset
    from lightmedseg.tools.demo import measure_step_seconds

    data = make_synthetic_dataset(tmp_path / "data", 3, 0, (32, 32, 32))
    config = load_config("demo", overrides=["data.patch_size=[32,32,32]", "infer.roi_size=[32,32,32]",
                                            "train.batch_size=1"])
    seconds = measure_step_seconds(config, data, tmp_path / "probe", steps=2)
    assert 0 < seconds < 120
    assert not (tmp_path / "probe").exists()
    assert config["train"]["validate_on_stop"] is True  # the caller's config is not modified


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


def test_schedule_is_sized_to_the_budget_and_decays_fully() -> None:
    from lightmedseg.config import load_config
    from lightmedseg.tools.demo import plan_steps, sized_schedule
    from lightmedseg.training.optim import build_optimizer, build_scheduler

    # the loaded machine: 6 minutes at ~3.5 s a step fit ~100 of the preset's 600 steps
    assert plan_steps(360, 3.5, 600) == int(0.8 * 360 // 3.5) == 82
    assert plan_steps(3600, 0.5, 600) == 600  # fits: the preset's schedule unchanged
    assert plan_steps(10, 60.0, 600) == 10  # never fewer than MIN_STEPS
    assert plan_steps(360, 0.0, 600) == 600  # no measurement: nothing to size
    train_cfg = load_config("demo")["train"]
    assert sized_schedule(train_cfg, 600) is train_cfg
    small = sized_schedule(train_cfg, 82)
    total = small["epochs"] * small["iterations_per_epoch"]
    assert 82 - small["epochs"] < total <= 82 and small["epochs"] == 2
    assert train_cfg["epochs"] == 12  # the input is not modified
    assert small["scheduler"]["warmup_epochs"] + small["scheduler"]["t_max_epochs"] == small["epochs"]
    # the learning rate really decays to eta_min at the last planned step
    import torch

    opt = build_optimizer([torch.nn.Parameter(torch.zeros(1))], small)
    sched = build_scheduler(opt, small)
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    base, eta_min = small["optimizer"]["lr"], small["scheduler"]["eta_min"]
    assert max(lrs) == pytest.approx(base, rel=0.05)
    assert opt.param_groups[0]["lr"] == pytest.approx(eta_min, abs=1e-3 * base)
