"""Unit tests of the training pieces: schedule, checkpoint format and atomicity, AMP policy, split, config."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import torch

from lightmedseg.checkpoint import CheckpointError, read_checkpoint
from lightmedseg.config import TrainConfig
from lightmedseg.training import checkpointing as C
from lightmedseg.training.optim import build_optimizer, build_scheduler
from lightmedseg.training.runtime import amp_policy
from lightmedseg.training.setup import default_split

torch.set_num_threads(1)

TRAIN_CFG = {
    "iterations_per_epoch": 10,
    "optimizer": {"name": "adamw", "lr": 2e-4, "weight_decay": 1e-5, "betas": [0.9, 0.999]},
    "scheduler": {"name": "warmup_cosine", "warmup_epochs": 1, "t_max_epochs": 5, "eta_min": 1e-9},
}


def _lrs(opt: torch.optim.Optimizer, sched, n: int) -> list[float]:
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_adamw_settings_from_config() -> None:
    opt = build_optimizer(torch.nn.Linear(2, 2).parameters(), TRAIN_CFG)
    assert isinstance(opt, torch.optim.AdamW)
    g = opt.param_groups[0]
    assert g["weight_decay"] == 1e-5 and tuple(g["betas"]) == (0.9, 0.999)
    with pytest.raises(ValueError, match="adamw"):
        build_optimizer(torch.nn.Linear(2, 2).parameters(), {"optimizer": {"name": "rmsprop"}})


def test_warmup_then_cosine_per_iteration() -> None:
    opt = build_optimizer(torch.nn.Linear(2, 2).parameters(), TRAIN_CFG)
    lrs = _lrs(opt, build_scheduler(opt, TRAIN_CFG), 61)
    assert lrs[0] < 1e-6  # warm-up starts near zero
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11]))  # rises over the first epoch (10 iterations)
    assert lrs[10] == pytest.approx(2e-4)
    assert all(a >= b for a, b in zip(lrs[10:60], lrs[11:61]))  # then decays
    assert lrs[60] == pytest.approx(1e-9, abs=1e-12)  # eta_min after T_max = 5 epochs
    mid = 10 + 25  # half of T_max: cosine gives the mean of base lr and eta_min
    assert lrs[mid] == pytest.approx((2e-4 + 1e-9) / 2, rel=1e-3)


def test_scheduler_state_round_trips_weights_only() -> None:
    model = torch.nn.Linear(2, 2)
    opt = build_optimizer(model.parameters(), TRAIN_CFG)
    sched = build_scheduler(opt, TRAIN_CFG)
    _lrs(opt, sched, 17)
    buf = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "sched": sched.state_dict()}, buf)
    buf.seek(0)
    blob = torch.load(buf, weights_only=True)
    opt2 = build_optimizer(model.parameters(), TRAIN_CFG)
    sched2 = build_scheduler(opt2, TRAIN_CFG)
    opt2.load_state_dict(blob["opt"])
    sched2.load_state_dict(blob["sched"])
    assert _lrs(opt, sched, 20) == _lrs(opt2, sched2, 20)


NNUNET_CFG = {
    "iterations_per_epoch": 10,
    "optimizer": {"name": "sgd", "lr": 1e-2, "weight_decay": 3e-5},
    "scheduler": {"name": "poly", "warmup_epochs": 0, "t_max_epochs": 5},
}


def test_sgd_nesterov_with_poly_decay_follows_nnunet() -> None:
    """nnU-Net's recipe (issue 28): SGD, Nesterov momentum 0.99, lr * (1 - t/T)^0.9, 0 at T and after."""
    opt = build_optimizer(torch.nn.Linear(2, 2).parameters(), NNUNET_CFG)
    assert isinstance(opt, torch.optim.SGD)
    group = opt.param_groups[0]
    assert group["nesterov"] and group["momentum"] == 0.99 and group["weight_decay"] == 3e-5
    lrs = _lrs(opt, build_scheduler(opt, NNUNET_CFG), 60)
    assert lrs[0] == pytest.approx(1e-2)
    assert lrs[25] == pytest.approx(1e-2 * (1 - 25 / 50) ** 0.9, rel=1e-6)
    assert lrs[50] == 0 and lrs[59] == 0
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_poly_after_a_warm_up_and_bad_settings_are_named() -> None:
    cfg = {**NNUNET_CFG, "scheduler": {"name": "poly", "warmup_epochs": 1, "t_max_epochs": 5, "exponent": 2.0}}
    opt = build_optimizer(torch.nn.Linear(2, 2).parameters(), cfg)
    lrs = _lrs(opt, build_scheduler(opt, cfg), 70)
    assert max(lrs) == pytest.approx(1e-2) and lrs[0] < 1e-4  # warm-up from (nearly) zero
    assert lrs[10 + 25] == pytest.approx(1e-2 * (1 - 25 / 50) ** 2.0, rel=1e-6)  # T counted after the warm-up
    with pytest.raises(ValueError, match="momentum"):
        build_optimizer(torch.nn.Linear(2, 2).parameters(), {"optimizer": {"name": "sgd", "momentum": 1.5}})
    with pytest.raises(ValueError, match="exponent"):
        build_scheduler(opt, {"iterations_per_epoch": 10, "scheduler": {"name": "poly", "exponent": 0}})
    with pytest.raises(ValueError, match="sgd"):  # an unknown optimiser lists the known ones
        build_optimizer(torch.nn.Linear(2, 2).parameters(), {"optimizer": {"name": "adam"}})


def test_rng_state_round_trip() -> None:
    state = C.capture_rng_state()
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    random.seed(123), np.random.seed(5), torch.manual_seed(9)
    C.restore_rng_state(state)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected


def _state(step: int) -> dict:
    model = torch.nn.Linear(3, 2)
    return {"model": model.state_dict(), "config": {"model": {"in_channels": 1}}, "optimizer": {},
            "scheduler": {}, "scaler": {}, "rng": [C.capture_rng_state()], "step": step, "epoch": 0,
            "step_in_epoch": step}


def test_checkpoint_loads_weights_only_and_through_read_checkpoint(tmp_path) -> None:
    path = C.save_training_checkpoint(tmp_path / C.LAST, _state(7))
    blob = torch.load(path, weights_only=True)
    assert blob["step"] == 7 and "config_json" in blob
    _, config, extra = read_checkpoint(path)
    assert config["model"] == {"in_channels": 1} and extra["step_in_epoch"] == 7
    assert config["train"]["iterations_per_epoch"] == TrainConfig.iterations_per_epoch  # defaults filled on load
    assert C.load_training_checkpoint(path)["step"] == 7


def test_crash_during_write_keeps_previous_checkpoint(tmp_path, monkeypatch) -> None:
    path = C.save_training_checkpoint(tmp_path / C.LAST, _state(3))

    def exploding_save(obj, f, *a, **k):  # writes half a file, then dies like a killed process would
        with open(f, "wb") as fh:
            fh.write(b"PK\x03\x04 half written")
        raise OSError("disk gone")

    monkeypatch.setattr(torch, "save", exploding_save)
    with pytest.raises(OSError):
        C.save_training_checkpoint(path, _state(4))
    monkeypatch.undo()
    assert C.load_training_checkpoint(path)["step"] == 3
    assert [p.name for p in tmp_path.iterdir()] == [C.LAST]  # no temp file left behind


def test_corrupt_checkpoint_gives_clear_error(tmp_path) -> None:
    path = C.save_training_checkpoint(tmp_path / C.LAST, _state(1))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated, as after a disk-full crash outside our writer
    with pytest.raises(CheckpointError, match="checkpoint_last.pt.*truncated or corrupt"):
        C.load_training_checkpoint(path)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        C.load_training_checkpoint(tmp_path / "missing.pt")


def test_weights_only_checkpoint_is_not_resumable(tmp_path) -> None:
    path = tmp_path / "w.pt"
    torch.save({"model": torch.nn.Linear(2, 2).state_dict(), "config_json": "{}"}, path)
    with pytest.raises(CheckpointError, match="not a resumable training state"):
        C.load_training_checkpoint(path)


def test_amp_policy_on_cpu() -> None:
    cpu = torch.device("cpu")
    assert amp_policy("none", cpu).dtype is None
    assert amp_policy("bf16", cpu).dtype == torch.bfloat16 and not amp_policy("bf16", cpu).use_scaler
    assert amp_policy("auto", cpu).dtype is None  # fp32 on CPU: bf16 training measured slower there
    with pytest.raises(ValueError, match="CUDA"):
        amp_policy("fp16", cpu)
    with pytest.raises(ValueError, match="train.amp"):
        amp_policy("fp8", cpu)


def test_default_split_is_seeded_and_disjoint() -> None:
    ids = [f"c{i:02d}" for i in range(10)]
    a, b = default_split(ids, 1), default_split(ids, 1)
    assert a == b and len(a["validation"]) == 2
    assert sorted(a["train"] + a["validation"]) == ids
    assert default_split(["only"], 0) == {"train": ["only"], "validation": [], "test": []}
