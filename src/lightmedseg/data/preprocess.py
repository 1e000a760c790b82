"""Intensity normalisation and non-zero cropping as the paper specifies, and their inverse for predictions.

``data.normalization``:

* ``zscore_nonzero`` (BraTS): per volume, per modality z-score over the non-zero (brain) voxels;
  zero voxels stay zero (MONAI ``NormalizeIntensity(nonzero=True, channel_wise=True)``).
* ``percentile_clip_01`` (ACDC): clip to the 0.5-99.5 percentiles, rescale to [0, 1]
  (MONAI ``ScaleIntensityRangePercentiles``).
* ``none``: leave intensities unchanged.

``data.crop_nonzero``: crop to the bounding box of voxels that are non-zero in any channel; the
:class:`PreprocessInfo` keeps the box and the original shape so that :func:`restore_to_original` can
paste a prediction back into the original (Z, Y, X) grid.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping

import numpy as np
from monai.transforms import NormalizeIntensity, ScaleIntensityRangePercentiles
from monai.transforms.utils import generate_spatial_bounding_box

from lightmedseg.config import DataConfig, typed_section
from lightmedseg.data.errors import DataError

NORMALIZATIONS = ("zscore_nonzero", "percentile_clip_01", "none")


@dataclass
class PreprocessInfo:
    """What preprocessing did to one case: original (Z, Y, X) shape and the kept box [start, end)."""

    original_shape: tuple[int, int, int]
    bbox_start: tuple[int, int, int]
    bbox_end: tuple[int, int, int]
    normalization: str

    @property
    def cropped_shape(self) -> tuple[int, int, int]:
        return tuple(e - s for s, e in zip(self.bbox_start, self.bbox_end))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> "PreprocessInfo":
        return cls(tuple(d["original_shape"]), tuple(d["bbox_start"]), tuple(d["bbox_end"]), d["normalization"])


def nonzero_bbox(image: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """[start, end) of voxels non-zero in any channel of (C, Z, Y, X); the full volume if all zero."""
    start, end = generate_spatial_bounding_box(image, select_fn=lambda x: x != 0)
    if any(e <= s for s, e in zip(start, end)):
        return (0, 0, 0), tuple(int(s) for s in image.shape[1:])
    return tuple(int(s) for s in start), tuple(int(e) for e in end)


def normalize(image: np.ndarray, method: str) -> np.ndarray:
    """Apply one of :data:`NORMALIZATIONS` to a (C, Z, Y, X) float array (returns a new array)."""
    if method == "zscore_nonzero":
        out = NormalizeIntensity(nonzero=True, channel_wise=True)(image)
    elif method == "percentile_clip_01":
        out = ScaleIntensityRangePercentiles(0.5, 99.5, 0.0, 1.0, clip=True, channel_wise=True)(image)
    elif method == "none":
        out = image.copy()
    else:
        raise DataError(f"data.normalization {method!r} is unknown; expected one of {NORMALIZATIONS}")
    return np.asarray(out, dtype=np.float32)


def preprocess_case(image: np.ndarray, label: np.ndarray | None, data_cfg: Mapping | DataConfig
                    ) -> tuple[np.ndarray, np.ndarray | None, PreprocessInfo]:
    """Crop (if ``crop_nonzero``) then normalise ``image`` (C, Z, Y, X); crop ``label`` (Z, Y, X) alike.
    ``data_cfg``: the ``data`` section (a mapping is checked and read with the schema's defaults)."""
    cfg = typed_section("data", data_cfg, DataConfig)
    if image.ndim != 4:
        raise DataError(f"preprocess: expected an image of shape (C, Z, Y, X), got {image.shape}")
    shape = tuple(int(s) for s in image.shape[1:])
    if cfg.crop_nonzero:
        start, end = nonzero_bbox(image)
    else:
        start, end = (0, 0, 0), shape
    box = tuple(slice(s, e) for s, e in zip(start, end))
    method = cfg.normalization
    out = normalize(np.ascontiguousarray(image[(slice(None),) + box]), method)
    lab = None if label is None else np.ascontiguousarray(label[box])
    return out, lab, PreprocessInfo(shape, start, end, method)


def preprocess_image(image: np.ndarray, data_cfg: Mapping | DataConfig) -> tuple[np.ndarray, PreprocessInfo]:
    """Preprocess an image alone (prediction time); see :func:`preprocess_case`."""
    out, _, info = preprocess_case(image, None, data_cfg)
    return out, info


def restore_to_original(array: np.ndarray, info: PreprocessInfo, fill_value: float = 0) -> np.ndarray:
    """Paste an array (..., z, y, x) over the cropped box back into the original (Z, Y, X) grid.

    Voxels outside the box get ``fill_value`` (0 = background for labels; for per-class probabilities
    pass the result through your own background handling).
    """
    array = np.asarray(array)
    if tuple(array.shape[-3:]) != info.cropped_shape:
        raise DataError(f"restore_to_original: array shape {array.shape[-3:]} does not match the cropped "
                        f"shape {info.cropped_shape}")
    out = np.full(array.shape[:-3] + tuple(info.original_shape), fill_value, dtype=array.dtype)
    box = tuple(slice(s, e) for s, e in zip(info.bbox_start, info.bbox_end))
    out[(Ellipsis,) + box] = array
    return out
