"""Write the recipes of ``tests/data/legacy_models/``: one per historical model file format, no weights.

Every model file that ever shipped (and the training checkpoint of a run) is described by its own stored
config, read from git history at the commit named below, exactly as written (missing keys included: they
must keep meaning what they meant), its format (a ``.safetensors`` file with the config JSON in its metadata
under ``lightmedseg_config``, or a training ``.pt`` checkpoint: ``model`` + ``config_json`` + the loop state,
loadable with ``torch.load(weights_only=True)``), its state-dict names in their historical order
(``decoder.N.*``, ``head.*``, ``bottleneck.*``, ``skip_adapters.*``, ``aux_heads.*``), the loop state of a
``.pt`` and a seed. The tests build each file from its recipe (``tests/legacy_fixtures.py``: a tiny network of
that config, seeded random weights); this script builds each once to check that it can be. The real weights
are in git history (docs/results.md names the commit).

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


def recipe(name: str, commit: str, path: str, seed: int) -> dict:
    """What makes the fixture ``name`` historical (see tests/legacy_fixtures.py), read from ``commit:path``."""
    config, names, loop = historical(commit, path)
    out: dict = {"file": name, "source": f"{commit}:{path}"}
    if name.endswith(".pt"):
        out.update(format="training_checkpoint", weights_key=WEIGHTS_KEY, config_key=CHECKPOINT_CONFIG_KEY)
    else:
        out.update(format="safetensors", config_key=CONFIG_KEY)
    out.update(seed=seed, config=config, state_dict_names=names)
    if name.endswith(".pt"):
        out["loop_state"] = loop
    return out


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
        text = json.dumps(recipe(name, commit, path, seed), indent=1)
        text = re.sub(r"\[[^\[\]{}\"]*\]", lambda m: re.sub(r"\s+", " ", m.group(0)), text)  # number lists on one line
        target = OUT / (Path(name).stem + ".json")
        target.write_text(text + "\n")
        with tempfile.TemporaryDirectory() as tmp:  # the recipe builds (the network takes its names)
            built = builder.build(target, Path(tmp))
            print(f"{target.name}: {commit}:{path}, builds {built.name} ({built.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
