"""Prediction options shared by ``lightmedseg predict``, :func:`lightmedseg.segment` and
:class:`~lightmedseg.inference.segment.Segmenter` (:class:`PredictOptions`, the one place their defaults live),
and the choices of export options shared by ``lightmedseg export`` and :mod:`lightmedseg.inference.export`.

Kept free of heavy imports (no torch/MONAI at import time) so the CLI builds its ``--help`` quickly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

DEVICES_HELP = "auto (a GPU when there is one, else the CPU), cpu, cuda, cuda:N, gpu (= cuda) or mps (Apple GPU)"
BACKENDS: tuple[str, ...] = ("auto", "openvino", "torch", "onnxruntime")  # see inference.backends.auto_backend
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")  # see inference.backends.resolve_precision
OUTPUT_FORMATS: tuple[str, ...] = ("nifti", "input")
EXPORT_SUFFIX = {"onnx": ".onnx", "openvino": ".xml"}  # export format -> its output file's ending
EXPORT_FORMATS: tuple[str, ...] = tuple(EXPORT_SUFFIX)
EXPORTERS: tuple[str, ...] = ("auto", "dynamo", "legacy")  # see lightmedseg.inference.export
TTA_PASSES = {"mirror": 8, "rot90": 8}  # test-time augmentation modes -> views per window (inference.tta)
TTA_MODES: tuple[str, ...] = tuple(TTA_PASSES)
DEFAULT_TTA_MODE = "mirror"  # what plain True / --tta means when the model card names no mode
TTA_VIEWS_PER_CALL = 1  # TTA views stacked into one engine call (inference.predictor; docs/benchmarks.md)


@dataclass(frozen=True)
class PredictOptions:
    """How a model predicts: the options ``predict``, ``segment`` and ``Segmenter`` share, with their defaults.

    ``None`` for ``tta``, ``keep_largest`` and ``require_contact`` means "what the model card says" (chosen on
    validation), and for ``overlap`` / ``sw_batch_size`` "what the model config says"; see
    :class:`~lightmedseg.inference.segment.Segmenter` for each field's meaning. File-level choices (output
    format, overwrite, probabilities, statistics, parts) stay parameters of
    :func:`~lightmedseg.inference.pipeline.predict`.
    """

    device: str = "auto"  # see DEVICES_HELP
    tta: bool | str | None = None  # a TTA_MODES name, True, False; None: the card's, else the config's
    overlap: float | None = None  # sliding-window overlap in [0, 1); None: the config's, else 0.5
    sw_batch_size: int | None = None  # windows evaluated at once; None: the config's, else 1
    resample: bool | None = None  # predict on the training grid: None per case, True always, False never
    keep_largest: bool | Sequence[str | int] | None = None  # largest component per label
    require_contact: Mapping[str | int, Sequence[str | int]] | bool | None = None  # {label: [anchors]}
    ensemble: bool = True  # False: only the first member of a card's ensemble
    backend: str = "auto"  # one of BACKENDS
    precision: str = "auto"  # one of PRECISIONS
    reference: bool = False  # the reference PyTorch forward instead of the fast path / a converted graph

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names (the dataclass fields)."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def with_keywords(self, **keywords: Any) -> PredictOptions:
        """A copy with the given options replaced (the older keyword form of ``predict``/``segment``/``Segmenter``);
        an unknown name is a ``TypeError``, as for any unexpected keyword argument."""
        unknown = sorted(set(keywords) - set(self.names()))
        if unknown:
            raise TypeError(f"unexpected prediction option(s) {unknown}; expected some of {list(self.names())}")
        return dataclasses.replace(self, **keywords) if keywords else self


def predict_options(options: PredictOptions | None = None, **keywords: Any) -> PredictOptions:
    """``options`` (default: :class:`PredictOptions`'s defaults) with ``keywords`` (option names) replacing its fields."""
    return (options if options is not None else PredictOptions()).with_keywords(**keywords)


def pick_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when PyTorch sees a GPU, else ``cpu``; ``gpu``/``gpu:N`` -> ``cuda``/``cuda:N``.

    Other names pass through unchanged (checked by :func:`lightmedseg.inference.backends.resolve_device`).
    """
    name = str(device).strip().lower()
    if name == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "gpu" or name.startswith("gpu:"):
        return "cuda" + name[3:]
    return str(device)


__all__ = ["PredictOptions", "predict_options", "BACKENDS", "PRECISIONS", "DEVICES_HELP", "EXPORTERS", "EXPORT_FORMATS", "EXPORT_SUFFIX", "OUTPUT_FORMATS", "pick_device"]
