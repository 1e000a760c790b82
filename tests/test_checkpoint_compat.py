"""Every model file committed to the repository loads and predicts as it did (issues 14 and 27).

The model files are the shipped ``acdc`` and the legacy fixtures, built at test time from the recipes of
``tests/data/legacy_models/`` (``tests/legacy_fixtures.py``; the recipes hold no weights): state dicts of small
networks, seeded random tensors of the recipe's names, dtypes and shapes (no network code involved), each
stored with the config and in the format of a model file that once shipped (``acdc`` of sessions 1-2,
``acdc_v1``..``acdc_v4``), of an experiment run and of a training checkpoint (``scripts/make_legacy_fixtures.py``).
``tests/data/model_fingerprints.json`` holds, per file (per recipe for a fixture: of the file the recipe builds),
the logits summary of a fixed seeded input computed by ``scripts/model_fingerprints.py`` at the commit it names.
A renamed parameter fails the strict ``load_state_dict``; a changed function fails the comparison.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from legacy_fixtures import fixture_config, recipes, state_dict_names

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "model_fingerprints.json"
RTOL, ATOL = 1e-4, 1e-3  # float32 re-association across torch builds, far below any real change


def _script():
    spec = importlib.util.spec_from_file_location("model_fingerprints", ROOT / "scripts" / "model_fingerprints.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _constructor_defaults() -> dict:
    """LightMedSeg's constructor defaults, in the JSON form ``model.config`` takes."""
    import inspect

    from lightmedseg.io_utils import json_plain
    from lightmedseg.model import LightMedSeg

    return {n: json_plain(p.default) for n, p in inspect.signature(LightMedSeg.__init__).parameters.items() if n != "self"}


EXPECTED = json.loads(FIXTURE.read_text())["models"]
RECIPES = recipes()  # built file name -> recipe
LEGACY_NAMES = sorted(RECIPES)
# what a recipe may hold (tests/legacy_fixtures.py): a description of the file, no weights
RECIPE_KEYS = {"file", "source", "format", "config_key", "weights_key", "seed", "config", "state_dict", "loop_state"}
MAX_RECIPE_BYTES = 40_000  # names, dtypes and shapes of ~200 tensors; their 15 k values would take far more
# the parameter names model files were written with before the Decoder module existed (and still are)
CHECKPOINT_PREFIXES = ("head.", "bottleneck.", "skip_adapters.", "decoder.0.")


def test_legacy_recipes_hold_no_weights_and_cover_every_shipped_model() -> None:
    assert {f"acdc_v{i}.safetensors" for i in range(1, 5)} | {"acdc_session1.safetensors", "run_checkpoint_last.pt"} <= set(RECIPES)
    for path in RECIPES.values():
        recipe = json.loads(path.read_text())
        assert set(recipe) <= RECIPE_KEYS, (path.name, set(recipe) - RECIPE_KEYS)
        assert path.stat().st_size < MAX_RECIPE_BYTES, path.name
        assert f"tests/data/legacy_models/{path.name}" in EXPECTED  # each has a recorded fingerprint


@pytest.mark.parametrize("name", LEGACY_NAMES)
def test_legacy_fixture_is_in_the_historical_format(name: str, legacy_models: dict[str, Path]) -> None:
    """Weights readable without pickle (safetensors, or ``torch.load(weights_only=True)``), under the
    historical parameter names in their order, with the stored config of its time (no key added since,
    beyond the widths) and, for the training checkpoint, its loop state."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path, recipe = legacy_models[name], json.loads(RECIPES[name].read_text())
    if path.suffix == ".safetensors":
        state = load_file(str(path))
        with safe_open(str(path), framework="pt") as fh:
            config = json.loads(fh.metadata()["lightmedseg_config"])
    else:
        blob = torch.load(str(path), map_location="cpu", weights_only=True)
        state, config = blob["model"], json.loads(blob["config_json"])
        assert {"step", "epoch", "format_version"} <= set(blob)
        assert list(blob) == ["model", "config_json", *recipe["loop_state"]]
        assert {k: blob[k] for k in recipe["loop_state"]} == recipe["loop_state"]
    assert list(state) == state_dict_names(recipe) and config == fixture_config(recipe)
    assert [[k, str(v.dtype).removeprefix("torch."), list(v.shape)] for k, v in state.items()] == recipe["state_dict"]
    assert all(any(k.startswith(p) for k in state) for p in CHECKPOINT_PREFIXES)
    assert not any(k.startswith(("decoder.stages.", "decoder.head", "decoder.bottleneck")) for k in state)
    assert config["model"]["encoder_channels"] == [4, 4, 8, 8]  # the tiny widths of tests/legacy_fixtures.py
    if path.name in ("acdc_session1.safetensors", "acdc_session2.safetensors", "acdc_v1.safetensors"):
        assert "strides" not in config["model"] and "deep_supervision" not in config["model"]  # before those options
    if path.name == "acdc_v2.safetensors":
        assert "encoder_norm" not in config["model"] and config["model"]["deep_supervision"] == 2


def test_legacy_builder_does_not_use_the_network_code(tmp_path: Path) -> None:
    """The built files depend on their recipes only: a change of the network's initialisation or of the order
    it creates its parameters in must not change them (real old files do not change either)."""
    code = ("import sys; from pathlib import Path; import legacy_fixtures as lf; lf.build_all(Path(sys.argv[1])); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'lightmedseg'))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT / "tests", capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]", out
    assert sorted(p.name for p in tmp_path.iterdir()) == LEGACY_NAMES


def test_fixture_covers_every_committed_model_file() -> None:
    try:
        files = _script().model_files(ROOT)
    except (OSError, subprocess.CalledProcessError) as exc:  # no git, or not a git checkout (an sdist): nothing to compare against
        pytest.skip(f"cannot list committed files ({exc})")
    assert sorted(EXPECTED) == files, "regenerate tests/data/model_fingerprints.json after adding a model file"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_model_file_predicts_as_before(name: str, legacy_models: dict[str, Path]) -> None:
    path = ROOT / name
    if not path.is_file():
        pytest.skip(f"{name} is not in this checkout")
    if path.suffix == ".json":  # a legacy recipe: the file it builds
        path = legacy_models[json.loads(path.read_text())["file"]]
    got = _script().fingerprint(path)
    want = EXPECTED[name]
    assert got["input_shape"] == want["input_shape"]
    # stored in checkpoints: must not change, except for constructor options added since, at their defaults
    # (the value that reproduces the network the file was made with)
    assert {k: v for k, v in got["model_config"].items() if k in want["model_config"]} == want["model_config"]
    added = {k: v for k, v in got["model_config"].items() if k not in want["model_config"]}
    assert added == {k: _constructor_defaults()[k] for k in added}, added
    assert got["num_parameters"] == want["num_parameters"]
    for key in ("sum", "abs_sum"):
        assert got[key] == pytest.approx(want[key], rel=RTOL, abs=ATOL), key
    torch.testing.assert_close(torch.tensor(got["per_class_sum"]), torch.tensor(want["per_class_sum"]),
                               rtol=RTOL, atol=ATOL * 10)
    torch.testing.assert_close(torch.tensor(got["voxel_logits"]), torch.tensor(want["voxel_logits"]),
                               rtol=RTOL, atol=ATOL)
    moved = sum(abs(a - b) for a, b in zip(got["argmax_counts"], want["argmax_counts"]))
    assert moved <= 4, (got["argmax_counts"], want["argmax_counts"])  # ties may flip a voxel or two
