"""Post-processing of label maps: keep the largest connected component of each chosen class.

The operation of MONAI's ``KeepLargestConnectedComponent(applied_labels=..., independent=True,
connectivity=3)``, computed with SimpleITK's ``ConnectedComponent`` (fully connected: 26-neighbourhood) and
``RelabelComponent`` (components sorted by size). MONAI's own needs scikit-image or cupy, and scipy is not a
hard dependency; SimpleITK is, so the shipped models' default post-processing works on a bare install.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import SimpleITK as sitk


def keep_largest_component(labels: np.ndarray, values: Iterable[int]) -> np.ndarray:
    """``labels`` with every voxel of class ``v`` (for each ``v`` in ``values``) outside that class's largest
    26-connected component set to background (0)."""
    out = np.array(labels, copy=True)
    for value in values:
        mask = labels == value
        if not mask.any():
            continue
        components = sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8)), True)
        by_size = sitk.GetArrayFromImage(sitk.RelabelComponent(components, sortByObjectSize=True))
        out[mask & (by_size != 1)] = 0
    return out


__all__ = ["keep_largest_component"]
