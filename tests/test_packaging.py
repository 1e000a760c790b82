"""Install metadata: at most 9 hard dependencies that suffice to predict (OpenVINO the CPU engine among them), SPDX licence, one version source,
and a one-line error naming the extra when a command needs one that is missing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

import lightmedseg
from lightmedseg.extras import EXTRA_OF_MODULE

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
MAX_HARD_DEPENDENCIES = 9


def _requirement_name(req: str) -> str:
    return re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].lower()


def test_hard_dependencies_are_few_and_extras_cover_the_rest() -> None:
    deps = PYPROJECT["project"]["dependencies"]
    assert len(deps) <= MAX_HARD_DEPENDENCIES, deps
    names = {_requirement_name(d) for d in deps}
    assert names == {"torch", "openvino", "numpy", "monai", "nibabel", "simpleitk", "safetensors", "pyyaml", "tqdm"}
    extras = PYPROJECT["project"]["optional-dependencies"]
    in_extras = {_requirement_name(r) for reqs in extras.values() for r in reqs}
    assert set(EXTRA_OF_MODULE) <= in_extras  # every module the hint names is installable by its extra
    for module, extra in EXTRA_OF_MODULE.items():
        assert any(_requirement_name(r) == module for r in extras[extra]), (module, extra)
    assert not names & set(EXTRA_OF_MODULE)  # a dependency is never sent for as an extra
    assert extras["openvino"] == []  # older instructions' `pip install '.[openvino]'` keeps working
    assert "lightmedseg[all]" in extras["dev"]  # CI (scripts/setup.sh) gets everything the tests import


def test_licence_and_version_have_one_source_each() -> None:
    project = PYPROJECT["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().lstrip().startswith("Apache License\n                           Version 2.0")
    assert "version" in project["dynamic"] and "version" not in project
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "lightmedseg.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", lightmedseg.__version__)
    assert any(c.startswith("License ::") for c in project["classifiers"]) is False  # SPDX string, not a classifier


def _run_without_extras(tmp_path: Path, argv: list[str], blocked: list[str]) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh interpreter where ``blocked`` top-level packages cannot be imported."""
    script = textwrap.dedent(f"""
        import sys
        from importlib.abc import MetaPathFinder

        BLOCKED = set({blocked!r})

        class Block(MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                return None

        sys.meta_path.insert(0, Block())
        for mod in [m for m in sys.modules if m.split(".")[0] in BLOCKED]:
            del sys.modules[mod]
        from lightmedseg.cli.main import main
        sys.exit(main({argv!r}))
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src")] + sys.path[1:]))
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=600)


NOT_HARD = sorted(set(EXTRA_OF_MODULE) | {"einops", "skimage", "h5py"})  # onnx and onnxruntime among them


@pytest.mark.slow
def test_predict_with_the_shipped_model_needs_only_the_hard_dependencies(tmp_path: Path) -> None:
    import nibabel as nib

    (tmp_path / "in").mkdir()
    data = (np.random.default_rng(0).random((36, 40, 8)) * 100).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([1.5625, 1.5625, 10.0, 1.0])), str(tmp_path / "in" / "case.nii.gz"))
    proc = _run_without_extras(tmp_path, ["predict", "-i", "in", "-o", "out", "-m", "acdc", "-q", "--device", "cpu"], NOT_HARD)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "out" / "case.nii.gz").is_file() and (tmp_path / "out" / "labels.json").is_file()
    # the default CPU engine, converted from PyTorch without onnx / onnxruntime, not a fallback
    assert "OpenVINO" in proc.stderr and "falling back" not in proc.stderr, proc.stderr
    # the IR export needs no extra either
    proc = _run_without_extras(tmp_path, ["export", "-m", "acdc", "-o", "acdc.xml"], NOT_HARD)
    assert proc.returncode == 0 and (tmp_path / "acdc.xml").is_file(), proc.stderr[-2000:]
    assert "embedded card: TTA rot90" in proc.stdout, proc.stdout


def test_onnx_export_without_the_extra_names_it(tmp_path: Path) -> None:
    proc = _run_without_extras(tmp_path, ["export", "-m", "acdc", "-o", "acdc.onnx"], ["onnx", "onnxruntime", "onnxscript"])
    err = proc.stderr.strip()
    assert proc.returncode == 2 and not (tmp_path / "acdc.onnx").exists(), err
    assert err.startswith("lightmedseg export: error:") and "pip install 'lightmedseg[export]'" in err and "\n" not in err


def test_predict_from_onnx_without_the_extra_names_it(tmp_path: Path) -> None:
    """Issue 29: every missing-extra message names the extra; `-m model.onnx` needs [export], said before any read."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "case.nii.gz").write_bytes(b"never read")
    (tmp_path / "m.onnx").write_bytes(b"never read either")
    proc = _run_without_extras(tmp_path, ["predict", "-i", "in", "-o", "out", "-m", "m.onnx", "-q"],
                               ["onnx", "onnxruntime", "onnxscript"])
    err = proc.stderr.strip()
    assert proc.returncode == 2 and not (tmp_path / "out").exists(), err
    assert err == "lightmedseg predict: error: needs onnx, which is not installed: pip install 'lightmedseg[export]'"


def test_a_missing_extra_is_named_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "patient001_frame01.h5").write_bytes(b"not really hdf5")
    proc = _run_without_extras(tmp_path, ["convert", "acdc-h5", "src", "dst"], ["h5py"])
    err = proc.stderr.strip()
    assert proc.returncode == 2, err
    assert err == "lightmedseg convert: error: needs h5py, which is not installed: pip install 'lightmedseg[convert]'"


def test_monai_optional_import_errors_name_the_extra() -> None:
    from monai.utils import OptionalImportError

    from lightmedseg.extras import missing_extra

    hint = missing_extra(OptionalImportError("required package `scipy` is not installed or the version doesn't match requirement."))
    assert hint == "needs scipy, which is not installed: pip install 'lightmedseg[evaluate]'"
    assert missing_extra(ModuleNotFoundError("No module named 'foo'", name="foo")) is None


WEIGHT_PATTERNS = ("*.safetensors", "*.pt", "*.pt.part*", "*.pth", "*.onnx", "*.xml", "*.bin")
# A running run's checkpoint, whole or in parts of at most 4 MB (experiments/acdc_issue28/checkpoint_parts.sh)
RUNNING_CHECKPOINT = re.compile(r"experiments/.+/checkpoint_last\.pt(\.part\d\d)?")
MAX_PACKAGE_BYTES = 2_000_000  # the wheel (zip) is smaller still: 1.29 MB at issue 27


def test_repository_carries_one_shipped_model_only() -> None:
    """Issue 27: no weights of finished runs in the tree (they stay in git history); the shipped model is the
    only weight file (the legacy fixtures are recipes, built at test time: tests/legacy_fixtures.py), besides a
    running run's checkpoint, and the package data stays small."""
    try:
        tracked = subprocess.run(["git", "ls-files", *WEIGHT_PATTERNS], cwd=ROOT, capture_output=True, text=True,
                                 check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"not a git checkout ({exc})")
    shipped = [n for n in tracked if n.startswith("src/lightmedseg/pretrained/")]
    running = [n for n in tracked if RUNNING_CHECKPOINT.fullmatch(n)]
    others = [n for n in tracked if n not in shipped and n not in running]
    assert others == [], ("weights of finished runs belong in git history, not the tree (experiments/README.md); "
                          "a test's model file is built from a recipe (tests/legacy_fixtures.py)")
    assert shipped == ["src/lightmedseg/pretrained/acdc/model_best.safetensors"]
    package = [ROOT / n for n in subprocess.run(["git", "ls-files", "src/lightmedseg"], cwd=ROOT, capture_output=True,
                                                text=True, check=True).stdout.split()]
    assert sum(p.stat().st_size for p in package if p.is_file()) < MAX_PACKAGE_BYTES


MAX_TRACKED_FILE_BYTES = 5_000_000  # a larger running checkpoint is committed in parts (checkpoint_parts.sh)


def test_no_tracked_file_is_over_the_per_file_limit() -> None:
    """The repository's limit per file (docs/results.md, issue 28's `wide`): nothing tracked is over 5 MB."""
    try:
        tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"not a git checkout ({exc})")
    sizes = {n: (ROOT / n).stat().st_size for n in tracked if n and (ROOT / n).is_file()}
    assert sizes, "git ls-files listed nothing"
    assert {n: s for n, s in sizes.items() if s > MAX_TRACKED_FILE_BYTES} == {}


def test_checkpoint_parts_join_to_the_same_file_and_refuse_a_damaged_part(tmp_path: Path) -> None:
    """experiments/acdc_issue28/checkpoint_parts.sh: a checkpoint over the per-file limit is split into parts under
    it and joined back byte for byte; a damaged part fails the sha256 check and leaves the parts in place."""
    script = ROOT / "experiments" / "acdc_issue28" / "checkpoint_parts.sh"
    payload = np.random.default_rng(0).bytes(9_000_000)
    ckpt = tmp_path / "checkpoint_last.pt"
    ckpt.write_bytes(payload)
    subprocess.run(["bash", str(script), "split", str(tmp_path)], check=True, capture_output=True)
    parts = sorted(tmp_path.glob("checkpoint_last.pt.part*"))
    assert not ckpt.exists() and len(parts) == 3 and all(p.stat().st_size <= 4 * 2 ** 20 for p in parts)
    assert all(RUNNING_CHECKPOINT.fullmatch(f"experiments/run/{p.name}") for p in parts)
    subprocess.run(["bash", str(script), "join", str(tmp_path)], check=True, capture_output=True)
    assert ckpt.read_bytes() == payload and not list(tmp_path.glob("checkpoint_last.pt.*"))

    subprocess.run(["bash", str(script), "split", str(tmp_path)], check=True, capture_output=True)
    damaged = tmp_path / "checkpoint_last.pt.part01"
    damaged.write_bytes(b"x" + damaged.read_bytes()[1:])
    result = subprocess.run(["bash", str(script), "join", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode != 0 and "sha256" in result.stderr
    assert not ckpt.exists() and len(list(tmp_path.glob("checkpoint_last.pt.part*"))) == 3
