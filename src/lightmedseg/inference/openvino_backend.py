"""OpenVINO on the CPU: compile an IR (``.xml``) or an ``.onnx`` file and hand the predictor a forward_fn.

This module runs models and never converts them: a PyTorch model becomes an IR in
:mod:`lightmedseg.inference.openvino_convert` (straight from PyTorch, cached), and
:func:`lightmedseg.inference.backends.load_backend` joins the two. OpenVINO is a hard dependency (the
default CPU engine); :func:`openvino_available` still guards an install that lost it.

An IR written by ``lightmedseg export`` carries the model's config JSON in its ``rt_info``
(:data:`lightmedseg.inference.cards.IR_CONFIG_PATH`), so it runs without the PyTorch model code. Precision
is an OpenVINO *inference* hint (``INFERENCE_PRECISION_HINT``): the IR always holds the float32 weights.

Caches, both under :func:`cache_root`: ``openvino/<key>/`` (IRs of PyTorch model files, written by
:mod:`~lightmedseg.inference.openvino_convert`) and ``openvino/compiled/``, OpenVINO's own ``CACHE_DIR`` of
compiled blobs (saves the compile step).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lightmedseg.inference.cards import IR_CONFIG_PATH
from lightmedseg.inference.conversion import per_sample
from lightmedseg.inference.options import PRECISIONS
from lightmedseg.inference.predictor import ForwardFn, PredictionError

RT_INFO_PATH = IR_CONFIG_PATH  # where the config JSON lives in the IR's rt_info
CACHE_ENV = "LIGHTMEDSEG_CACHE_DIR"
OV_PRECISION = {"fp32": "f32", "bf16": "bf16"}  # our --precision name -> OpenVINO's inference precision


class OpenVINOMissing(PredictionError):
    """``--backend openvino`` (or an IR) was asked for but the ``openvino`` package is not installed."""


def openvino_available() -> bool:
    """True when the ``openvino`` Python package can be imported."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def _ov() -> Any:
    try:
        import openvino as ov
    except ImportError:
        raise OpenVINOMissing(
            "the openvino backend needs the 'openvino' package, a dependency of lightmedseg that is missing "
            "here: pip install openvino (or reinstall lightmedseg), or use --backend torch"
        ) from None
    return ov


def cache_root() -> Path:
    """``$LIGHTMEDSEG_CACHE_DIR``, else ``$XDG_CACHE_HOME/lightmedseg``, else ``~/.cache/lightmedseg``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lightmedseg"


def resolve_ov_precision(precision: str) -> str:
    """``auto``/``fp32``/``bf16`` -> OpenVINO inference precision (``f32`` or ``bf16``).

    ``auto`` follows the rule of the torch fast path (:func:`lightmedseg.hardware.native_bf16`): bf16 on CPUs
    that run it natively (AVX512-BF16 or AMX), f32 elsewhere, where OpenVINO would emulate it.
    """
    if precision not in PRECISIONS:
        raise PredictionError(f"--precision {precision!r}: expected one of {list(PRECISIONS)}")
    if precision == "auto":
        from lightmedseg.hardware import native_bf16

        return "bf16" if native_bf16() else "f32"
    return OV_PRECISION[precision]


def read_ir_config(ov_model: Any, where: Path) -> dict:
    """The config JSON stored in an IR's rt_info; a clear error for IRs not written by lightmedseg."""
    if not ov_model.has_rt_info(RT_INFO_PATH):
        raise PredictionError(
            f"{where}: no '{'/'.join(RT_INFO_PATH)}' in the IR's rt_info; export it with "
            "`lightmedseg export --format openvino` so it carries its config"
        )
    return json.loads(ov_model.get_rt_info(RT_INFO_PATH).astype(str))


def compile_properties(ov_precision: str, threads: int | None = None, cache_dir: Path | None = None) -> dict:
    """The CPU compile settings of predict (and of benchmarks/bench_openvino.py): precision hint, latency
    hint (one request at a time, as MONAI's sliding window calls it), ``threads`` (default: torch's thread
    count, so ``torch.set_num_threads`` governs both engines), and OpenVINO's model cache when given."""
    props: dict[str, Any] = {
        "INFERENCE_PRECISION_HINT": ov_precision,
        "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads()),
        "PERFORMANCE_HINT": "LATENCY",
    }
    if cache_dir is not None:
        props["CACHE_DIR"] = str(cache_dir)
    return props


def compile_ir(xml: Path, ov_precision: str, threads: int | None = None, root: Path | None = None) -> Any:
    """Compile an IR for the CPU with :func:`compile_properties` and the compiled-blob cache under ``root``."""
    core = _ov().Core()
    cache = (root or cache_root()) / "openvino" / "compiled"
    return core.compile_model(str(xml), "CPU", compile_properties(ov_precision, threads, cache))


def _first_line(exc: BaseException) -> str:
    """The informative line of an exception (OpenVINO's start with 'Exception from <source file>' lines)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(("Exception from", "Check '"))]
    return ((useful or lines or [""])[0])[:300]


def _infer(request: Any, x: torch.Tensor) -> torch.Tensor:
    arr = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
    request.infer({0: arr})
    out = request.get_output_tensor(0).data
    return torch.from_numpy(np.array(out, dtype=np.float32, copy=True)).to(x.device)


def ir_one_sample(ov_model: Any) -> bool:
    """True when an IR's batch axis is fixed to 1: LightMedSeg's fast forward in engine form, which folds
    per-sample values into weights (:func:`lightmedseg.inference.conversion.module_to_convert`); runners call it
    once per sample."""
    batch = ov_model.inputs[0].get_partial_shape()[0]
    return batch.is_static and batch.get_length() == 1


def ov_forward(compiled: Any) -> ForwardFn:
    """A predictor ``forward_fn`` around a compiled model: float32 B x C x D x H x W in, float32 logits out."""
    request = compiled.create_infer_request()
    run = lambda x: _infer(request, x)  # noqa: E731
    return per_sample(run) if ir_one_sample(compiled) else run


class StaticShapeForward:
    """``forward_fn`` that compiles the model once per input shape, with that shape made static.

    OpenVINO's CPU plugin runs a static-shape model about 1.25x faster than the same model with dynamic
    axes (benchmarks/bench_openvino_levers.py, docs/performance.md). MONAI's sliding window calls the
    forward with one window shape per case (plus a smaller last batch when ``sw_batch_size`` does not
    divide the window count), so a handful of compilations (~0.3-1 s each, then from OpenVINO's blob
    cache) serve a whole run. At most ``max_shapes`` compiled models (each with its own activation
    buffers) are kept, the least recently used dropped first.
    """

    def __init__(self, core: Any, model: Any, props: dict, where: Path, max_shapes: int = 4) -> None:
        self.core, self.model, self.props, self.where, self.max_shapes = core, model, props, where, max_shapes
        self.requests: dict[tuple[int, ...], Any] = {}
        self.compile_seconds = 0.0
        self.one_sample = ir_one_sample(model)
        self._run = per_sample(self._one_call) if self.one_sample else self._one_call

    def request(self, shape: tuple[int, ...]) -> Any:
        """The infer request compiled for ``shape`` (compiling it on first use)."""
        if shape in self.requests:
            self.requests[shape] = self.requests.pop(shape)  # most recently used last
            return self.requests[shape]
        ov = _ov()
        t0 = time.perf_counter()
        model = self.model.clone()
        try:
            model.reshape({model.inputs[0]: ov.PartialShape(list(shape))})
            req = self.core.compile_model(model, "CPU", self.props).create_infer_request()
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses
            raise PredictionError(f"{self.where}: OpenVINO cannot compile this model for input shape {shape} "
                                  f"({type(exc).__name__}: {_first_line(exc)})") from None
        self.compile_seconds += time.perf_counter() - t0
        if len(self.requests) >= self.max_shapes:
            self.requests.pop(next(iter(self.requests)))
        self.requests[shape] = req
        return req

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x)

    def _one_call(self, x: torch.Tensor) -> torch.Tensor:
        return _infer(self.request(tuple(x.shape)), x)


def load_openvino(
    source: str | os.PathLike,
    device: torch.device,
    precision: str = "auto",
    root: Path | None = None,
    static_shapes: bool = True,
    note: str = "given file, no conversion",
    name: str | None = None,
) -> tuple[dict, ForwardFn, str]:
    """(config, forward_fn, description) for ``source``, an IR ``.xml`` or an ``.onnx`` file (a PyTorch model
    is converted first, by :func:`lightmedseg.inference.openvino_convert.cached_ir`; ``note`` says how, and
    ``name`` is the model the description names, ``source`` by default).

    ``static_shapes`` (default): compile per window shape on first use (:class:`StaticShapeForward`);
    otherwise compile the dynamic-axes model once, now.
    """
    if device.type != "cpu":
        raise PredictionError(f"--backend openvino runs on the CPU only; use --device cpu or --backend torch for {device}")
    xml = Path(source)
    if xml.suffix not in (".xml", ".onnx"):
        raise PredictionError(f"{xml}: OpenVINO runs an IR .xml or an .onnx file (a PyTorch model is converted first)")
    if not xml.is_file():
        raise PredictionError(f"{xml}: file not found")
    ov = _ov()
    core = ov.Core()
    ov_precision = resolve_ov_precision(precision)
    try:
        model = core.read_model(str(xml))
    except Exception as exc:  # OpenVINO raises RuntimeError subclasses for unreadable/invalid files
        raise PredictionError(f"{xml}: OpenVINO cannot read this model ({type(exc).__name__}: {_first_line(exc)})") from None
    if xml.suffix == ".onnx":
        from lightmedseg.inference.onnx_backend import read_onnx_config

        config = read_onnx_config(xml)
    else:
        config = read_ir_config(model, xml)
    props = compile_properties(ov_precision, cache_dir=(root or cache_root()) / "openvino" / "compiled")
    name = name or str(source)
    head = f"OpenVINO {ov.__version__.split('-')[0]} CPU, {ov_precision}, {props['INFERENCE_NUM_THREADS']} thread(s)"
    if static_shapes:
        fn: ForwardFn = StaticShapeForward(core, model, props, xml)
        return config, fn, f"{head}, static shape per window, model {name} ({note})"
    t0 = time.perf_counter()
    try:
        compiled = core.compile_model(model, "CPU", props)
    except Exception as exc:
        raise PredictionError(f"{xml}: OpenVINO cannot compile this model ({type(exc).__name__}: {_first_line(exc)})") from None
    desc = f"{head}, dynamic shapes, model {name} ({note}; compiled in {time.perf_counter() - t0:.1f} s)"
    return config, ov_forward(compiled), desc
