"""Export a trained model to ONNX (dynamic batch and spatial axes), an OpenVINO IR, and optionally TorchScript.

Exporters (both tried on this code base with torch 2.13, see docs/inference.md):

* ``dynamo`` (``torch.onnx.export(dynamo=True)``, via ``torch.export``): spatial axes are declared as
  symbolic multiples of the model's size divisor (16 for the paper's network), so the graph is valid for every such size by construction. It is the
  exporter PyTorch maintains, hence our default, but it is slow (about a minute for this model on a
  small CPU).
* ``legacy`` (TorchScript tracing, ``dynamo=False``): seconds, but shape-dependent Python branches are
  recorded for the example size only; the branches in this model do not depend on the size, and the
  export is verified at a second size to prove it. Used when asked, or when the dynamo exporter fails.

Every export is verified: ONNX Runtime logits are compared with PyTorch logits at the example size and at
a different, non-cubic size (tolerance :data:`ORT_ATOL`). The model's full config is stored as JSON in the
ONNX ``metadata_props`` (key ``lightmedseg_config``) so ``lightmedseg predict -m model.onnx`` needs no
PyTorch model code.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from lightmedseg.inference.options import EXPORT_FORMATS, EXPORT_SUFFIX, EXPORTERS
from lightmedseg.io_utils import atomic_path

CONFIG_KEY = "lightmedseg_config"
INPUT_NAME, OUTPUT_NAME = "image", "logits"
ORT_ATOL = 1e-4  # max |logit difference| accepted between ONNX Runtime and PyTorch (float32 re-association)
EXAMPLE_SIZE = (32, 32, 32)  # export example; batch 2 so the batch axis is not specialised to 1
CHECK_SIZE = (16, 48, 32)  # a second, non-cubic size for verification


class ExportError(ValueError):
    """Export failed or the exported model does not reproduce the PyTorch logits."""


@dataclass
class ExportResult:
    path: Path
    exporter: str
    max_abs_diff: float
    notes: list[str]


def _example(config: dict, size=EXAMPLE_SIZE, batch: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, int(config["model"]["in_channels"]), *size, generator=g)


def _divisor(config: dict) -> tuple[int, int, int]:
    from lightmedseg.model.network import size_divisors

    return size_divisors(config["model"])


def _export_dynamo(model: torch.nn.Module, x: torch.Tensor, path: Path, config: dict) -> None:
    dim = torch.export.Dim
    spatial = {i: m * dim(f"{n}{m}", min=1, max=1024 // m) for i, n, m in zip((2, 3, 4), "dhw", _divisor(config))}
    shapes = {"x": {0: dim("batch", min=1, max=256), **spatial}}
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model, (x,), dynamo=True, dynamic_shapes=shapes, input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME], verbose=False, optimize=True,
        )
    program.save(str(path))


def _export_legacy(model: torch.nn.Module, x: torch.Tensor, path: Path, config: dict, opset: int = 17) -> None:
    axes = {0: "batch", 2: "depth", 3: "height", 4: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about size-independent branches; verified below
        torch.onnx.export(
            model, (x,), str(path), dynamo=False, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes}, opset_version=opset,
        )


def _attach_config(path: Path, config: dict, exporter: str) -> None:
    proto = onnx.load(str(path))
    meta = {CONFIG_KEY: json.dumps(config), "lightmedseg_exporter": exporter,
            "lightmedseg_layout": f"input B x C x D x H x W (D = Z), sizes multiples of {list(_divisor(config))}; output logits"}
    kept = [p for p in proto.metadata_props if p.key not in meta]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    onnx.helper.set_model_props(proto, {**{p.key: p.value for p in kept}, **meta})
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def verify_logits(
    run: Callable[[np.ndarray], np.ndarray], model: torch.nn.Module, config: dict, engine: str, seed: int = 1
) -> float:
    """Max |logit difference| between ``run`` (an exported model's engine: a float32 B x C x D x H x W array
    in, logits out) and PyTorch, at :data:`EXAMPLE_SIZE` (batch 2) and :data:`CHECK_SIZE` (batch 1).

    Raises :class:`ExportError`, naming ``engine``, on a shape mismatch or a difference above
    :data:`ORT_ATOL`. Serves every export route (ONNX Runtime, OpenVINO).
    """
    worst = 0.0
    for size, batch in ((EXAMPLE_SIZE, 2), (CHECK_SIZE, 1)):
        x = _example(config, size, batch, seed=seed)
        with torch.inference_mode():
            ref = model.cpu()(x).numpy()
        out = run(x.numpy())
        if out.shape != ref.shape:
            raise ExportError(f"{engine} output shape {out.shape} != PyTorch {ref.shape} for input size {size}")
        worst = max(worst, float(np.abs(out - ref).max()))
    if worst > ORT_ATOL:
        raise ExportError(f"{engine} logits differ from PyTorch by {worst:.3g} (> {ORT_ATOL})")
    return worst


def verify_onnx(path: Path, model: torch.nn.Module, config: dict) -> float:
    """Max |logit difference| between ONNX Runtime and PyTorch at two sizes; raises ExportError above ORT_ATOL."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return verify_logits(lambda x: sess.run(None, {name: x})[0], model, config, f"{path}: ONNX Runtime", seed=1)


def export_onnx(
    model: torch.nn.Module, config: dict, out_path: str | os.PathLike, exporter: str = "auto"
) -> ExportResult:
    """Export ``model`` to ``out_path`` (.onnx) atomically, attach the config, verify with ONNX Runtime."""
    if exporter not in EXPORTERS:
        raise ExportError(f"unknown exporter {exporter!r}; expected one of {list(EXPORTERS)}")
    out_path = Path(out_path)
    if out_path.suffix != ".onnx":
        raise ExportError(f"{out_path}: the ONNX output file name must end in .onnx")
    model = model.cpu().eval()
    x = _example(config)
    order = ["dynamo", "legacy"] if exporter == "auto" else [exporter]
    notes: list[str] = []
    for name in order:
        try:
            # An exception inside atomic_path removes the temporary: a failed export never replaces a file.
            with atomic_path(out_path, suffix=".onnx") as tmp:
                (_export_dynamo if name == "dynamo" else _export_legacy)(model, x, tmp, config)
                _attach_config(tmp, config, name)
                diff = verify_onnx(tmp, model, config)
        except Exception as exc:  # exporter internals raise many types; keep the first line
            notes.append(f"{name} exporter failed: {type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:300]}")
            if name == order[-1]:
                raise ExportError(f"{out_path}: ONNX export failed ({'; '.join(notes)})") from None
            continue
        return ExportResult(out_path, name, diff, notes)
    raise ExportError(f"{out_path}: no exporter tried")  # unreachable


def export_torchscript(model: torch.nn.Module, config: dict, out_path: str | os.PathLike) -> ExportResult:
    """Trace ``model`` to TorchScript (scripting fails on Optional-typed submodule inputs), verify at a 2nd size.

    The config JSON travels as the extra file ``lightmedseg_config.json`` inside the archive.
    """
    out_path = Path(out_path)
    model = model.cpu().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, _example(config), check_trace=False)
    x = _example(config, CHECK_SIZE, 1, seed=1)
    with torch.inference_mode():
        diff = float((traced(x) - model(x)).abs().max())
    if diff > ORT_ATOL:
        raise ExportError(f"{out_path}: traced TorchScript differs from the model by {diff:.3g} at size {CHECK_SIZE}")
    with atomic_path(out_path, suffix=".pt") as tmp:
        torch.jit.save(traced, str(tmp), _extra_files={"lightmedseg_config.json": json.dumps(config)})
    return ExportResult(out_path, "torchscript-trace", diff, [])


def export_openvino(model: torch.nn.Module, config: dict, out_path: str | os.PathLike) -> ExportResult:
    """Write an OpenVINO IR ``out_path`` (.xml, weights in the .bin beside it, float32) with the config in
    its rt_info; verified against PyTorch (OpenVINO f32, two sizes, tolerance :data:`ORT_ATOL`)."""
    from lightmedseg.inference.openvino_backend import convert_module, save_ir

    out_path = Path(out_path)
    if out_path.suffix != ".xml":
        raise ExportError(f"{out_path}: the OpenVINO IR file name must end in .xml (weights go to the .bin beside it)")
    ov_model, diff = convert_module(model, config)
    save_ir(ov_model, out_path)
    return ExportResult(out_path, "legacy ONNX -> openvino.convert_model", diff, [])


def format_for(out_path: str | os.PathLike, fmt: str | None = None) -> str:
    """The export format: ``fmt`` when given, else from the file name (``.xml`` -> openvino, else onnx)."""
    if fmt is None:
        suffix = Path(out_path).suffix
        return next((f for f, s in EXPORT_SUFFIX.items() if s == suffix), "onnx")
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; expected one of {list(EXPORT_FORMATS)}")
    return fmt


def export_model(
    source: str | os.PathLike,
    out_path: str | os.PathLike,
    torchscript: bool = False,
    exporter: str = "auto",
    fmt: str | None = None,
) -> list[ExportResult]:
    """Load a model (run folder, file or shipped name) and export it as ``fmt`` (see :func:`format_for`);
    TorchScript goes beside the main file."""
    from lightmedseg.checkpoint import load_model

    model, config = load_model(source, device="cpu")
    if format_for(out_path, fmt) == "openvino":
        results = [export_openvino(model, config, out_path)]
    else:
        results = [export_onnx(model, config, out_path, exporter)]
    if torchscript:
        results.append(export_torchscript(model, config, Path(out_path).with_suffix(".torchscript.pt")))
    return results
