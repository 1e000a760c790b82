"""What every model converter shares (OpenVINO IR, ONNX, TorchScript): the torch module that is converted,
the example inputs, and the check of a converted model against the PyTorch forward.

No converter library is imported here: the OpenVINO route (:mod:`lightmedseg.inference.openvino_convert`)
needs only ``openvino``, the ONNX route (:mod:`lightmedseg.inference.export`) ``onnx`` and ``onnxruntime``.
"""

from __future__ import annotations

import os

from collections.abc import Callable, Mapping

import numpy as np
import torch

from lightmedseg.config import Config, typed_config

ORT_ATOL = 1e-4  # max |logit difference| accepted between a converted model and PyTorch (float32 re-association)
EXAMPLE_SIZE = (32, 32, 32)  # conversion example; batch 2 so the batch axis is not specialised to 1
CHECK_SIZE = (16, 48, 32)  # a second, non-cubic size for verification


class ExportError(ValueError):
    """Export failed or the exported model does not reproduce the PyTorch logits."""


# Which forward OpenVINO converts: ``fast`` (the one-sample InferenceGraph), ``reference`` (the module's own
# forward), or ``auto`` (the default: chosen by the CPU, see :func:`openvino_graph_form`).
OPENVINO_GRAPH_ENV = "LIGHTMEDSEG_OPENVINO_GRAPH"
OPENVINO_GRAPH_FORMS = ("auto", "fast", "reference")


def openvino_graph_form() -> str:
    """``fast`` or ``reference``: the forward OpenVINO converts on this machine (``$LIGHTMEDSEG_OPENVINO_GRAPH``
    overrides ``auto``).

    Chosen by measurement (issue 25, docs/benchmarks.md, 1 x 4 x 128^3, 2 threads): where OpenVINO infers in f32
    (no native bf16: a 2-core AVX2 EPYC) the fast InferenceGraph ran in 0.78x the reference graph's time; where
    it infers in bf16 (AVX512-BF16 + AMX: a 2-core Xeon) it ran in 1.46x (0.442 vs 0.302 s) and agreed less
    with the fp32 forward (99.46% vs 99.56% of voxels), so there the reference forward is converted.
    """
    choice = os.environ.get(OPENVINO_GRAPH_ENV, "auto").strip().lower() or "auto"
    if choice not in OPENVINO_GRAPH_FORMS:
        raise ExportError(f"${OPENVINO_GRAPH_ENV}={choice!r}: expected one of {list(OPENVINO_GRAPH_FORMS)}")
    if choice == "auto":
        from lightmedseg.hardware import native_bf16

        return "reference" if native_bf16() else "fast"
    return choice


def module_to_convert(model: torch.nn.Module, one_sample: bool = False) -> torch.nn.Module:
    """The torch module a converter traces, in eval mode on the CPU: the one place that says which.

    ``one_sample=False`` (ONNX, TorchScript: graphs with a dynamic batch axis): the model itself, its reference
    ``forward``. ``one_sample=True`` (the OpenVINO route): where :func:`openvino_graph_form` says ``fast``, for a
    LightMedSeg the fast path handles, its fast forward in the form for graph engines
    (:class:`lightmedseg.fast.InferenceGraph`: the same logits). That graph folds per-sample values into
    weights, so it holds ONE sample: converters fix its batch axis to 1 (:func:`one_sample_graph`) and runners
    call it once per sample. Other models, and every model where the form is ``reference``, are returned as
    they are.
    """
    model = model.cpu().eval()
    if one_sample and openvino_graph_form() == "fast":
        from lightmedseg.fast import InferenceGraph, supports

        if supports(model).ok:
            return InferenceGraph(model).eval()
    return model


def one_sample_graph(module: torch.nn.Module) -> bool:
    """True when ``module`` (from :func:`module_to_convert`) computes one sample per call (batch axis fixed to 1)."""
    from lightmedseg.fast import InferenceGraph

    return isinstance(module, InferenceGraph)


def per_sample(run: Callable) -> Callable:
    """``run`` for a one-sample graph, applied to a batch (numpy array or torch tensor) one sample at a time."""
    def batched(x):
        if len(x) == 1:
            return run(x)
        parts = [run(x[i : i + 1]) for i in range(len(x))]
        return torch.cat(parts) if isinstance(parts[0], torch.Tensor) else np.concatenate(parts)
    return batched


def example_input(config: Mapping | Config, size: tuple[int, int, int] = EXAMPLE_SIZE, batch: int = 2,
                  seed: int = 0) -> torch.Tensor:
    """A seeded random ``batch x C x size`` float32 input for the model of ``config``."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, int(typed_config(config).model["in_channels"]), *size, generator=g)


def size_divisor(config: Mapping | Config) -> tuple[int, int, int]:
    """Per-axis multiple every spatial input size must be (from the model's strides)."""
    from lightmedseg.model.network import size_divisors

    return size_divisors(typed_config(config).model)


def verify_logits(
    run: Callable[[np.ndarray], np.ndarray], model: torch.nn.Module, config: dict, engine: str, seed: int = 1
) -> float:
    """Max |logit difference| between ``run`` (a converted model's engine: a float32 B x C x D x H x W array
    in, logits out) and the PyTorch forward of ``model``, at :data:`EXAMPLE_SIZE` (batch 2) and
    :data:`CHECK_SIZE` (batch 1).

    Raises :class:`ExportError`, naming ``engine``, on a shape mismatch or a difference above
    :data:`ORT_ATOL`. Serves every conversion route (OpenVINO, ONNX Runtime).
    """
    worst = 0.0
    for size, batch in ((EXAMPLE_SIZE, 2), (CHECK_SIZE, 1)):
        x = example_input(config, size, batch, seed=seed)
        with torch.inference_mode():
            ref = model.cpu()(x).numpy()
        out = run(x.numpy())
        if out.shape != ref.shape:
            raise ExportError(f"{engine} output shape {out.shape} != PyTorch {ref.shape} for input size {size}")
        worst = max(worst, float(np.abs(out - ref).max()))
    if worst > ORT_ATOL:
        raise ExportError(f"{engine} logits differ from PyTorch by {worst:.3g} (> {ORT_ATOL})")
    return worst


__all__ = ["ORT_ATOL", "EXAMPLE_SIZE", "CHECK_SIZE", "ExportError", "OPENVINO_GRAPH_ENV", "openvino_graph_form",
           "module_to_convert", "one_sample_graph",
           "per_sample", "example_input",
           "size_divisor", "verify_logits"]
