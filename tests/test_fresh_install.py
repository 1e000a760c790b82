"""`pip install .` into an empty virtual environment, then `predict -m acdc` (issue 29): the plain install runs
the default CPU engine (OpenVINO) and nothing it needs is missing.

It builds a venv and installs the package's hard dependencies, so it runs only where asked:
``LIGHTMEDSEG_FRESH_INSTALL_TEST=1`` (CI's `.ci/run` sets it). PyTorch comes first as the CPU build (the local
wheel, else PyTorch's CPU index), as scripts/setup.sh does, so the `torch>=` requirement never pulls CUDA.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV_FLAG = "LIGHTMEDSEG_FRESH_INSTALL_TEST"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get(ENV_FLAG) != "1",
                       reason=f"builds a fresh venv and installs from the package index; set {ENV_FLAG}=1 (CI does)"),
]


def _pip(py: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(py), "-m", "pip", "install", "-q", *args], capture_output=True, text=True)


def test_plain_install_predicts_with_openvino(tmp_path: Path) -> None:
    import nibabel as nib

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    if _pip(py, "torch==2.13.0+cpu").returncode != 0:  # the CPU build, as scripts/setup.sh installs it
        proc = _pip(py, "torch==2.13.0+cpu", "--index-url", "https://download.pytorch.org/whl/cpu")
        assert proc.returncode == 0, proc.stderr[-2000:]
    proc = _pip(py, str(ROOT))
    assert proc.returncode == 0, proc.stderr[-2000:]
    (tmp_path / "in").mkdir()
    data = (np.random.default_rng(0).random((48, 48, 8)) * 100).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([1.5625, 1.5625, 10.0, 1.0])), str(tmp_path / "in" / "case.nii.gz"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["LIGHTMEDSEG_CACHE_DIR"] = str(tmp_path / "cache")
    proc = subprocess.run([str(venv / "bin" / "lightmedseg"), "predict", "-i", "in", "-o", "out", "-m", "acdc",
                           "--device", "cpu"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "out" / "case.nii.gz").is_file()
    assert "OpenVINO" in proc.stderr and "falling back" not in proc.stderr, proc.stderr[-3000:]
    freeze = subprocess.run([str(py), "-m", "pip", "freeze"], capture_output=True, text=True).stdout.lower()
    assert "onnxruntime" not in freeze  # the plain install carries no extra
