"""Array-level prediction: the model's own preprocessing, padding, Gaussian sliding window, mirroring TTA,
and undoing crops/pads so that the result lies on the input's original voxel grid.

The network is only reached through ``forward_fn`` (a callable ``x -> logits`` on B x C x D x H x W
tensors), so the same code serves the PyTorch model, a faster compiled path, or ONNX Runtime.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference

from lightmedseg.config import Config, ConfigError, load_stored_config, typed_config
from lightmedseg.data import labels as L
from lightmedseg.data.errors import DataError
from lightmedseg.data.preprocess import PreprocessInfo, preprocess_image, restore_to_original
from lightmedseg.inference import tta as T
from lightmedseg.inference.options import TTA_VIEWS_PER_CALL
from lightmedseg.inference.tta import mirror_axes_sets  # noqa: F401  (its former home; kept importable)
from lightmedseg.model.network import PAPER_SIZE_DIVISOR, size_divisors

ForwardFn = Callable[[torch.Tensor], torch.Tensor]
SIZE_DIVISOR = PAPER_SIZE_DIVISOR[0]  # the paper's network (16); per model: size_divisors(config)
MIN_SPATIAL_SIZE = 2  # a single slice is a 2D image, not a volume this 3D model can segment
SPATIAL_DIMS = (2, 3, 4)
WINDOW_PROGRESS_VOLUMES = 8  # a per-window bar only for volumes larger than this many windows


class PredictionError(DataError):
    """An input the predictor cannot segment (too small, wrong channel count, bad config)."""


@dataclass
class Prediction:
    """One case on its original (Z, Y, X) grid: label map with dataset values, optional probabilities."""

    labels: np.ndarray  # (Z, Y, X) int16 dataset label values
    probabilities: np.ndarray | None  # (N, Z, Y, X) float32 softmax, class order = label_values


def output_label_values(config: Mapping | Config) -> list[int]:
    """Dataset label value of each network output index (the config's ``labels``, as in dataset.json).

    Without a ``labels`` entry the indices themselves are written (0..N-1), with a warning.
    """
    cfg = typed_config(config)
    n = int(cfg.model["num_classes"])
    if cfg.labels is None:
        warnings.warn("model config has no 'labels' mapping; writing class indices 0..N-1 as label values", stacklevel=2)
        return list(range(n))
    values = L.label_values({"labels": cfg.labels})
    if len(values) != n:
        raise PredictionError(f"model config: 'labels' declares {len(values)} values {values} but the network has {n} classes")
    return values


def _symmetric_pad(shape: Sequence[int], divisors: Sequence[int], minimum: Sequence[int]) -> list[tuple[int, int]]:
    """(before, after) zero padding per axis up to a multiple of the divisor and at least ``minimum``.

    Padding a volume smaller than the window up to the window (rather than shrinking the window) is what
    training did (``SpatialPadd`` to the patch size): a 10-slice ACDC stack is seen inside a 16-slice window.
    """
    out = []
    for s, divisor, low in zip(shape, divisors, minimum):
        total = max(-(-s // divisor) * divisor, low) - s
        out.append((total // 2, total - total // 2))
    return out


class Predictor:
    """Sliding-window predictor for one model configuration.

    Args:
        config: the model's full config (sections ``model``, ``data``, ``infer``; optional ``labels``).
        forward_fn: callable x -> logits (B x N x D x H x W); must accept spatial sizes that are multiples of
            the model's :func:`~lightmedseg.model.network.size_divisors` (16 for the paper's network).
        device: where windows are evaluated and aggregated.
        tta: test-time augmentation: ``True`` or ``"mirror"`` (8 mirrored passes per window), ``"rot90"``
            (the 8 in-plane rotations/mirrors of a square window), ``False`` for none; default
            ``infer.tta`` of the config (see :mod:`lightmedseg.inference.tta`).
        overlap: sliding-window overlap; default ``infer.overlap`` (defaults: :mod:`lightmedseg.config.schema`).
        progress: a tqdm bar over the windows of volumes much larger than one window (a terminal's user
            otherwise waits minutes without a sign on one large CPU volume).
        views_per_call: TTA views of a window stacked into one ``forward_fn`` call (default
            :data:`~lightmedseg.inference.options.TTA_VIEWS_PER_CALL`, chosen by measurement: docs/benchmarks.md).
    """

    def __init__(
        self,
        config: Mapping | Config,
        forward_fn: ForwardFn,
        device: str | torch.device = "cpu",
        tta: bool | str | None = None,
        overlap: float | None = None,
        sw_batch_size: int | None = None,
        progress: bool = False,
        views_per_call: int | None = None,
    ) -> None:
        try:  # defaults and the window (infer.roi_size, else data.patch_size) from the schema
            cfg = typed_config(load_stored_config(config.to_dict() if isinstance(config, Config) else config))
        except ConfigError as exc:
            raise PredictionError(f"model config: {exc}") from None
        infer = cfg.infer
        self.cfg, self.config = cfg, cfg.to_dict()
        self.forward_fn = forward_fn
        self.device = torch.device(device)
        try:
            self.in_channels = int(cfg.model["in_channels"])
            self.num_classes = int(cfg.model["num_classes"])
            self.overlap = float(infer.overlap if overlap is None else overlap)
            self.sw_batch_size = int(sw_batch_size or infer.sw_batch_size)
            roi = cfg.window
            self.roi_size = [int(r) for r in roi]
        except KeyError as exc:
            raise PredictionError(f"model config: missing key {exc}") from None
        except (TypeError, ValueError) as exc:
            raise PredictionError(f"model config: a value of the 'model' or 'infer' section has the wrong type ({exc})") from None
        self.mode = infer.mode
        try:
            self.divisors = size_divisors(cfg.model)
        except (TypeError, ValueError) as exc:
            raise PredictionError(f"model config: model.strides is not valid ({exc})") from None
        if len(self.roi_size) != 3 or any(r <= 0 or r % m for r, m in zip(self.roi_size, self.divisors)):
            raise PredictionError(
                f"model config: infer.roi_size {roi!r} must be a list of 3 positive multiples of "
                f"{list(self.divisors)} (d, h, w)"
            )
        try:
            self.tta_mode = T.tta_mode(infer.tta if tta is None else tta)
        except ValueError as exc:
            raise PredictionError(str(exc)) from None
        if why := T.check_window(self.tta_mode, self.roi_size):
            raise PredictionError(why)
        if not 0 <= self.overlap < 1:
            raise PredictionError(f"sliding-window overlap must be in [0, 1), got {self.overlap}")
        self.label_values = output_label_values(cfg)
        self.progress = bool(progress)
        self.views_per_call = int(TTA_VIEWS_PER_CALL if views_per_call is None else views_per_call)
        if self.views_per_call < 1:
            raise PredictionError(f"views per engine call must be a positive number, got {views_per_call}")

    @property
    def tta(self) -> bool:
        """Whether windows are predicted in more than one view (:attr:`tta_mode` says which)."""
        return self.tta_mode is not None

    # -- one window (with test-time augmentation) --------------------------------------------------------
    def _window(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of one window: the mean over the TTA views, each mapped back by its inverse; the views go to
        the engine ``views_per_call`` at a time, stacked along the batch axis."""
        views = T.views(self.tta_mode)
        logits: torch.Tensor | None = None
        n = x.shape[0]
        for start in range(0, len(views), self.views_per_call):
            group = views[start:start + self.views_per_call]
            batch = torch.cat([transform(x) for transform, _ in group]) if len(group) > 1 else group[0][0](x)
            out = self.forward_fn(batch)
            for i, (_, inverse) in enumerate(group):
                part = inverse(out[i * n:(i + 1) * n])
                logits = part if logits is None else logits + part
        return logits / len(views)

    # -- a preprocessed (C, Z, Y, X) array -> averaged logits (N, Z, Y, X) ------------------------------
    @torch.inference_mode()
    def predict_logits(self, image: np.ndarray) -> torch.Tensor:
        """Logits of a preprocessed image (C, Z, Y, X), on the same grid (padding removed)."""
        if image.ndim != 4 or image.shape[0] != self.in_channels:
            raise PredictionError(f"image has shape {tuple(image.shape)}; the model expects ({self.in_channels}, Z, Y, X)")
        shape = image.shape[1:]
        if min(shape) < MIN_SPATIAL_SIZE:
            raise PredictionError(
                f"volume of size {tuple(shape)} (z, y, x) is too small: every axis needs at least "
                f"{MIN_SPATIAL_SIZE} voxels for this 3D model"
            )
        pads = _symmetric_pad(shape, self.divisors, self.roi_size)
        x = torch.as_tensor(np.ascontiguousarray(image), dtype=torch.float32, device=self.device)[None]
        # F.pad takes (last-axis before, after, ...) pairs; zeros = background after normalisation.
        x = F.pad(x, [p for pair in reversed(pads) for p in pair], mode="constant", value=0.0)
        roi = list(self.roi_size)
        logits = sliding_window_inference(
            x, roi, self.sw_batch_size, self._window, overlap=self.overlap, mode=self.mode,
            padding_mode="constant", cval=0.0, sw_device=self.device, device=self.device,
            progress=self.progress and np.prod(x.shape[2:]) > WINDOW_PROGRESS_VOLUMES * np.prod(roi),
        )
        if logits.shape[1] != self.num_classes:
            raise PredictionError(f"forward_fn returned {logits.shape[1]} channels; the config says {self.num_classes} classes")
        crop = tuple(slice(a, a + s) for (a, _), s in zip(pads, shape))
        return logits[(0, slice(None)) + crop]

    def predict_image(self, image: np.ndarray, probabilities: bool = False) -> Prediction:
        """Raw (C, Z, Y, X) image -> prediction on the same grid, after the model's own preprocessing."""
        if image.ndim != 4 or image.shape[0] != self.in_channels:
            raise PredictionError(
                f"image has {image.shape[0] if image.ndim == 4 else '?'} channel(s) (shape {tuple(image.shape)}); "
                f"the model was trained with {self.in_channels}"
            )
        if min(image.shape[1:]) < MIN_SPATIAL_SIZE:
            raise PredictionError(
                f"volume of size {tuple(image.shape[1:])} (z, y, x) is too small: every axis needs at least "
                f"{MIN_SPATIAL_SIZE} voxels for this 3D model"
            )
        pre, info = preprocess_image(image, self.cfg.data)
        logits = self.predict_logits(pre)
        probs = torch.softmax(logits.float(), dim=0)
        indices = probs.argmax(dim=0).cpu().numpy().astype(np.int16)
        labels = L.indices_to_values(restore_to_original(indices, info, fill_value=0), self.label_values)
        prob_out = _restore_probabilities(probs.cpu().numpy().astype(np.float32), info) if probabilities else None
        return Prediction(labels=np.asarray(labels, dtype=np.int16), probabilities=prob_out)


def _restore_probabilities(probs: np.ndarray, info: PreprocessInfo) -> np.ndarray:
    """Paste (N, z, y, x) probabilities back; voxels outside the crop box are background with certainty."""
    out = restore_to_original(probs, info, fill_value=0.0)
    inside = np.zeros(info.original_shape, dtype=bool)
    inside[tuple(slice(s, e) for s, e in zip(info.bbox_start, info.bbox_end))] = True
    out[0][~inside] = 1.0
    return out


def plain_forward(model: torch.nn.Module) -> ForwardFn:
    """The reference path: the PyTorch model's own forward in eval mode."""
    model.eval()

    def forward(x: torch.Tensor) -> torch.Tensor:
        return model(x)

    return forward


def describe(predictor: Predictor) -> str:
    """One line for logs: ROI, overlap, TTA and label values."""
    passes = len(T.views(predictor.tta_mode))
    return (
        f"roi {predictor.roi_size}, overlap {predictor.overlap}, {predictor.mode} weighting, "
        f"TTA {predictor.tta_mode or 'off'} ({passes} pass{'es' if passes > 1 else ''}/window), "
        f"labels {predictor.label_values}, device {predictor.device}"
    )


__all__ = [
    "Predictor", "Prediction", "PredictionError", "ForwardFn", "plain_forward", "output_label_values",
    "mirror_axes_sets", "describe", "SIZE_DIVISOR", "MIN_SPATIAL_SIZE",
]
