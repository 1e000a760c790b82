"""train.ema_decay: a moving average of the weights, validated and written as the model files (training.ema)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from lightmedseg.checkpoint import read_checkpoint
from lightmedseg.config import load_config
from lightmedseg.data.synth import make_synthetic_dataset
from lightmedseg.training.checkpointing import load_training_checkpoint
from lightmedseg.training.ema import WeightAverage, warmed_decay
from lightmedseg.training.trainer import train

torch.set_num_threads(1)

# 3 epochs x 4 steps of one 32^3 patch, validation on 1 case every epoch: seconds on one core.
TINY = [
    "data.patch_size=[32,32,32]", "train.epochs=3", "train.iterations_per_epoch=4", "train.batch_size=1",
    "train.val_every=1", "train.amp=none", "train.deterministic=true", "train.num_workers=0",
    "train.tensorboard=false", "train.seed=5", "data.augment={flip: true}", "train.ema_decay=0.9",
]


def test_decay_warms_up_then_caps() -> None:
    assert warmed_decay(0.999, 0) == pytest.approx(0.1)  # the second weight counts 90 %
    assert warmed_decay(0.999, 90) == pytest.approx(0.91)
    assert warmed_decay(0.999, 10**6) == 0.999
    assert warmed_decay(0.5, 90) == 0.5


def test_average_follows_the_formula_and_swaps_in_place() -> None:
    net = nn.Linear(3, 2)
    ema = WeightAverage(net, decay=0.95)
    history = []
    for step in range(4):
        with torch.no_grad():
            net.weight.add_(float(step + 1))  # a stand-in for an optimiser step
        history.append(net.weight.detach().clone())
        ema.update(net)
    expected = history[0]  # the first update copies
    for n, w in enumerate(history[1:], start=1):
        d = warmed_decay(0.95, n)
        expected = d * expected + (1 - d) * w
    assert ema.updates == 4
    assert torch.allclose(ema.weights()["weight"], expected)
    raw = net.weight.detach().clone()
    with ema.applied_to(net) as swapped:
        assert swapped is net and torch.allclose(net.weight, expected)
    assert torch.equal(net.weight, raw)


def test_buffers_follow_the_raw_model() -> None:
    """A peer network's batch-norm statistics are the raw model's, not the ones it had when the average began."""
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = WeightAverage(net, decay=0.9)
    net.train()
    for _ in range(3):
        net(torch.randn(8, 3) + 5.0)  # moves the running mean away from 0
        ema.update(net)
    assert not torch.allclose(net[1].running_mean, torch.zeros(4))
    assert torch.equal(ema.weights()["1.running_mean"], net[1].running_mean)
    assert int(ema.weights()["1.num_batches_tracked"]) == 3


@pytest.mark.parametrize("decay", [0.0, 1.0, 1.5, -0.1])
def test_decay_out_of_range_is_refused(decay: float) -> None:
    with pytest.raises(ValueError, match=r"train.ema_decay must be in \(0, 1\)"):
        WeightAverage(nn.Linear(2, 2), decay)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("data") / "synth", num_cases=3, seed=1, shape=(32, 32, 32))


def test_run_validates_and_ships_the_average_and_resumes_exactly(dataset, tmp_path) -> None:
    whole = tmp_path / "whole"
    ref = train(load_config("demo", overrides=TINY + ["train.snapshots=true"]), dataset, whole, progress=False)
    state = load_training_checkpoint(whole / "checkpoint_last.pt")
    assert int(state["ema"]["n_averaged"]) == 12  # one update per optimiser step
    shipped, config, _ = read_checkpoint(whole / "model_last.safetensors")
    assert config["train"]["ema_decay"] == 0.9
    averaged = {k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")}
    assert set(averaged) == set(shipped) == set(state["model"])
    assert all(torch.equal(shipped[k], averaged[k]) for k in shipped)  # the model file is the average ...
    assert any(not torch.equal(shipped[k], state["model"][k]) for k in shipped)  # ... not the raw weights
    snapshot, _, _ = read_checkpoint(whole / "snapshots" / "model_step0000012.safetensors")
    assert all(torch.equal(snapshot[k], shipped[k]) for k in shipped)

    # Stopped mid-epoch and resumed: the raw weights and the average continue as if never stopped.
    split = tmp_path / "split"
    train(load_config("demo", overrides=TINY), dataset, split, max_steps=6, progress=False)
    again = train(None, dataset, split, resume=True, progress=False)
    assert again["weights_checksum"] == ref["weights_checksum"]
    resumed = load_training_checkpoint(split / "checkpoint_last.pt")["ema"]
    assert all(torch.equal(resumed[k], state["ema"][k]) for k in state["ema"])


def test_run_without_average_is_unchanged(dataset, tmp_path) -> None:
    """ema_decay unset (the default): no ``ema`` entry, and the model file is the trained weights."""
    run = tmp_path / "run"
    train(load_config("demo", overrides=TINY[:-1] + ["train.epochs=1"]), dataset, run, progress=False)
    state = load_training_checkpoint(run / "checkpoint_last.pt")
    assert "ema" not in state
    shipped, _, _ = read_checkpoint(run / "model_last.safetensors")
    assert all(torch.equal(shipped[k], state["model"][k]) for k in shipped)
