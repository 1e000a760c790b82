"""Shared test settings: one thread (the CI machine has two cores), a seeded RNG, the shared-data path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="session")
def _model_cache(tmp_path_factory: pytest.TempPathFactory):
    """Converted models (the OpenVINO IR cache) go to a temporary folder, never the user's ~/.cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("LIGHTMEDSEG_CACHE_DIR", str(tmp_path_factory.mktemp("model_cache")))
    yield
    mp.undo()


@pytest.fixture
def shared_data() -> Path:
    """Path to ../shared/data; skips the test when the folder is absent (outside this setup)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (only present in the development setup)")
    return SHARED_DATA.resolve()
