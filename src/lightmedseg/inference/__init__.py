"""Inference stage: sliding-window prediction in the input's native geometry, ONNX / OpenVINO export, ONNX
Runtime and OpenVINO backends.

Names are imported on first use, so ``import lightmedseg.inference.options`` (the CLI's ``--help``) does
not load MONAI.
"""

from __future__ import annotations

__all__ = ["Predictor", "Prediction", "PredictionError", "plain_forward", "predict", "segment", "Segmenter", "PredictOptions"]

_LAZY = {
    "Predictor": "predictor", "Prediction": "predictor", "PredictionError": "predictor", "plain_forward": "predictor",
    "segment": "segment", "Segmenter": "segment", "PredictOptions": "options",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"lightmedseg.inference.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'lightmedseg.inference' has no attribute {name!r}")


def predict(*args, **kwargs):
    """See :func:`lightmedseg.inference.pipeline.predict` (imported lazily)."""
    from lightmedseg.inference.pipeline import predict as _predict

    return _predict(*args, **kwargs)
