"""Run an exported ``.onnx`` model with ONNX Runtime: config from its metadata, forward_fn for the predictor.

Nothing here imports the PyTorch model code; torch is used only for the tensors MONAI's sliding window
passes around.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from lightmedseg.checkpoint import CONFIG_KEY
from lightmedseg.inference.predictor import ForwardFn, PredictionError


def _providers(device: torch.device) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise PredictionError(
                f"--device {device}: this onnxruntime build has no CUDA provider (available: {available}); "
                "install onnxruntime-gpu or use --device cpu"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def read_onnx_config(path: Path) -> dict:
    """The config JSON stored in an ONNX file's metadata by ``lightmedseg export`` (no session needed)."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf decode errors and OSErrors
        raise PredictionError(f"{path}: not a readable ONNX file ({type(exc).__name__}: {exc})") from None
    meta = {p.key: p.value for p in proto.metadata_props}
    if CONFIG_KEY not in meta:
        raise PredictionError(f"{path}: no '{CONFIG_KEY}' metadata; export it with `lightmedseg export` so it carries its config")
    return json.loads(meta[CONFIG_KEY])


def load_onnx(path: Path, device: torch.device) -> tuple[dict, ForwardFn, str]:
    """(config, forward_fn, description) of an ONNX file written by ``lightmedseg export``."""
    import onnxruntime as ort

    if not path.is_file():
        raise PredictionError(f"{path}: ONNX file not found")
    try:
        sess = ort.InferenceSession(str(path), providers=_providers(device))
    except PredictionError:
        raise
    except Exception as exc:  # onnxruntime raises its own exception types for invalid files
        raise PredictionError(f"{path}: ONNX Runtime cannot load this file ({type(exc).__name__}: {exc})") from None
    meta = sess.get_modelmeta().custom_metadata_map
    if CONFIG_KEY not in meta:
        raise PredictionError(f"{path}: no '{CONFIG_KEY}' metadata; export it with `lightmedseg export` so it carries its config")
    config = json.loads(meta[CONFIG_KEY])
    input_name = sess.get_inputs()[0].name

    def forward(x: torch.Tensor) -> torch.Tensor:
        out = sess.run(None, {input_name: x.detach().to("cpu", torch.float32).contiguous().numpy()})[0]
        return torch.from_numpy(out).to(x.device)

    return config, forward, f"ONNX model {path} (onnxruntime, {sess.get_providers()[0]})"
