"""Every model file committed to the repository loads and predicts as it did (issue 14).

``tests/data/model_fingerprints.json`` holds, per model file, the logits summary of a fixed seeded input
computed by ``scripts/model_fingerprints.py`` at the commit it names (before the Decoder refactoring).
A renamed parameter fails the strict ``load_state_dict``; a changed function fails the comparison.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "model_fingerprints.json"
RTOL, ATOL = 1e-4, 1e-3  # float32 re-association across torch builds, far below any real change


def _script():
    spec = importlib.util.spec_from_file_location("model_fingerprints", ROOT / "scripts" / "model_fingerprints.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXPECTED = json.loads(FIXTURE.read_text())["models"]


def test_fixture_covers_every_committed_model_file() -> None:
    try:
        files = _script().model_files(ROOT)
    except (OSError, subprocess.CalledProcessError) as exc:  # no git, or not a git checkout (an sdist): nothing to compare against
        pytest.skip(f"cannot list committed files ({exc})")
    assert sorted(EXPECTED) == files, "regenerate tests/data/model_fingerprints.json after adding a model file"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_model_file_predicts_as_before(name: str) -> None:
    path = ROOT / name
    if not path.is_file():
        pytest.skip(f"{name} is not in this checkout")
    got = _script().fingerprint(path)
    want = EXPECTED[name]
    assert got["input_shape"] == want["input_shape"]
    assert got["model_config"] == want["model_config"]  # stored in checkpoints: must not change
    assert got["num_parameters"] == want["num_parameters"]
    for key in ("sum", "abs_sum"):
        assert got[key] == pytest.approx(want[key], rel=RTOL, abs=ATOL), key
    torch.testing.assert_close(torch.tensor(got["per_class_sum"]), torch.tensor(want["per_class_sum"]),
                               rtol=RTOL, atol=ATOL * 10)
    torch.testing.assert_close(torch.tensor(got["voxel_logits"]), torch.tensor(want["voxel_logits"]),
                               rtol=RTOL, atol=ATOL)
    moved = sum(abs(a - b) for a, b in zip(got["argmax_counts"], want["argmax_counts"]))
    assert moved <= 4, (got["argmax_counts"], want["argmax_counts"])  # ties may flip a voxel or two
