"""Fingerprint every model file of the repository: logits of a fixed seeded input.

``python scripts/model_fingerprints.py`` prints the JSON that ``tests/data/model_fingerprints.json`` holds;
``tests/test_checkpoint_compat.py`` recomputes it and compares within a tolerance, so a refactoring of the
network that renames a parameter or changes the function is caught for the shipped model and every legacy
fixture. A legacy fixture is a recipe (tests/data/legacy_models/*.json, written by
scripts/make_legacy_fixtures.py: one per historical format), fingerprinted as the file that
tests/legacy_fixtures.py builds from it, the code the tests build it with: the recipe's seeded random tensors,
not real weights: the recorded fingerprint is that of the built file. Like a real old file's, it does not
move when the network's initialisation does; it moves when the network's function does (what is tested).
Regenerate (and commit) only when the network is meant to change. When a recipe or the builder changes, delete
the recipes' entries from the JSON and ``--add`` them back. When model files are added,
``python scripts/model_fingerprints.py --add tests/data/model_fingerprints.json`` fingerprints only the new
ones (each entry then records the commit it was made at) and keeps the others as they were. It lists the files
git tracks: `git add` new model files and recipes first.
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

ROOT = Path(__file__).resolve().parents[1]
MAX_SIDE = 32  # small inputs keep the test fast; each side is rounded up to the model's divisor
SAMPLE_STEP = 11  # logits at a sparse voxel lattice, 64 values: catches local changes sums can hide
RECIPES = "tests/data/legacy_models/*.json"  # the legacy fixtures: each builds a model file


def model_files(root: Path = ROOT) -> list[str]:
    """The committed ``*.safetensors`` / ``*.pt`` model files of the product (the shipped model) and the recipes
    of the legacy fixtures, relative to the repository root. A running experiment's ``checkpoint_last.pt`` under
    ``experiments/`` is not one: nothing there is read by the tests (experiments/README.md)."""
    out = subprocess.run(["git", "ls-files", "*.safetensors", "*.pt", RECIPES], cwd=root, check=True,
                         capture_output=True, text=True).stdout.split()
    return sorted(f for f in out if not f.startswith("experiments/"))


def legacy_builder():
    """tests/legacy_fixtures.py: builds a legacy fixture's model file from its recipe."""
    spec = importlib.util.spec_from_file_location("legacy_fixtures", ROOT / "tests" / "legacy_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fingerprint(path: Path) -> dict:
    """Config, input shape and logits summary of the model in ``path`` (a model file, or a legacy recipe:
    the file it builds) on a seeded input."""
    from lightmedseg.checkpoint import load_model

    if path.suffix == ".json":
        with tempfile.TemporaryDirectory() as tmp:
            return fingerprint(legacy_builder().build(path, Path(tmp)))
    model, config = load_model(path)
    mcfg = config["model"]
    divisors = getattr(model, "size_divisor", (16, 16, 16))
    shape = [max(d, (MAX_SIDE // d) * d) for d in divisors]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, int(mcfg["in_channels"]), *shape, generator=g)
    with torch.no_grad():
        logits = model(x).double()
    counts = torch.bincount(logits.argmax(1).flatten(), minlength=logits.shape[1])
    return {
        "input_shape": list(x.shape),
        "sum": logits.sum().item(),
        "abs_sum": logits.abs().sum().item(),
        "per_class_sum": logits.sum(dim=(0, 2, 3, 4)).tolist(),
        "argmax_counts": counts.tolist(),
        "voxel_logits": logits[0, :, ::SAMPLE_STEP, ::SAMPLE_STEP, ::SAMPLE_STEP].flatten()[:64].tolist(),
        "model_config": getattr(model, "config", None),
        "num_parameters": sum(p.numel() for p in model.parameters()),
    }


def main() -> None:
    torch.set_num_threads(1)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()
    if len(sys.argv) == 3 and sys.argv[1] == "--add":
        fixture = Path(sys.argv[2])
        result = json.loads(fixture.read_text())
        for p in model_files():
            if p not in result["models"]:
                result["models"][p] = {**fingerprint(ROOT / p), "commit": commit}
        result["models"] = dict(sorted(result["models"].items()))
    else:
        result = {
            "produced_by": "scripts/model_fingerprints.py",
            "commit": commit,
            "torch": torch.__version__,
            "models": {p: fingerprint(ROOT / p) for p in model_files()},
        }
    text = json.dumps(result, indent=1)
    # one line per list of numbers: a readable, diffable fixture
    text = re.sub(r"\[[^\[\]{}]*\]", lambda m: re.sub(r"\s+", " ", m.group(0)), text)
    if len(sys.argv) == 3:
        Path(sys.argv[2]).write_text(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
