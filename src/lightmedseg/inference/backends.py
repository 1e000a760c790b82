"""Turn ``-m MODEL`` into ``(config, forward_fn)``: OpenVINO, the PyTorch model (reference or fast path) or ONNX Runtime.

The predictor only needs a config and a callable ``x -> logits``; this module is the one place that knows
how each kind of model file becomes one. It joins converting (:mod:`~lightmedseg.inference.openvino_convert`:
a PyTorch model to a cached OpenVINO IR) and running (:mod:`~lightmedseg.inference.openvino_backend`,
:mod:`~lightmedseg.inference.onnx_backend`), which never import each other.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from lightmedseg.inference.options import BACKENDS, PRECISIONS
from lightmedseg.inference.predictor import ForwardFn, PredictionError, plain_forward


@dataclass
class LoadedModel:
    """A model ready for the predictor."""

    config: dict
    forward_fn: ForwardFn
    description: str
    module: torch.nn.Module | None = None  # the PyTorch model when there is one (figures need it)


def mps_unavailable_reason() -> str | None:
    """Why ``--device mps`` cannot run here (``None`` when it can): torch's own two checks, in words."""
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_built():
        return f"this PyTorch build ({torch.__version__}) has no MPS support (MPS is Apple-silicon macOS only)"
    if not mps.is_available():
        return "PyTorch has MPS support but this machine offers no MPS device (macOS 12.3+ on Apple silicon needed)"
    return None


def resolve_device(device: str) -> torch.device:
    """``cpu``/``cuda``/``cuda:N``/``mps``; asking for a GPU the machine lacks is a clear error."""
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise PredictionError(f"--device {device!r}: not a device name; expected cpu, cuda, cuda:N or mps") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise PredictionError(f"--device {device!r}: only cpu, cuda and mps are supported")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise PredictionError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")
    if dev.type == "mps" and (why := mps_unavailable_reason()):
        raise PredictionError(f"--device mps: {why} (use --device cpu)")
    return dev


def resolve_precision(precision: str, device: torch.device, fast: bool) -> torch.dtype | None:
    """``auto``/``fp32``/``bf16`` -> the fast path's activation dtype (None = float32).

    ``auto`` is bf16 only where it was measured to pay off and to keep predictions: the fast path on a
    CPU with native bf16 (AVX512-BF16 or AMX); fp32 everywhere else (GPU, reference path, baselines).
    See docs/performance.md for the speed and agreement measurements behind this default.
    """
    if precision not in PRECISIONS:
        raise PredictionError(f"--precision {precision!r}: expected one of {list(PRECISIONS)}")
    if precision == "fp32":
        return None
    if not fast:
        if precision == "bf16":
            raise PredictionError("--precision bf16 needs the fast path (a LightMedSeg model without --reference)")
        return None
    if precision == "bf16":
        return torch.bfloat16
    from lightmedseg.hardware import native_bf16

    return torch.bfloat16 if device.type == "cpu" and native_bf16() else None


def load_torch(
    source: str | os.PathLike, device: torch.device, reference: bool = False, precision: str = "auto"
) -> LoadedModel:
    """Run folder, model file or shipped name -> PyTorch model; fast forward unless ``reference``."""
    from lightmedseg.checkpoint import load_model, resolve_model_path

    path = resolve_model_path(source)
    model, config = load_model(path, device=device)
    from lightmedseg.fast import fast_forward, supports
    from lightmedseg.model import LightMedSeg

    # the fast path rewrites LightMedSeg only; MONAI baselines (model.architecture) run as they are; on Apple's
    # GPU (mps) the plain forward runs: the fast path is built and tested for the CPU and CUDA
    fast, why = supports(model) if not reference else (False, "")
    if fast and device.type == "mps":
        fast, why = False, "the fast path runs on the CPU and CUDA, not mps"
    dtype = resolve_precision(precision, device, fast)
    if not fast:
        note = f" [fast path not used: {why}]" if why and isinstance(model, LightMedSeg) else ""
        return LoadedModel(config, plain_forward(model), f"PyTorch model {path} (reference forward, fp32){note}", model)
    kind = f"fast path, {'bf16' if dtype == torch.bfloat16 else 'fp32'}"
    return LoadedModel(config, fast_forward(model, device, dtype=dtype), f"PyTorch model {path} ({kind})", model)


def auto_backend(source: str | os.PathLike, device: torch.device, reference: bool = False) -> tuple[str, str]:
    """What ``--backend auto`` runs, and why (for the log).

    ``.onnx`` -> onnxruntime and ``.xml`` (an OpenVINO IR) -> openvino, whatever the device; for PyTorch
    model sources: OpenVINO on the CPU when it is installed (measured fastest, docs/performance.md), the
    torch path on a GPU, with ``--reference`` (which asks for the plain PyTorch forward), or without OpenVINO.
    """
    from lightmedseg.inference.openvino_backend import openvino_available

    name = str(source)
    if name.endswith(".onnx"):
        return "onnxruntime", ""
    if name.endswith(".xml"):
        return "openvino", ""
    if device.type != "cpu":
        return "torch", ""
    if reference:
        return "torch", ""
    if not openvino_available():
        return "torch", ("openvino, a dependency of lightmedseg, is missing here (pip install openvino), "
                         "falling back to the PyTorch fast path")
    return "openvino", ""


def _load_openvino(source: str | os.PathLike, device: torch.device, precision: str) -> tuple[dict, ForwardFn, str]:
    """An ``.xml`` / ``.onnx`` file as it is; any PyTorch model source converted to an IR first (cached)."""
    from lightmedseg.inference.openvino_backend import load_openvino

    if Path(source).suffix in (".xml", ".onnx"):
        return load_openvino(source, device, precision=precision)
    if device.type != "cpu":  # say so before converting
        raise PredictionError(f"--backend openvino runs on the CPU only; use --device cpu or --backend torch for {device}")
    from lightmedseg.checkpoint import resolve_model_path
    from lightmedseg.inference.openvino_convert import cached_ir

    ir = cached_ir(resolve_model_path(source))
    note = f"IR converted in {ir.seconds:.1f} s and cached at {ir.xml.parent}" if ir.created else f"cached IR {ir.xml.parent}"
    return load_openvino(ir.xml, device, precision=precision, note=note, name=str(source))


def load_backend(
    source: str | os.PathLike,
    backend: str = "auto",
    device: str | torch.device = "cpu",
    reference: bool = False,
    precision: str = "auto",
) -> LoadedModel:
    """Pick the backend (see :func:`auto_backend` for ``auto``) and load ``source`` with it."""
    if backend not in BACKENDS:
        raise PredictionError(f"unknown backend {backend!r}; expected one of {list(BACKENDS)}")
    dev = resolve_device(str(device))
    note = ""
    auto = backend == "auto"
    if auto:
        backend, note = auto_backend(source, dev, reference)
    is_onnx, is_ir = str(source).endswith(".onnx"), str(source).endswith(".xml")
    if backend == "openvino":
        if reference:
            raise PredictionError("--reference runs the plain PyTorch forward; it cannot be combined with --backend openvino")
        from lightmedseg.inference.conversion import ExportError

        try:
            config, fn, desc = _load_openvino(source, dev, precision)
        except ExportError as exc:
            if not auto:
                raise
            # a model the converter cannot reproduce still predicts, with the PyTorch path
            note = f"OpenVINO conversion failed ({str(exc)[:200]}), falling back to the PyTorch path"
        else:
            return LoadedModel(config, fn, desc)
    if backend == "openvino":  # reached only after a failed automatic conversion
        loaded = load_torch(source, dev, reference=reference, precision=precision)
        loaded.description = f"{loaded.description} [{note}]"
        return loaded
    if is_ir:
        raise PredictionError(f"{source}: an OpenVINO IR runs with --backend openvino (or auto), not {backend}")
    if backend == "onnxruntime":
        if not is_onnx:
            raise PredictionError(f"{source}: the onnxruntime backend needs an .onnx file (see `lightmedseg export`)")
        from lightmedseg.inference.onnx_backend import load_onnx

        config, fn, desc = load_onnx(Path(source), dev)
        if precision not in ("auto", "fp32"):  # say so rather than silently run another precision than asked
            desc = f"{desc} [--precision {precision} does not apply: ONNX Runtime runs this model in fp32]"
        return LoadedModel(config, fn, desc)
    if is_onnx:
        raise PredictionError(f"{source}: an ONNX file runs with --backend onnxruntime, openvino or auto, not torch")
    loaded = load_torch(source, dev, reference=reference, precision=precision)
    if note:
        loaded.description = f"{loaded.description} [{note}]"
    return loaded
