"""Convert a PyTorch model to an OpenVINO IR, straight from PyTorch (no ONNX, no ONNX Runtime), and cache it.

Route: ``openvino.convert_model(module, example_input=x, input=[B x C x D x H x W with B, D, H, W
dynamic])`` on :func:`lightmedseg.inference.conversion.module_to_convert`, then checked against the PyTorch
forward at two sizes (:func:`lightmedseg.inference.conversion.verify_logits`, tolerance ``ORT_ATOL``;
measured ~1e-5 on the shipped acdc model, at the example size and at others). The IR is saved with
float32 weights; precision (f32 or bf16) is an OpenVINO *inference* hint chosen when it is compiled
(:mod:`lightmedseg.inference.openvino_backend`, which runs IRs and never converts).

One correction follows the conversion (:func:`match_torch_interpolation`): the PyTorch frontend maps
``F.interpolate(mode="trilinear", align_corners=False)`` to OpenVINO's ``pytorch_half_pixel`` coordinates,
which read voxel 0 for an output axis of length 1 where PyTorch averages its two neighbours (the
1 x 3 x 2 coarsest level of a 16 x 48 x 32 window, or of any window 16 slices deep, as ACDC's: logits off
by up to 0.9 on a bare interpolation, 1.4e-4 through the network); ``half_pixel`` is PyTorch's formula at
every length (0 difference measured). The ONNX exporter writes ``half_pixel`` too.

The IR carries the model's config JSON in its ``rt_info`` (:data:`lightmedseg.inference.cards.IR_CONFIG_PATH`)
and, for ``lightmedseg export``, the card's prediction fields (:data:`~lightmedseg.inference.cards.IR_CARD_PATH`),
so an exported IR runs without the PyTorch model code and predicts as its source does.

Cache, under :func:`lightmedseg.inference.openvino_backend.cache_root`: ``openvino/<key>/model.xml|.bin``,
the IR of a PyTorch model file; ``key`` hashes the model file's bytes, the source of ``lightmedseg.model``
(the traced code, MONAI baselines included), the OpenVINO version and :data:`IR_FORMAT`, so new weights
or new model code never reuse a stale IR.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lightmedseg.config import typed_config
from lightmedseg.inference.cards import IR_CARD_PATH, IR_CONFIG_PATH
from lightmedseg.inference.conversion import (
    ExportError, example_input, module_to_convert, one_sample_graph, openvino_graph_form, per_sample, verify_logits)
from lightmedseg.inference.openvino_backend import _first_line, _ov, cache_root, ir_one_sample

IR_NAME = "model.xml"
IR_FORMAT = "3"  # bump when the conversion route changes, to invalidate every cached IR (2: straight from PyTorch,
# 3: LightMedSeg's fast forward in engine form, one sample per call)
TRACED_CODE = [Path(__file__).resolve().parents[1] / d for d in ("model", "fast")]  # hashed into the cache key


def verify_ov(ov_model: Any, model: torch.nn.Module, config: dict) -> float:
    """Max |logit difference| between OpenVINO (f32) and PyTorch at the check sizes; raises above ORT_ATOL."""
    compiled = _ov().Core().compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    run = lambda x: compiled(x)[0]  # noqa: E731
    return verify_logits(per_sample(run) if ir_one_sample(ov_model) else run, model, config, "OpenVINO", seed=2)


def match_torch_interpolation(ov_model: Any) -> int:
    """Set every linear ``Interpolate`` of ``ov_model`` to ``half_pixel`` coordinates (PyTorch's
    ``align_corners=False`` formula at every output length; see the module docstring); returns how many."""
    changed = 0
    for op in ov_model.get_ops():
        if op.get_type_name() != "Interpolate":
            continue
        attrs = op.get_attributes()
        if attrs.get("mode") == "linear_onnx" and attrs.get("coordinate_transformation_mode") == "pytorch_half_pixel":
            op.set_attribute("coordinate_transformation_mode", "half_pixel")
            changed += 1
    return changed


def convert_module(model: torch.nn.Module, config: dict, card: dict | None = None) -> tuple[Any, float]:
    """PyTorch model -> (``openvino.Model`` with dynamic spatial axes (and batch, unless the converted module is a
    one-sample graph, :func:`~lightmedseg.inference.conversion.module_to_convert`), the config and ``card`` in
    its rt_info; max |logit difference| to PyTorch in f32). Raises :class:`ExportError` when conversion
    fails or the IR does not reproduce the PyTorch logits."""
    ov = _ov()
    module = module_to_convert(model, one_sample=True)
    channels = int(typed_config(config).model["in_channels"])
    batch = 1 if one_sample_graph(module) else 2  # 2: the example must not specialise a dynamic batch axis
    try:
        # TracerWarnings about size-independent branches (verified below at a second size); conversion chatter
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            ov_model = ov.convert_model(module, example_input=example_input(config, batch=batch),
                                        input=[ov.PartialShape([1 if batch == 1 else -1, channels, -1, -1, -1])])
    except Exception as exc:  # the PyTorch frontend raises many types; keep the informative line
        raise ExportError(f"openvino.convert_model failed: {type(exc).__name__}: {_first_line(exc)}") from None
    match_torch_interpolation(ov_model)
    ov_model.set_rt_info(json.dumps(config), IR_CONFIG_PATH)
    if card:
        ov_model.set_rt_info(json.dumps(card), IR_CARD_PATH)
    return ov_model, verify_ov(ov_model, module, config)


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


def _source_digest() -> str:
    """Hash of the model code that the IR was traced from (a code change must not reuse an old IR)."""
    h = hashlib.sha256()
    for f in sorted(f for d in TRACED_CODE for f in d.rglob("*.py")):  # networks (MONAI baselines too), fast graph
        h.update(f.relative_to(f.parents[1]).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def cache_key(model_file: Path) -> str:
    """Key of a model file's cached IR: its bytes, the model code, the OpenVINO version, :data:`IR_FORMAT`."""
    from lightmedseg.io_utils import hash_file

    h = hash_file(model_file)
    h.update(_source_digest().encode())
    h.update(f"openvino {_ov().__version__} format {IR_FORMAT} graph {openvino_graph_form()}".encode())
    return h.hexdigest()[:24]


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


__all__ = ["IR_NAME", "IR_FORMAT", "CachedIR", "cache_key", "cached_ir", "convert_module", "match_torch_interpolation",
           "save_ir", "verify_ov"]
