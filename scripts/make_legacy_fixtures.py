"""Write the recipes of ``tests/data/legacy_models/``: one per historical model file format, no weights.

Every model file that ever shipped (and the training checkpoint of a run) is described by its own stored
config, read from git history at the commit named below, exactly as written (missing keys included: they
must keep meaning what they meant), its format (a ``.safetensors`` file with the config JSON in its metadata
under ``lightmedseg_config``, or a training ``.pt`` checkpoint: ``model`` + ``config_json`` + the loop state,
loadable with ``torch.load(weights_only=True)``), its state dict as ``[name, dtype, shape]`` with the names in
their historical order (``decoder.N.*``, ``head.*``, ``bottleneck.*``, ``skip_adapters.*``, ``aux_heads.*``),
the loop state of a ``.pt`` and a seed. The shapes and dtypes are those of today's network of that config at
the tiny widths of ``tests/legacy_fixtures.py`` (this script checks that it has exactly the historical names):
written here once, they are part of the recipe, and the tests build each file from the recipe alone (seeded
random tensors, no network code). Rerunning this script after the network changed rewrites them, and the
fingerprints then have to be regenerated too. This script builds each recipe once to check that it can be.
The real weights are in git history (docs/results.md names the commit).

  python scripts/make_legacy_fixtures.py          # rewrites tests/data/legacy_models/*.json, then
  python scripts/model_fingerprints.py --add tests/data/model_fingerprints.json   # after git add
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import torch
from safetensors import safe_open

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "legacy_models"
CONFIG_KEY = "lightmedseg_config"  # where the historical .safetensors files keep their config
WEIGHTS_KEY, CHECKPOINT_CONFIG_KEY = "model", "config_json"  # the same in the historical training .pt
# fixture name -> (commit, path of the historical file); the seed of each is its position here
SOURCES = {
    "acdc_session1.safetensors": ("c721efa", "src/lightmedseg/models/acdc/model_best.safetensors"),
    "acdc_session2.safetensors": ("f8a63dd", "src/lightmedseg/models/acdc/model_best.safetensors"),
    "acdc_v1.safetensors": ("8766bf8", "src/lightmedseg/pretrained/acdc_v1/model_best.safetensors"),
    "acdc_v2.safetensors": ("8766bf8", "src/lightmedseg/pretrained/acdc_v2/model_best.safetensors"),
    "acdc_v3.safetensors": ("8766bf8", "src/lightmedseg/pretrained/acdc_v3/model_best.safetensors"),
    "acdc_v4.safetensors": ("8766bf8", "src/lightmedseg/pretrained/acdc_v4/model_best.safetensors"),
    "brats2015_sample.safetensors": ("8766bf8", "experiments/brats2015_sample/lightmedseg/model_best.safetensors"),
    "run_checkpoint_last.pt": ("8766bf8", "experiments/acdc_issue17/long2/checkpoint_last.pt"),
}
LOOP_KEYS = ("step", "epoch", "step_in_epoch", "best_metric", "best_epoch", "split", "format_version")


def historical(commit: str, path: str) -> tuple[dict, list[str], dict]:
    """The stored config, the state-dict names and (for a .pt) the loop state of a file in git history."""
    blob = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=ROOT, check=True, capture_output=True).stdout
    with tempfile.NamedTemporaryFile(suffix=Path(path).suffix) as tmp:
        Path(tmp.name).write_bytes(blob)
        if path.endswith(".safetensors"):
            with safe_open(tmp.name, framework="pt") as fh:
                return json.loads(fh.metadata()[CONFIG_KEY]), list(fh.keys()), {}
        saved = torch.load(tmp.name, map_location="cpu", weights_only=True)
    return (json.loads(saved[CHECKPOINT_CONFIG_KEY]), list(saved[WEIGHTS_KEY]),
            {k: saved[k] for k in LOOP_KEYS if k in saved})


def tiny_tensors(config: dict, names: list[str]) -> list[list]:
    """``[name, dtype, shape]`` of the state dict of today's network of ``config`` (the tiny widths), in the
    order of ``names``, which must be exactly its names."""
    from lightmedseg.model.factory import build_model

    state = build_model(config).state_dict()
    if sorted(state) != sorted(names):
        raise ValueError(f"the network of this config has other state-dict names than the historical file: "
                         f"{sorted(set(state) ^ set(names))[:5]}")
    return [[k, str(state[k].dtype).removeprefix("torch."), list(state[k].shape)] for k in names]


def recipe(name: str, commit: str, path: str, seed: int, builder: ModuleType) -> dict:
    """What makes the fixture ``name`` historical (see tests/legacy_fixtures.py), read from ``commit:path``."""
    config, names, loop = historical(commit, path)
    try:
        tensors = tiny_tensors(builder.fixture_config({"config": config}), names)
    except ValueError as exc:
        raise ValueError(f"{commit}:{path}: {exc}") from None
    out: dict = {"file": name, "source": f"{commit}:{path}"}
    if name.endswith(".pt"):
        out.update(format="training_checkpoint", weights_key=WEIGHTS_KEY, config_key=CHECKPOINT_CONFIG_KEY)
    else:
        out.update(format="safetensors", config_key=CONFIG_KEY)
    out.update(seed=seed, config=config, state_dict=tensors)
    if name.endswith(".pt"):
        out["loop_state"] = loop
    return out


def _one_line(match: re.Match) -> str:
    return re.sub(r"\s+", " ", match.group(0))


def _builder():
    """tests/legacy_fixtures.py, the code the tests build the files with."""
    spec = importlib.util.spec_from_file_location("legacy_fixtures", ROOT / "tests" / "legacy_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    builder = _builder()
    for seed, (name, (commit, path)) in enumerate(SOURCES.items()):
        text = json.dumps(recipe(name, commit, path, seed, builder), indent=1)
        text = re.sub(r"\[[^\[\]{}\"]*\]", _one_line, text)  # number lists on one line
        text = re.sub(r"\[\s*\"[^\"]*\",\s*\"[^\"]*\",\s*\[[^\[\]]*\]\s*\]", _one_line, text)  # a tensor a line
        target = OUT / (Path(name).stem + ".json")
        target.write_text(text + "\n")
        with tempfile.TemporaryDirectory() as tmp:  # the recipe builds (the network takes its names)
            built = builder.build(target, Path(tmp))
            print(f"{target.name}: {commit}:{path}, builds {built.name} ({built.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
