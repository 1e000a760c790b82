"""Build the legacy model files from their recipes (``tests/data/legacy_models/*.json``) at test time.

A recipe holds what makes a model file historical and no weights: the file it stands for and its source in
git history, the format (``safetensors``: the config JSON in the metadata under ``config_key``;
``training_checkpoint``: a ``torch.save`` dict of the state dict under ``weights_key``, the config JSON under
``config_key`` and the ``loop_state``), the config exactly as that file stored it (missing keys included),
the state dict as ``[name, dtype, shape]`` in its historical order (the shapes of the network of that config
at the tiny widths :data:`TINY`), and a seed. :func:`build` makes every tensor from the recipe alone (a
generator seeded with the recipe's seed, the tensors in the recipe's order, floats drawn from
``normal(0, STD)``, integers zero) and writes them in that format with the config at the tiny widths. It does
not import the network: a later change of how the network initialises or the order it creates its parameters
in leaves the built files, like real old files, as they were; the same recipe gives the same file, byte for
byte. ``scripts/make_legacy_fixtures.py`` writes the recipes, ``scripts/model_fingerprints.py`` fingerprints
the built files, ``tests/test_checkpoint_compat.py`` compares.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

RECIPES = Path(__file__).resolve().parent / "data" / "legacy_models"
# the smallest widths the network takes: about 15 k parameters instead of 0.26 M
TINY = {"stem_channels": 4, "encoder_channels": [4, 4, 8, 8], "router_width": 8, "anchor_width": 4, "anchor_hidden": 8}
STD = 0.5  # of every float tensor: none at an identity/zero initialisation, and logits that vary with the input
# (at 0.1 the norms' small gains leave the logits nearly constant: the head's bias, one class everywhere)


def recipes() -> dict[str, Path]:
    """Built file name (``acdc_v1.safetensors``) -> its recipe, for every recipe in :data:`RECIPES`."""
    return {json.loads(path.read_text())["file"]: path for path in sorted(RECIPES.glob("*.json"))}


def fixture_config(recipe: dict) -> dict:
    """The stored config of the recipe with the tiny widths: the config the built file stores."""
    config = json.loads(json.dumps(recipe["config"]))
    config["model"] = {**config["model"], **TINY}
    return config


def state_dict_names(recipe: dict) -> list[str]:
    """The recipe's state-dict names in their historical order."""
    return [name for name, _, _ in recipe["state_dict"]]


def seeded_state(entries: list[list], seed: int) -> dict[str, torch.Tensor]:
    """A tensor per ``[name, dtype, shape]`` of ``entries``, in that order, drawn from one generator seeded with
    ``seed`` (the global random state is not used)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, dtype_name, shape in entries:
        dtype = getattr(torch, dtype_name, None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"{name}: unknown dtype {dtype_name!r}")
        if dtype.is_floating_point:
            state[name] = (STD * torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype)
        else:  # a counter buffer (BatchNorm's num_batches_tracked): no value the network reads
            state[name] = torch.zeros(shape, dtype=dtype)
    return state


def build(recipe_path: Path, out_dir: Path) -> Path:
    """Write the model file of ``recipe_path`` into ``out_dir``; its path."""
    recipe = json.loads(recipe_path.read_text())
    config = fixture_config(recipe)
    try:
        state = seeded_state(recipe["state_dict"], int(recipe["seed"]))
    except (ValueError, TypeError, RuntimeError) as exc:
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
