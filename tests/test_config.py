"""The typed config: unknown keys and wrong types refused before any work, defaults filled from one schema,
the prediction window following the training patch, every stored config of the repository still loading,
model in/out channels against dataset.json, and training validation agreeing with predict + evaluate."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from legacy_fixtures import recipes

from lightmedseg.checkpoint import load_model, read_checkpoint

from lightmedseg.model.factory import build_model
from lightmedseg.cli.main import main
from lightmedseg.config import (
    ConfigError,
    DataConfig,
    TrainConfig,
    load_config,
    load_stored_config,
    validate_config,
)
from lightmedseg.data.errors import DataError
from lightmedseg.data.io import read_image_channels, read_label
from lightmedseg.data.layout import case_files, list_cases, load_dataset_json
from lightmedseg.data.synth import make_synthetic_dataset
from lightmedseg.evaluation.evaluate import evaluate_pair, label_spec_from_dataset_json
from lightmedseg.inference.predictor import Predictor, plain_forward
from lightmedseg.training.setup import config_for_dataset
from lightmedseg.training.validation import validate

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("data") / "synth", num_cases=3, seed=2, shape=(32, 32, 32))


@pytest.mark.parametrize("override, needles", [
    ("train.lrr=1", ["'train.lrr'", "did you mean 'train.optimizer.lr'"]),
    ("train.epochs=abc", ["train.epochs 'abc'", "expected int"]),
    ("trian.epochs=3", ["'trian'", "did you mean 'train'"]),
    ("data.augment.rotat=true", ["'data.augment.rotat'", "did you mean 'data.augment.rotate'"]),
    ("model.num_anchor=4", ["'model.num_anchor'", "did you mean 'model.num_anchors'"]),
    ("infer.mode=box", ["infer.mode 'box'", "'gaussian'"]),
])
def test_train_refuses_unknown_keys_and_wrong_types_before_any_work(dataset, tmp_path, capsys, override, needles):
    run = tmp_path / "run"
    rc = main(["train", "--preset", "demo", "--data", str(dataset), "--out", str(run), "--set", override, "-q"])
    err = capsys.readouterr().err
    assert rc == 2, err
    for needle in needles:
        assert needle in err, (needle, err)
    assert not run.exists() or not any(run.iterdir())


def test_resume_budget_overrides_are_checked_too(dataset, tmp_path, capsys):
    rc = main(["train", "--resume", "--data", str(dataset), "--out", str(tmp_path / "run"), "--set", "train.epoch=3"])
    err = capsys.readouterr().err
    assert rc == 2 and "did you mean 'train.epochs'" in err, err


def test_presets_are_validated_like_overrides(tmp_path):
    preset = tmp_path / "mine.yaml"
    preset.write_text("inherit: demo\ntrain:\n  batchsize: 2\n")
    with pytest.raises(ConfigError, match=r"'train.batchsize'.*did you mean 'train.batch_size'"):
        load_config(str(preset))


def test_defaults_live_in_the_schema_and_are_filled():
    bare = validate_config({"model": {}})
    assert bare["train"]["seed"] == TrainConfig.seed and bare["train"]["batch_size"] == TrainConfig.batch_size
    assert bare["train"]["iterations_per_epoch"] == TrainConfig.iterations_per_epoch
    assert bare["train"]["optimizer"]["lr"] == 2.0e-4 and bare["train"]["loss"]["boundary_dilation"] == 3
    assert bare["data"]["patch_size"] == DataConfig().patch_size
    assert "labels" not in bare and bare["model"] == {}  # the constructor's defaults apply to the model
    assert validate_config({"train": {"optimizer": {"lr": "1e-3"}}})["train"]["optimizer"]["lr"] == 1e-3


def test_prediction_window_follows_the_patch_unless_set():
    assert load_config("brats", overrides=["data.patch_size=[32,32,32]"])["infer"]["roi_size"] == [32, 32, 32]
    explicit = load_config("brats", overrides=["data.patch_size=[32,32,32]", "infer.roi_size=[64,64,64]"])
    assert explicit["infer"]["roi_size"] == [64, 64, 64]
    for preset in ("brats", "acdc", "demo"):
        cfg = load_config(preset)
        assert cfg["infer"]["roi_size"] == cfg["data"]["patch_size"]


def test_brats_trained_at_32_predicts_with_a_32_window(dataset, tmp_path):
    from lightmedseg.training.trainer import train

    run = tmp_path / "run"
    overrides = ["data.patch_size=[32,32,32]", "train.epochs=1", "train.iterations_per_epoch=1",
                 "train.batch_size=1", "train.num_workers=0", "train.tensorboard=false", "train.amp=none",
                 "data.cache=none", "train.val_max_cases=1"]
    train(load_config("brats", overrides=overrides), dataset, run, progress=False)
    model, config = load_model(run)
    assert config["infer"]["roi_size"] == [32, 32, 32]
    assert Predictor(config, plain_forward(model)).roi_size == [32, 32, 32]


def _committed(*patterns: str) -> list[Path]:
    """The repository's files matching ``patterns`` (git pathspecs; outside a git checkout, globs under
    ``src`` and ``tests/data``)."""
    try:
        names = subprocess.run(["git", "ls-files", *patterns], cwd=REPO, capture_output=True, text=True,
                               check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        names = [str(p.relative_to(REPO)) for pat in patterns for top in ("src", "tests/data")
                 for p in (REPO / top).glob("**/" + pat.rpartition("/")[2])]
    return sorted({REPO / n for n in names if (REPO / n).is_file()})


MODEL_FILES = _committed("*.safetensors", "*.pt")
# the committed model files, then the legacy fixtures by name (built at test time: the legacy_models fixture)
MODELS = [*MODEL_FILES, *sorted(recipes())]
MODEL_IDS = [str(p.relative_to(REPO)) if isinstance(p, Path) else f"legacy/{p}" for p in MODELS]


@pytest.mark.parametrize("item", MODELS, ids=MODEL_IDS)
def test_every_committed_model_file_loads_with_its_stored_config(item, legacy_models):
    path = item if isinstance(item, Path) else legacy_models[item]
    model, config = load_model(path)
    assert config["infer"]["roi_size"] and config["train"]["iterations_per_epoch"] >= 1
    predictor = Predictor(config, plain_forward(model))
    assert predictor.roi_size == [int(r) for r in config["infer"]["roi_size"]]
    _, raw, _ = read_checkpoint(path)
    assert raw["model"] == config["model"]


def _raw_config(path: Path) -> dict:
    """The config JSON a model file stores, as written (not filled with today's defaults)."""
    import json

    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            return json.loads(fh.metadata()["lightmedseg_config"])
    return json.loads(torch.load(str(path), map_location="cpu", weights_only=True)["config_json"])


def test_every_stored_config_is_still_valid(legacy_models):
    """The configs stored in the shipped model and the legacy fixtures (each historical model file's own
    config, built from tests/data/legacy_models/): all keys ever written are still known."""
    from lightmedseg.checkpoint import read_checkpoint

    paths = [p if isinstance(p, Path) else legacy_models[p] for p in MODELS]
    assert MODEL_FILES and legacy_models  # the shipped model and the fixtures
    for path in paths:
        read_checkpoint(path)
        stored = _raw_config(path)
        load_stored_config(stored)
        validate_config(stored)


def test_model_channels_from_dataset_json_when_unset_and_refused_when_different(dataset):
    cfg = load_config("demo")
    del cfg["model"]["in_channels"], cfg["model"]["num_classes"]
    filled = config_for_dataset(cfg, dataset)
    assert filled["model"]["in_channels"] == 4 and filled["model"]["num_classes"] == 4
    with pytest.raises(DataError, match=r"model.in_channels is 1.*--set model.in_channels=4"):
        config_for_dataset(load_config("demo", overrides=["model.in_channels=1"]), dataset)
    with pytest.raises(DataError, match=r"--set model.num_classes=4"):
        config_for_dataset(load_config("demo", overrides=["model.num_classes=3"]), dataset)


def _intensity_forward(x: torch.Tensor) -> torch.Tensor:
    """A deterministic stand-in network with partly right answers: class scores from the channel intensities."""
    w = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, -0.5, 0.3, 0.2], [-0.4, 1.0, 0.1, -0.2], [0.2, 0.3, 1.0, -0.6]])
    return torch.einsum("kc,bc...->bk...", w.to(x), x) + torch.tensor([0.8, 0.0, 0.0, 0.0]).to(x).view(1, 4, 1, 1, 1)


@pytest.mark.parametrize("which", ["network", "intensity"])
def test_validation_dice_equals_predict_plus_evaluate(dataset, which):
    config = config_for_dataset(load_config("demo", overrides=["data.patch_size=[32,32,32]"]), dataset)
    torch.manual_seed(0)
    forward = build_model(config).eval() if which == "network" else _intensity_forward
    cases = list_cases(dataset, "Tr")
    scores = validate(forward, dataset, cases, config, torch.device("cpu"), None)

    predictor = Predictor(config, forward if which == "intensity" else plain_forward(forward), tta=False)
    spec = label_spec_from_dataset_json(load_dataset_json(dataset))
    per_region: dict[str, list[float]] = {r: [] for r in spec.regions}
    for case_id in cases:
        images, label_file = case_files(dataset, case_id, "Tr")
        image, geometry = read_image_channels(images)
        ref, _ = read_label(label_file)
        pred = predictor.predict_image(image).labels
        for row in evaluate_pair(case_id, pred, ref, geometry.spacing, spec, "nnformer"):
            if row["kind"] == "region":
                per_region[row["name"]].append(row["dice"])
    for region, values in per_region.items():
        assert scores[f"val_dice_{region}"] == pytest.approx(float(np.mean(values)), abs=1e-6), region
    assert scores["val_dice"] == pytest.approx(float(np.mean([np.mean(v) for v in per_region.values()])), abs=1e-6)
