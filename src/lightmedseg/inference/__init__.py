"""Inference stage: sliding-window prediction in the input's native geometry, ONNX / OpenVINO export, ONNX Runtime and OpenVINO backends."""

from lightmedseg.inference.predictor import Prediction, PredictionError, Predictor, plain_forward

__all__ = ["Predictor", "Prediction", "PredictionError", "plain_forward", "predict"]


def predict(*args, **kwargs):
    """See :func:`lightmedseg.inference.pipeline.predict` (imported lazily)."""
    from lightmedseg.inference.pipeline import predict as _predict

    return _predict(*args, **kwargs)
