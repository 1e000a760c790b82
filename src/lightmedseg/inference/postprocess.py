"""Post-processing of label maps: keep the largest connected component of each class.

The same operation as MONAI's ``KeepLargestConnectedComponent(applied_labels=..., independent=True,
connectivity=3)``, computed with ``scipy.ndimage.label`` (MONAI's needs scikit-image, which this package
does not depend on); scipy comes with the ``evaluate``/``train``/``all`` extras.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np


def keep_largest_component(labels: np.ndarray, values: Iterable[int]) -> np.ndarray:
    """``labels`` with every voxel of class ``v`` (for each ``v`` in ``values``) outside that class's largest
    26-connected component set to background (0). Ties keep the component found first."""
    from scipy import ndimage  # lazy: only --keep-largest needs scipy

    out = np.array(labels, copy=True)
    structure = np.ones((3,) * labels.ndim, dtype=bool)
    for value in values:
        mask = labels == value
        if not mask.any():
            continue
        components, n = ndimage.label(mask, structure=structure)
        if n <= 1:
            continue
        sizes = np.bincount(components.ravel())[1:]
        out[mask & (components != int(np.argmax(sizes)) + 1)] = 0
    return out


__all__ = ["keep_largest_component"]
