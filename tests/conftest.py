"""Shared test settings: one thread (the CI machine has two cores), a seeded RNG, the shared-data path."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, NamedTuple

import pytest
import torch

torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
DEMO_LABELS = {"background": 0, "NCR": 1, "ED": 2, "ET": 4}  # BraTS-style labels (4 is a gap, not 3)


class DemoRun(NamedTuple):
    """An untrained ``demo`` model saved as a run folder: ``root / "run" / "model_best.safetensors"``."""

    model: torch.nn.Module
    config: dict
    root: Path

    @property
    def model_file(self) -> Path:
        return self.root / "run" / "model_best.safetensors"


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


@pytest.fixture(scope="session")
def legacy_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The legacy model files built from their recipes (tests/legacy_fixtures.py) in a temporary folder:
    file name (``acdc_v1.safetensors``, ``run_checkpoint_last.pt``) -> path."""
    from legacy_fixtures import build_all

    return build_all(tmp_path_factory.mktemp("legacy_models"))


@pytest.fixture
def shared_data() -> Path:
    """Path to ../shared/data; skips the test when the folder is absent (outside this setup)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (only present in the development setup)")
    return SHARED_DATA.resolve()


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., DemoRun]:
    """Factory ``demo_run(name, in_channels=4)``: a fresh untrained ``demo`` model (seed 0, eval mode, a 32^3
    window, :data:`DEMO_LABELS`) saved in a new temporary folder named after ``name``. Each call builds its
    own model and folder, so a module may write next to it freely."""
    from lightmedseg.checkpoint import save_model
    from lightmedseg.model.factory import build_model
    from lightmedseg.config import load_config

    def make(name: str, in_channels: int = 4) -> DemoRun:
        torch.manual_seed(0)
        cfg = load_config("demo", overrides=["infer.roi_size=[32,32,32]", f"model.in_channels={in_channels}"])
        cfg["labels"] = dict(DEMO_LABELS)
        run = DemoRun(build_model(cfg).eval(), cfg, tmp_path_factory.mktemp(name))
        save_model(run.model_file, run.model, cfg)
        return run

    return make


@pytest.fixture
def check_matches_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[str]]:
    """Checker ``check(run_dir, exported, affine)`` for an exported model (ONNX file, OpenVINO IR).

    Writes one random 4-channel case (29 x 35 x 21, ``affine``), predicts it from the PyTorch run folder
    ``run_dir`` (``--backend torch``), then from ``exported`` (backend auto) while ``LightMedSeg.forward``
    raises, so the exported path cannot lean on the model code; asserts the same shape and affine,
    probabilities within 1e-4 and labels identical up to exact ties. Returns the exported run's log lines.
    """
    import nibabel as nib
    import numpy as np

    from lightmedseg.inference.pipeline import predict
    from lightmedseg.model import LightMedSeg

    def check(run_dir: Path, exported: Path, affine: np.ndarray) -> list[str]:
        rng = np.random.default_rng(0)
        (tmp_path / "in").mkdir()
        for c in range(4):
            nib.save(nib.Nifti1Image(rng.normal(size=(29, 35, 21)).astype(np.float32), affine),
                     str(tmp_path / "in" / f"k_{c:04d}.nii.gz"))
        kw = dict(precision="fp32", progress=False, probabilities=True)
        predict(tmp_path / "in", tmp_path / "torch", run_dir, backend="torch", **kw)

        def _no_torch_model(*args, **kwargs):
            raise AssertionError(f"predicting from {exported.name} must not run the PyTorch model")

        with monkeypatch.context() as mp:
            mp.setattr(LightMedSeg, "forward", _no_torch_model)
            logs: list[str] = []
            predict(tmp_path / "in", tmp_path / "exported", exported, log=logs.append, **kw)
        a, b = (nib.load(str(tmp_path / d / "k.nii.gz")) for d in ("torch", "exported"))
        assert b.shape == a.shape and np.allclose(b.affine, a.affine)
        pa, pb = (np.asarray(nib.load(str(tmp_path / d / "probabilities" / "k.nii.gz")).dataobj)
                  for d in ("torch", "exported"))
        assert np.abs(pa - pb).max() < 1e-4
        assert np.mean(np.asarray(a.dataobj) == np.asarray(b.dataobj)) > 0.999  # identical up to exact ties
        return logs

    return check
