"""Optional dependency groups (``pip install 'lightmedseg[EXTRA]'``) and the one-line hint for a missing one.

The base install predicts, with OpenVINO as its CPU engine (a dependency, converted straight from PyTorch:
no extra needed); each extra adds what one group of commands imports (lazily, inside them):

* ``train``: tensorboard (training logs), matplotlib (curves, figures, demo), scipy (synthetic data, HD95)
* ``evaluate``: scipy (surface distances for HD95)
* ``convert``: h5py (ACDC HDF5 import)
* ``export``: onnx, onnxruntime, onnxscript (``export -o model.onnx``, ``predict -m model.onnx``; the
  OpenVINO IR ``export -o model.xml`` needs none of them)
* ``profile``: fvcore, thop, psutil (multiply-adds and memory)
* ``openvino``: empty, kept for older instructions (openvino is a dependency)
* ``all``: all of the above; ``dev`` = ``all`` + pytest
"""

from __future__ import annotations

EXTRA_OF_MODULE: dict[str, str] = {
    "tensorboard": "train",
    "matplotlib": "train",
    "scipy": "evaluate",
    "h5py": "convert",
    "onnx": "export",
    "onnxruntime": "export",
    "onnxscript": "export",
    "fvcore": "profile",
    "thop": "profile",
    "psutil": "profile",
}


def missing_extra(exc: ImportError) -> str | None:
    """``"needs X (pip install 'lightmedseg[E]')"`` when ``exc`` is a missing optional package, else None."""
    name = (getattr(exc, "name", None) or "").split(".")[0]
    if name not in EXTRA_OF_MODULE:  # MONAI's OptionalImportError names the package only in its message
        text = str(exc)
        name = next((m for m in EXTRA_OF_MODULE if f"`{m}`" in text or f"'{m}'" in text or f"{m}." in text), "")
    if not name:
        return None
    return f"needs {name}, which is not installed: pip install 'lightmedseg[{EXTRA_OF_MODULE[name]}]'"


__all__ = ["EXTRA_OF_MODULE", "missing_extra"]
