"""Choices of prediction options shared by ``lightmedseg predict`` and :func:`lightmedseg.segment`.

Kept free of heavy imports (no torch/MONAI at import time) so the CLI builds its ``--help`` quickly.
"""

from __future__ import annotations

DEVICES_HELP = "auto (a GPU when there is one, else the CPU), cpu, cuda, cuda:N or gpu (= cuda)"
OUTPUT_FORMATS: tuple[str, ...] = ("nifti", "input")


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


__all__ = ["DEVICES_HELP", "OUTPUT_FORMATS", "pick_device"]
