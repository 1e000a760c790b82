"""Turn ``-m MODEL`` into ``(config, forward_fn)``: the PyTorch model (reference or fast path) or ONNX Runtime.

The predictor only needs a config and a callable ``x -> logits``; this module is the one place that knows
how each kind of model file becomes one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from lightmedseg.inference.predictor import ForwardFn, PredictionError, plain_forward

BACKENDS = ("auto", "torch", "onnxruntime")


@dataclass
class LoadedModel:
    """A model ready for the predictor."""

    config: dict
    forward_fn: ForwardFn
    description: str
    module: torch.nn.Module | None = None  # the PyTorch model when there is one (figures need it)


def resolve_device(device: str) -> torch.device:
    """``cpu``/``cuda``/``cuda:N``; asking for CUDA on a machine without it is a clear error."""
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise PredictionError(f"--device {device!r}: not a device name; expected cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise PredictionError(f"--device {device!r}: only cpu and cuda are supported")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise PredictionError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")
    return dev


def load_torch(source: str | os.PathLike, device: torch.device, reference: bool = False) -> LoadedModel:
    """Run folder, model file or shipped name -> PyTorch model; fast forward unless ``reference``."""
    from lightmedseg.checkpoint import load_model, resolve_model_path

    path = resolve_model_path(source)
    model, config = load_model(path, device=device)
    from lightmedseg.fast import fast_forward
    from lightmedseg.model import LightMedSeg

    # the fast path rewrites LightMedSeg only; MONAI baselines (model.architecture) run as they are
    fn = None if reference or not isinstance(model, LightMedSeg) else fast_forward(model, device)
    kind = "fast path" if fn is not None else "reference forward"
    return LoadedModel(config, fn or plain_forward(model), f"PyTorch model {path} ({kind})", model)


def load_backend(
    source: str | os.PathLike, backend: str = "auto", device: str | torch.device = "cpu", reference: bool = False
) -> LoadedModel:
    """Pick the backend: ``onnxruntime`` for ``.onnx`` files (or when asked), PyTorch otherwise."""
    if backend not in BACKENDS:
        raise PredictionError(f"unknown backend {backend!r}; expected one of {list(BACKENDS)}")
    dev = resolve_device(str(device))
    is_onnx = str(source).endswith(".onnx")
    if backend == "onnxruntime" or (backend == "auto" and is_onnx):
        if not is_onnx:
            raise PredictionError(f"{source}: the onnxruntime backend needs an .onnx file (see `lightmedseg export`)")
        from lightmedseg.inference.onnx_backend import load_onnx

        config, fn, desc = load_onnx(Path(source), dev)
        return LoadedModel(config, fn, desc)
    if is_onnx:
        raise PredictionError(f"{source}: an ONNX file runs with --backend onnxruntime (or auto), not torch")
    return load_torch(source, dev, reference=reference)
