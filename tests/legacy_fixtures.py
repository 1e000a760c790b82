"""Build the legacy model files from their recipes (``tests/data/legacy_models/*.json``) at test time.

A recipe holds what makes a model file historical and no weights: the file it stands for and its source in
git history, the format (``safetensors``: the config JSON in the metadata under ``config_key``;
``training_checkpoint``: a ``torch.save`` dict of the state dict under ``weights_key``, the config JSON under
``config_key`` and the ``loop_state``), the config exactly as that file stored it (missing keys included),
the state-dict names in their historical order, and a seed. :func:`build` makes a
tiny network of that config (widths :data:`TINY`) with seeded random weights and writes it in that format;
the same recipe gives the same file, byte for byte (the files committed until issue 27's follow-up were made
this way). ``scripts/make_legacy_fixtures.py`` writes the recipes, ``scripts/model_fingerprints.py``
fingerprints the built files, ``tests/test_checkpoint_compat.py`` compares.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

RECIPES = Path(__file__).resolve().parent / "data" / "legacy_models"
# the smallest widths the network takes: about 15 k parameters instead of 0.26 M
TINY = {"stem_channels": 4, "encoder_channels": [4, 4, 8, 8], "router_width": 8, "anchor_width": 4, "anchor_hidden": 8}
NOISE = 0.05  # added to every parameter: away from the zero/identity initialisations


def recipes() -> dict[str, Path]:
    """Built file name (``acdc_v1.safetensors``) -> its recipe, for every recipe in :data:`RECIPES`."""
    return {json.loads(path.read_text())["file"]: path for path in sorted(RECIPES.glob("*.json"))}


def fixture_config(recipe: dict) -> dict:
    """The stored config of the recipe with the tiny widths: the config the built file stores."""
    config = json.loads(json.dumps(recipe["config"]))
    config["model"] = {**config["model"], **TINY}
    return config


def tiny_state(config: dict, names: list[str], seed: int) -> dict[str, torch.Tensor]:
    """Seeded random weights of the network of ``config``, under the historical ``names`` in their order."""
    from lightmedseg.model.factory import build_model

    with torch.random.fork_rng(devices=[]):  # seeded, and the caller's random state is left as it was
        torch.manual_seed(seed)
        model = build_model(config)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(NOISE * torch.randn_like(p))
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if sorted(state) != sorted(names):
        raise ValueError(f"the network of this config has other state-dict names than the recipe's: "
                         f"{sorted(set(state) ^ set(names))[:5]}")
    return {k: state[k] for k in names}


def build(recipe_path: Path, out_dir: Path) -> Path:
    """Write the model file of ``recipe_path`` into ``out_dir``; its path."""
    recipe = json.loads(recipe_path.read_text())
    config = fixture_config(recipe)
    try:
        state = tiny_state(config, recipe["state_dict_names"], int(recipe["seed"]))
    except ValueError as exc:
        raise ValueError(f"{recipe_path}: {exc}") from None
    out = Path(out_dir) / recipe["file"]
    if recipe["format"] == "safetensors":
        save_file(state, str(out), metadata={recipe["config_key"]: json.dumps(config)})
    elif recipe["format"] == "training_checkpoint":
        torch.save({recipe["weights_key"]: state, recipe["config_key"]: json.dumps(config), **recipe["loop_state"]},
                   str(out))
    else:
        raise ValueError(f"{recipe_path}: unknown format {recipe['format']!r}")
    return out


def build_all(out_dir: Path) -> dict[str, Path]:
    """Every recipe built into ``out_dir``: file name -> path."""
    return {name: build(path, out_dir) for name, path in recipes().items()}
