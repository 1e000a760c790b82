"""Write the small model files of ``tests/data/legacy_models/``: one per historical model file format.

Every model file that ever shipped (and the training checkpoint of a run) is reproduced with its own stored
config, read from git history at the commit named below, and random weights of a tiny network: the config's
``model`` section gets small widths (:data:`TINY`), everything else stays as it was written (missing keys
included: they must keep meaning what they meant). The weights are saved the way those files were: a
``.safetensors`` file with the config JSON in its metadata under ``lightmedseg_config`` and the state-dict
names of that time (``decoder.N.*``, ``head.*``, ``bottleneck.*``, ``skip_adapters.*``, ``aux_heads.*``),
and a training ``.pt`` checkpoint (``model`` + ``config_json`` + the loop state, loadable with
``torch.load(weights_only=True)``). The real weights are in git history (docs/results.md names the commit).

  python scripts/make_legacy_fixtures.py          # rewrites tests/data/legacy_models/, then
  python scripts/model_fingerprints.py --add tests/data/model_fingerprints.json   # after git add
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "legacy_models"
CONFIG_KEY = "lightmedseg_config"
# the smallest widths the network takes: about 10 k parameters instead of 0.26 M
TINY = {"stem_channels": 4, "encoder_channels": [4, 4, 8, 8], "router_width": 8, "anchor_width": 4, "anchor_hidden": 8}
# fixture name -> (commit, path of the historical file)
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
    return json.loads(saved["config_json"]), list(saved["model"]), {k: saved[k] for k in LOOP_KEYS if k in saved}


def tiny_state(config: dict, names: list[str], seed: int) -> dict[str, torch.Tensor]:
    """Random weights of the tiny network of ``config``, under the historical ``names`` (checked)."""
    from lightmedseg.model.factory import build_model

    torch.manual_seed(seed)
    model = build_model(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))  # away from the zero/identity initialisations
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if sorted(state) != sorted(names):
        raise SystemExit(f"the tiny network's names differ from the historical file's: "
                         f"{sorted(set(state) ^ set(names))[:5]}")
    return {k: state[k] for k in names}  # in the historical order


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for seed, (name, (commit, path)) in enumerate(SOURCES.items()):
        config, names, loop = historical(commit, path)
        config["model"] = {**config["model"], **TINY}
        state = tiny_state(config, names, seed)
        if name.endswith(".pt"):
            torch.save({"model": state, "config_json": json.dumps(config), **loop}, OUT / name)
        else:
            save_file(state, str(OUT / name), metadata={CONFIG_KEY: json.dumps(config)})
        print(f"{name}: {commit}:{path}, {sum(v.numel() for v in state.values())} values")
    return 0


if __name__ == "__main__":
    sys.exit(main())
