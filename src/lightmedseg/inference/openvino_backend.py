"""OpenVINO on the CPU: convert a model once to an IR (cached), compile it, and hand the predictor a forward_fn.

Conversion route (measured, see docs/inference.md): the plain ``nn.Module`` -> ONNX with the legacy tracer
(:func:`lightmedseg.inference.export.export_onnx`, verified against PyTorch with ONNX Runtime at two
sizes) -> ``openvino.convert_model`` -> IR saved with float32 weights. ``openvino.convert_model`` on the
``nn.Module`` directly also works but its graph differed from PyTorch by ~2e-5 at sizes other than the
example (ONNX route: ~1e-6), so the ONNX route is the one used.

The IR carries the model's config JSON in its ``rt_info`` (``lightmedseg/config``), so an IR written by
``lightmedseg export --format openvino`` runs without the PyTorch model code. Precision is an OpenVINO
*inference* hint (``INFERENCE_PRECISION_HINT``): the IR always holds the float32 weights.

Caches, both under :func:`cache_root`:

* ``openvino/<key>/model.xml|.bin`` -- the IR of a PyTorch model file; ``key`` hashes the model file's
  bytes, the source of ``lightmedseg.model`` (the traced code, MONAI baselines included) and the
  OpenVINO version, so new weights or new model code never reuse a stale IR;
* ``openvino/compiled/`` -- OpenVINO's own ``CACHE_DIR`` of compiled blobs (saves the compile step).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lightmedseg.inference.predictor import ForwardFn, PredictionError

RT_INFO_PATH = ["lightmedseg", "config"]  # where the config JSON lives in the IR's rt_info
IR_NAME = "model.xml"
CACHE_ENV = "LIGHTMEDSEG_CACHE_DIR"
IR_FORMAT = "1"  # bump when the conversion route changes, to invalidate every cached IR
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
            "the openvino backend needs the 'openvino' package (pip install openvino), or use --backend torch"
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
    from lightmedseg.inference.backends import PRECISIONS

    if precision not in PRECISIONS:
        raise PredictionError(f"--precision {precision!r}: expected one of {list(PRECISIONS)}")
    if precision == "auto":
        from lightmedseg.hardware import native_bf16

        return "bf16" if native_bf16() else "f32"
    return OV_PRECISION[precision]


def _source_digest() -> str:
    """Hash of the model code that the IR was traced from (a code change must not reuse an old IR)."""
    import lightmedseg

    root = Path(lightmedseg.__file__).parent
    h = hashlib.sha256()
    for f in sorted((root / "model").rglob("*.py")):  # the networks, MONAI baselines included (model/baselines.py)
        h.update(f.relative_to(root).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def cache_key(model_file: Path) -> str:
    """Key of a model file's cached IR: its bytes, the model code, the OpenVINO version, :data:`IR_FORMAT`."""
    h = hashlib.sha256()
    with open(model_file, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    h.update(_source_digest().encode())
    h.update(f"openvino {_ov().__version__} format {IR_FORMAT}".encode())
    return h.hexdigest()[:24]


def verify_ov(ov_model: Any, model: torch.nn.Module, config: dict) -> float:
    """Max |logit difference| between OpenVINO (f32) and PyTorch at the export check sizes; raises above ORT_ATOL."""
    from lightmedseg.inference.export import verify_logits

    compiled = _ov().Core().compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return verify_logits(lambda x: compiled(x)[0], model, config, "OpenVINO", seed=2)


def convert_module(model: torch.nn.Module, config: dict) -> tuple[Any, float]:
    """Plain ``nn.Module`` -> (``openvino.Model`` with dynamic batch and spatial axes and the config in
    rt_info, max |logit difference| to PyTorch in f32).

    Goes through a verified legacy-tracer ONNX export in a temporary folder (see the module docstring);
    the OpenVINO model is verified again against PyTorch (:func:`verify_ov`).
    """
    from lightmedseg.inference.export import export_onnx

    ov = _ov()
    model = model.cpu().eval()
    with tempfile.TemporaryDirectory(prefix="lightmedseg-ov-") as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        export_onnx(model, config, onnx_path, exporter="legacy")
        ov_model = ov.convert_model(str(onnx_path))
    ov_model.set_rt_info(json.dumps(config), RT_INFO_PATH)
    return ov_model, verify_ov(ov_model, model, config)


def save_ir(ov_model: Any, xml_path: Path) -> None:
    """Write ``xml_path`` and its ``.bin`` (float32 weights, not OpenVINO's default fp16 compression)."""
    ov = _ov()
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = xml_path.with_name(f".{xml_path.stem}.{os.getpid()}.tmp.xml")
    try:
        ov.save_model(ov_model, str(tmp), compress_to_fp16=False)
        os.replace(tmp.with_suffix(".bin"), xml_path.with_suffix(".bin"))
        os.replace(tmp, xml_path)  # the .xml last: an .xml on disk always has its .bin
    finally:
        for p in (tmp, tmp.with_suffix(".bin")):
            if p.exists():
                p.unlink()


def read_ir_config(ov_model: Any, where: Path) -> dict:
    """The config JSON stored in an IR's rt_info; a clear error for IRs not written by lightmedseg."""
    if not ov_model.has_rt_info(RT_INFO_PATH):
        raise PredictionError(
            f"{where}: no '{'/'.join(RT_INFO_PATH)}' in the IR's rt_info; export it with "
            "`lightmedseg export --format openvino` so it carries its config"
        )
    return json.loads(ov_model.get_rt_info(RT_INFO_PATH).astype(str))


@dataclass
class CachedIR:
    """An IR for a PyTorch model file, and whether this call wrote it."""

    xml: Path
    created: bool
    seconds: float


def cached_ir(model_file: Path, root: Path | None = None) -> CachedIR:
    """The IR of ``model_file`` from the cache, converting (and caching) it on the first call.

    Written to a temporary folder and renamed, so concurrent processes never see a half-written IR.
    """
    from lightmedseg.checkpoint import load_model

    folder = (root or cache_root()) / "openvino" / cache_key(model_file)
    xml = folder / IR_NAME
    if xml.is_file() and xml.with_suffix(".bin").is_file():
        return CachedIR(xml, False, 0.0)
    t0 = time.perf_counter()
    model, config = load_model(model_file, device="cpu")
    ov_model, _ = convert_module(model, config)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        save_ir(ov_model, tmp_dir / IR_NAME)
        try:
            os.replace(tmp_dir, folder)
        except OSError:  # another process won the race (target folder exists and is not empty)
            if not xml.is_file():
                raise
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return CachedIR(xml, True, time.perf_counter() - t0)


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


def ov_forward(compiled: Any) -> ForwardFn:
    """A predictor ``forward_fn`` around a compiled model: float32 B x C x D x H x W in, float32 logits out."""
    request = compiled.create_infer_request()
    return lambda x: _infer(request, x)


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
        return _infer(self.request(tuple(x.shape)), x)


def load_openvino(
    source: str | os.PathLike,
    device: torch.device,
    precision: str = "auto",
    root: Path | None = None,
    static_shapes: bool = True,
) -> tuple[dict, ForwardFn, str]:
    """(config, forward_fn, description) for ``source``: an IR ``.xml``, an ``.onnx`` file, or any PyTorch
    model source (run folder, model file, shipped name; converted once and cached).

    ``static_shapes`` (default): compile per window shape on first use (:class:`StaticShapeForward`);
    otherwise compile the dynamic-axes model once, now.
    """
    if device.type != "cpu":
        raise PredictionError(f"--backend openvino runs on the CPU only; use --device cpu or --backend torch for {device}")
    ov = _ov()
    core = ov.Core()
    ov_precision = resolve_ov_precision(precision)
    path = Path(source)
    if path.suffix in (".xml", ".onnx"):
        if not path.is_file():
            raise PredictionError(f"{path}: file not found")
        xml, cache_note = path, "given file, no conversion"
    else:
        from lightmedseg.checkpoint import resolve_model_path

        ir = cached_ir(resolve_model_path(source), root)
        xml = ir.xml
        cache_note = (f"IR converted in {ir.seconds:.1f} s and cached at {xml.parent}" if ir.created
                      else f"cached IR {xml.parent}")
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
    head = f"OpenVINO {ov.__version__.split('-')[0]} CPU, {ov_precision}, {props['INFERENCE_NUM_THREADS']} thread(s)"
    if static_shapes:
        fn: ForwardFn = StaticShapeForward(core, model, props, xml)
        return config, fn, f"{head}, static shape per window, model {source} ({cache_note})"
    t0 = time.perf_counter()
    try:
        compiled = core.compile_model(model, "CPU", props)
    except Exception as exc:
        raise PredictionError(f"{xml}: OpenVINO cannot compile this model ({type(exc).__name__}: {_first_line(exc)})") from None
    desc = f"{head}, dynamic shapes, model {source} ({cache_note}; compiled in {time.perf_counter() - t0:.1f} s)"
    return config, ov_forward(compiled), desc
