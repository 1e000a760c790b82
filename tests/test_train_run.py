"""End-to-end training on a tiny synthetic dataset: loss falls, run folder contents, exact resume
(mid-epoch budget stop and a SIGKILLed subprocess), corrupt checkpoint through the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from lightmedseg.checkpoint import load_model
from lightmedseg.config import load_config
from lightmedseg.data.synth import make_synthetic_dataset
from lightmedseg.training.logs import METRICS_CSV, STEPS_CSV, read_csv
from lightmedseg.training.trainer import train

torch.set_num_threads(1)

# 4 epochs x 4 steps of one 32^3 patch, validation on 1 case every 2 epochs: a few seconds on one core.
TINY = [
    "data.patch_size=[32,32,32]", "train.epochs=4", "train.iterations_per_epoch=4", "train.batch_size=1",
    "train.val_every=2", "train.amp=none", "train.deterministic=true", "train.num_workers=0",
    "train.tensorboard=false", "train.seed=3", "data.augment={flip: true, rotate: false, noise: true}",
]


def _losses(run_dir: Path) -> list[tuple[int, str]]:
    return [(int(r["step"]), r["loss"]) for r in read_csv(run_dir / STEPS_CSV)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("data") / "synth", num_cases=4, seed=0, shape=(32, 32, 32))


@pytest.fixture(scope="module")
def reference_run(dataset, tmp_path_factory) -> tuple[Path, dict]:
    """One uninterrupted deterministic run, the yardstick of the resume tests."""
    run = tmp_path_factory.mktemp("ref") / "run"
    summary = train(load_config("demo", overrides=TINY), dataset, run, progress=False)
    return run, summary


def test_run_folder_is_complete_and_self_describing(reference_run, dataset) -> None:
    run, summary = reference_run
    assert summary["stopped"] == "completed" and summary["steps"] == 16 and summary["epochs_completed"] == 4
    for name in ("config.yaml", "split.json", "steps.csv", "metrics.csv", "curves.png", "checkpoint_last.pt",
                 "checkpoint_best.pt", "model_last.safetensors", "model_best.safetensors"):
        assert (run / name).is_file(), name
    config = yaml.safe_load((run / "config.yaml").read_text())
    meta = json.loads((dataset / "dataset.json").read_text())
    assert config["labels"] == meta["labels"]
    assert config["model"]["in_channels"] == len(meta["channel_names"])
    assert config["model"]["num_classes"] == len(meta["labels"])
    model, stored = load_model(run)  # predict's entry point reads the run folder
    assert stored["labels"] == meta["labels"] and model.config["num_classes"] == len(meta["labels"])
    rows = read_csv(run / METRICS_CSV)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    assert rows[1]["val_dice"] != "nan" and rows[0]["val_dice"] == "nan"  # validated every 2 epochs
    assert 0.0 <= float(rows[3]["val_dice_WT"]) <= 1.0
    assert summary["best_metric"] == pytest.approx(max(float(rows[i]["val_dice"]) for i in (1, 3)))


def test_loss_falls(dataset, tmp_path) -> None:
    cfg = load_config("demo", overrides=TINY + ["train.epochs=5", "train.val_every=100", "train.batch_size=2",
                                                "data.augment={}", "train.tensorboard=true"])
    train(cfg, dataset, tmp_path / "run", progress=False)
    losses = [float(v) for _, v in _losses(tmp_path / "run")]
    assert len(losses) == 20
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first - 0.05, (first, last)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    assert {"train/loss", "train/lr", "epoch/train_loss", "val/dice"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 21))


def test_budget_stop_mid_epoch_then_resume_is_exact(reference_run, dataset, tmp_path) -> None:
    ref_run, ref = reference_run
    run = tmp_path / "run"
    first = train(load_config("demo", overrides=TINY), dataset, run, max_steps=6, progress=False)
    assert first["stopped"] == "max_steps" and first["steps"] == 6  # epoch 1, batch 2 of 4
    assert [s for s, _ in _losses(run)] == list(range(1, 7))
    rows = read_csv(run / METRICS_CSV)
    # The final model of a budget stop is validated (a partial epoch-1 row), and can become model_best.
    assert [r["epoch"] for r in rows] == ["0", "1"] and rows[1]["val_dice"] != "nan"
    assert first["best_metric"] is not None and (run / "model_best.safetensors").is_file()
    again = train(None, dataset, run, resume=True, max_steps=6, progress=False)  # budget already used
    assert again["steps"] == 6 and again["stopped"] == "max_steps" and len(_losses(run)) == 6
    with pytest.raises(FileExistsError, match="--resume"):
        train(load_config("demo", overrides=TINY), dataset, run, progress=False)
    second = train(None, dataset, run, resume=True, progress=False)
    assert second["stopped"] == "completed"
    assert _losses(run) == _losses(ref_run)
    assert second["weights_checksum"] == ref["weights_checksum"]
    assert [r["epoch"] for r in read_csv(run / METRICS_CSV)] == ["0", "1", "2", "3"]  # partial row replaced


def test_snapshots_keep_every_validated_model(reference_run, dataset, tmp_path) -> None:
    """train.snapshots (switchable on resume): one weights file per validated model, named by its step."""
    from lightmedseg.checkpoint import read_checkpoint

    ref_run, _ = reference_run
    run = tmp_path / "run"
    train(load_config("demo", overrides=TINY), dataset, run, max_steps=4, progress=False)  # epoch 0: no validation
    assert not (run / "snapshots").exists()
    train(load_config("demo", overrides=TINY + ["train.snapshots=true"]), dataset, run, resume=True, progress=False)
    files = sorted((run / "snapshots").glob("*.safetensors"))
    assert [f.name for f in files] == ["model_step0000008.safetensors", "model_step0000016.safetensors"]
    rows = [r for r in read_csv(run / METRICS_CSV) if r["val_dice"] != "nan"]
    best_step = max(rows, key=lambda r: float(r["val_dice"]))["step"]
    best, _, _ = read_checkpoint(run / "model_best.safetensors")
    snap, config, _ = read_checkpoint(run / "snapshots" / f"model_step{int(best_step):07d}.safetensors")
    assert all(torch.equal(best[k], snap[k]) for k in best) and config["train"]["snapshots"] is True
    last, _, _ = read_checkpoint(run / "model_last.safetensors")
    early, _, _ = read_checkpoint(files[0])
    assert all(torch.equal(last[k], v) for k, v in read_checkpoint(files[1])[0].items())
    assert any(not torch.equal(last[k], early[k]) for k in last)
    assert _losses(run) == _losses(ref_run)  # keeping snapshots does not change the training


def test_sigkilled_run_resumes_to_the_same_losses(dataset, tmp_path) -> None:
    # The uninterrupted reference runs in a fresh process too, so both runs share every process-wide
    # setting; an in-process reference differed in the last float bit under a loaded full-suite run.
    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "lightmedseg.cli.main", "train", "--preset", "demo", "--data", str(dataset),
                "--out", str(out), "--no-progress"] + [a for o in TINY for a in ("--set", o)]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref_run = tmp_path / "reference"
    ref_proc = subprocess.run(command(ref_run), env=env, capture_output=True, text=True, timeout=300)
    assert ref_proc.returncode == 0, ref_proc.stderr[-2000:]
    ref = json.loads(ref_proc.stdout)
    run = tmp_path / "run"
    cmd = command(run)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (run / "checkpoint_last.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # somewhere in epoch 1 (or in the middle of the next write)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    (run / ".checkpoint_last.pt.x1y2z3.pt").write_bytes(b"PK half")  # as if killed inside a write
    done = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _losses(run) == _losses(ref_run)
    assert json.loads(done.stdout)["weights_checksum"] == ref["weights_checksum"]
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # stale temp files removed


def test_corrupt_checkpoint_is_a_clear_cli_error(reference_run, dataset, tmp_path, capsys) -> None:
    from lightmedseg.cli.main import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint_last.pt").write_bytes((reference_run[0] / "checkpoint_last.pt").read_bytes()[:5000])
    rc = main(["train", "--data", str(dataset), "--out", str(run), "--resume", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "checkpoint_last.pt" in err and "corrupt" in err and "Traceback" not in err


def test_bad_inputs_are_clear_errors(dataset, tmp_path, capsys) -> None:
    from lightmedseg.cli.main import main

    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--preset", "demo"]) == 2
    assert "no dataset.json" in capsys.readouterr().err
    assert main(["train", "--data", str(dataset), "--out", str(tmp_path / "r")]) == 2
    assert "--preset is required" in capsys.readouterr().err
    assert main(["train", "--data", str(dataset), "--out", str(tmp_path / "r"), "--preset", "demo",
                 "--set", "train.batch_size=3", "--set", "train.optimizer.name=rmsprop"]) == 2
    assert "adamw" in capsys.readouterr().err


def test_fast_path_switch_trains_like_the_reference(reference_run, dataset, tmp_path) -> None:
    ref_run, _ = reference_run
    summary = train(load_config("demo", overrides=TINY + ["train.fast=true"]), dataset, tmp_path / "run",
                    max_steps=3, progress=False)
    assert summary["steps"] == 3
    fast = [float(v) for _, v in _losses(tmp_path / "run")]
    ref = [float(v) for _, v in _losses(ref_run)][:3]
    assert fast == pytest.approx(ref, rel=1e-4)  # same function re-associated: equal up to rounding


def test_sigterm_stops_cleanly_with_a_checkpoint(dataset, tmp_path) -> None:
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "lightmedseg.cli.main", "train", "--preset", "demo", "--data", str(dataset),
           "--out", str(run), "--no-progress"] + [a for o in TINY for a in ("--set", o)]
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run / "checkpoint_last.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err[-2000:]  # stopped before the schedule's end: "resume me"
    summary = json.loads(out)
    assert summary["stopped"] == "SIGTERM" and summary["steps"] < 16
    state = torch.load(run / "checkpoint_last.pt", weights_only=True)
    assert state["step"] == summary["steps"] == len(_losses(run))
    # Only the budget keys may change on resume.
    from lightmedseg.cli.main import main

    assert main(["train", "--data", str(dataset), "--out", str(run), "--resume", "--set", "train.lr=1"]) == 2


def test_init_weights_start_a_second_stage(reference_run, dataset, tmp_path, capsys) -> None:
    """--init-weights: stage 2 starts from stage 1's weights with a fresh optimiser, step counter and schedule."""
    from lightmedseg.checkpoint import read_checkpoint
    from lightmedseg.cli.main import main

    ref_run, _ = reference_run
    stage1, _, _ = read_checkpoint(ref_run / "model_best.safetensors")  # what a run folder resolves to
    cfg = load_config("demo", overrides=TINY + ["train.val_every=100"])
    run = tmp_path / "stage2"
    stage2 = train(cfg, dataset, run, max_steps=1, progress=False, init_weights=ref_run)
    assert stage2["steps"] == 1
    first_loss = float(_losses(run)[0][1])
    fresh = train(load_config("demo", overrides=TINY + ["train.val_every=100"]), dataset, tmp_path / "fresh",
                  max_steps=1, progress=False)
    assert fresh["steps"] == 1
    # Same batch (same seed) on stage-1 weights gives a clearly lower loss than on a random init.
    assert first_loss < 0.9 * float(_losses(tmp_path / "fresh")[0][1])
    stored = yaml.safe_load((run / "config.yaml").read_text())
    assert stored["train"]["init_weights"] == str(ref_run / "model_best.safetensors")  # provenance
    after, _, _ = read_checkpoint(run / "model_last.safetensors")
    assert any(not torch.equal(after[k], stage1[k]) for k in stage1)  # it trained from there
    # A different network is refused with the keys that differ, through the CLI without a traceback.
    rc = main(["train", "--preset", "demo", "--variant", "standard", "--data", str(dataset), "--out",
               str(tmp_path / "bad"), "--init-weights", str(ref_run), "--no-progress", "--max-steps", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "--init-weights come from a different network" in err and "Traceback" not in err
