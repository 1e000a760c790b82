"""Choices of prediction options shared by ``lightmedseg predict`` and :func:`lightmedseg.segment`, and of
export options shared by ``lightmedseg export`` and :mod:`lightmedseg.inference.export`.

Kept free of heavy imports (no torch/MONAI at import time) so the CLI builds its ``--help`` quickly.
"""

from __future__ import annotations

DEVICES_HELP = "auto (a GPU when there is one, else the CPU), cpu, cuda, cuda:N, gpu (= cuda) or mps (Apple GPU)"
BACKENDS: tuple[str, ...] = ("auto", "openvino", "torch", "onnxruntime")  # see inference.backends.auto_backend
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")  # see inference.backends.resolve_precision
OUTPUT_FORMATS: tuple[str, ...] = ("nifti", "input")
EXPORT_SUFFIX = {"onnx": ".onnx", "openvino": ".xml"}  # export format -> its output file's ending
EXPORT_FORMATS: tuple[str, ...] = tuple(EXPORT_SUFFIX)
EXPORTERS: tuple[str, ...] = ("auto", "dynamo", "legacy")  # see lightmedseg.inference.export
TTA_PASSES = {"mirror": 8, "rot90": 8}  # test-time augmentation modes -> views per window (inference.tta)
TTA_MODES: tuple[str, ...] = tuple(TTA_PASSES)
DEFAULT_TTA_MODE = "mirror"  # what plain True / --tta means when the model card names no mode


def pick_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when PyTorch sees a GPU, else ``cpu``; ``gpu``/``gpu:N`` -> ``cuda``/``cuda:N``.

    Other names pass through unchanged (checked by :func:`lightmedseg.inference.backends.resolve_device`).
    """
    name = str(device).strip().lower()
    if name == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "gpu" or name.startswith("gpu:"):
        return "cuda" + name[3:]
    return str(device)


__all__ = ["BACKENDS", "PRECISIONS", "DEVICES_HELP", "EXPORTERS", "EXPORT_FORMATS", "EXPORT_SUFFIX", "OUTPUT_FORMATS", "pick_device"]
