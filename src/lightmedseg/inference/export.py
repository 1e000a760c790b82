"""Export a trained model to ONNX (dynamic batch and spatial axes), an OpenVINO IR, and optionally TorchScript.

ONNX needs the ``[export]`` extra (onnx, onnxruntime, onnxscript; imported inside the ONNX functions only);
the OpenVINO IR is written by :mod:`lightmedseg.inference.openvino_convert`, straight from PyTorch, with
no ONNX package involved, so ``export -o model.xml`` works in the plain install.

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
PyTorch model code, and the card's prediction fields beside it (key ``lightmedseg_card``,
:func:`lightmedseg.inference.cards.embedded_card`) so it predicts as its source does.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lightmedseg.checkpoint import CONFIG_KEY
from lightmedseg.inference.cards import ONNX_CARD_KEY
from lightmedseg.inference.conversion import (  # noqa: F401  (ExportError, EXAMPLE_SIZE: their former home)
    CHECK_SIZE, EXAMPLE_SIZE, ORT_ATOL, ExportError, example_input, module_to_convert, size_divisor, verify_logits)
from lightmedseg.inference.options import EXPORT_FORMATS, EXPORT_SUFFIX, EXPORTERS
from lightmedseg.io_utils import atomic_path

INPUT_NAME, OUTPUT_NAME = "image", "logits"
TORCHSCRIPT_CONFIG_FILE = f"{CONFIG_KEY}.json"  # the extra file of a TorchScript archive that holds the config


@dataclass
class ExportResult:
    path: Path
    exporter: str
    max_abs_diff: float
    notes: list[str]
    card: dict = field(default_factory=dict)  # the card fields embedded in the file




def _export_dynamo(model: torch.nn.Module, x: torch.Tensor, path: Path, config: dict) -> None:
    dim = torch.export.Dim
    spatial = {i: m * dim(f"{n}{m}", min=1, max=1024 // m) for i, n, m in zip((2, 3, 4), "dhw", size_divisor(config))}
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


def _attach_config(path: Path, config: dict, exporter: str, card: dict | None = None) -> None:
    import onnx

    proto = onnx.load(str(path))
    meta = {CONFIG_KEY: json.dumps(config), "lightmedseg_exporter": exporter,
            "lightmedseg_layout": f"input B x C x D x H x W (D = Z), sizes multiples of {list(size_divisor(config))}; output logits"}
    if card:
        meta[ONNX_CARD_KEY] = json.dumps(card)
    kept = [p for p in proto.metadata_props if p.key not in meta]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    onnx.helper.set_model_props(proto, {**{p.key: p.value for p in kept}, **meta})
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def verify_onnx(path: Path, model: torch.nn.Module, config: dict) -> float:
    """Max |logit difference| between ONNX Runtime and PyTorch at two sizes; raises ExportError above ORT_ATOL."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return verify_logits(lambda x: sess.run(None, {name: x})[0], model, config, f"{path}: ONNX Runtime", seed=1)


def export_onnx(
    model: torch.nn.Module, config: dict, out_path: str | os.PathLike, exporter: str = "auto", card: dict | None = None
) -> ExportResult:
    """Export ``model`` to ``out_path`` (.onnx) atomically, attach the config (and ``card``, the fields of
    :func:`~lightmedseg.inference.cards.embedded_card`), verify with ONNX Runtime."""
    if exporter not in EXPORTERS:
        raise ExportError(f"unknown exporter {exporter!r}; expected one of {list(EXPORTERS)}")
    import onnx  # noqa: F401  the [export] extra: a missing one raises here, where the CLI names the extra,
    import onnxruntime  # noqa: F401  not inside the exporters' attempts below, which would swallow it
    out_path = Path(out_path)
    if out_path.suffix != ".onnx":
        raise ExportError(f"{out_path}: the ONNX output file name must end in .onnx")
    model = module_to_convert(model)
    x = example_input(config)
    order = ["dynamo", "legacy"] if exporter == "auto" else [exporter]
    notes: list[str] = []
    for name in order:
        try:
            # An exception inside atomic_path removes the temporary: a failed export never replaces a file.
            with atomic_path(out_path, suffix=".onnx") as tmp:
                (_export_dynamo if name == "dynamo" else _export_legacy)(model, x, tmp, config)
                _attach_config(tmp, config, name, card)
                diff = verify_onnx(tmp, model, config)
        except Exception as exc:  # exporter internals raise many types; keep the first line
            notes.append(f"{name} exporter failed: {type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:300]}")
            if name == order[-1]:
                raise ExportError(f"{out_path}: ONNX export failed ({'; '.join(notes)})") from None
            continue
        return ExportResult(out_path, name, diff, notes, dict(card or {}))
    raise ExportError(f"{out_path}: no exporter tried")  # unreachable


def export_torchscript(model: torch.nn.Module, config: dict, out_path: str | os.PathLike) -> ExportResult:
    """Trace ``model`` to TorchScript (scripting fails on Optional-typed submodule inputs), verify at a 2nd size.

    The config JSON travels as the extra file :data:`TORCHSCRIPT_CONFIG_FILE` inside the archive.
    """
    out_path = Path(out_path)
    model = module_to_convert(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, example_input(config), check_trace=False)
    x = example_input(config, CHECK_SIZE, 1, seed=1)
    with torch.inference_mode():
        diff = float((traced(x) - model(x)).abs().max())
    if diff > ORT_ATOL:
        raise ExportError(f"{out_path}: traced TorchScript differs from the model by {diff:.3g} at size {CHECK_SIZE}")
    with atomic_path(out_path, suffix=".pt") as tmp:
        torch.jit.save(traced, str(tmp), _extra_files={TORCHSCRIPT_CONFIG_FILE: json.dumps(config)})
    return ExportResult(out_path, "torchscript-trace", diff, [])


def export_openvino(
    model: torch.nn.Module, config: dict, out_path: str | os.PathLike, card: dict | None = None
) -> ExportResult:
    """Write an OpenVINO IR ``out_path`` (.xml, weights in the .bin beside it, float32) with the config (and
    ``card``) in its rt_info, converted straight from PyTorch and verified against it (OpenVINO f32, two
    sizes, tolerance :data:`ORT_ATOL`). Needs no ONNX package."""
    from lightmedseg.inference.openvino_convert import convert_module, save_ir

    out_path = Path(out_path)
    if out_path.suffix != ".xml":
        raise ExportError(f"{out_path}: the OpenVINO IR file name must end in .xml (weights go to the .bin beside it)")
    ov_model, diff = convert_module(model, config, card)
    save_ir(ov_model, out_path)
    return ExportResult(out_path, "openvino.convert_model from PyTorch", diff, [], dict(card or {}))


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
    """Load a model (run folder, file or shipped name) and export it as ``fmt`` (see :func:`format_for`), with
    its card's prediction fields embedded; TorchScript goes beside the main file."""
    from lightmedseg.checkpoint import load_model
    from lightmedseg.inference.cards import embedded_card, load_card

    model, config = load_model(source, device="cpu")
    card = embedded_card(load_card(source))
    if format_for(out_path, fmt) == "openvino":
        results = [export_openvino(model, config, out_path, card)]
    else:
        results = [export_onnx(model, config, out_path, exporter, card)]
    if torchscript:
        results.append(export_torchscript(model, config, Path(out_path).with_suffix(".torchscript.pt")))
    return results
