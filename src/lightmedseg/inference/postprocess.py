"""Post-processing of label maps: keep the largest connected component of each chosen class, and drop the
components of a class that touch none of its anatomical neighbours.

The operation of MONAI's ``KeepLargestConnectedComponent(applied_labels=..., independent=True,
connectivity=3)``, computed with SimpleITK's ``ConnectedComponent`` (fully connected: 26-neighbourhood) and
``RelabelComponent`` (components sorted by size). MONAI's own needs scikit-image or cupy, and scipy is not a
hard dependency; SimpleITK is, so the shipped models' default post-processing works on a bare install.
"""

from __future__ import annotations

from typing import Iterable, Mapping

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


def remove_detached_components(labels: np.ndarray, value: int, anchors: Iterable[int]) -> np.ndarray:
    """``labels`` with every 26-connected component of class ``value`` that touches no voxel of the
    ``anchors`` classes (26-neighbourhood) set to background.

    The anatomical rule behind it: a left-ventricle cavity is enclosed by myocardium, so an "LV" region
    with no myocardium next to it is a false positive, even when it is the largest LV component (which
    :func:`keep_largest_component` would keep). Nothing is removed when no component touches an anchor
    (e.g. the anchor class was not predicted at all): then there is no evidence to tell components apart.
    MONAI has no such transform; written here with SimpleITK like :func:`keep_largest_component`.
    """
    mask = labels == value
    anchor = np.isin(labels, list(anchors))
    if not mask.any() or not anchor.any():
        return np.array(labels, copy=True)
    components = sitk.GetArrayFromImage(sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8)), True))
    near = sitk.GetArrayFromImage(sitk.BinaryDilate(sitk.GetImageFromArray(anchor.astype(np.uint8)), [1, 1, 1],
                                                    sitk.sitkBox)) > 0
    touching = np.unique(components[near & mask])
    out = np.array(labels, copy=True)
    if touching.size:
        out[mask & ~np.isin(components, touching)] = 0
    return out


def postprocess_labels(labels: np.ndarray, keep_largest: Iterable[int], require_contact: Mapping[int, Iterable[int]]) -> np.ndarray:
    """A model card's post-processing in its one order: the largest component of each ``keep_largest`` class
    kept (:func:`keep_largest_component`), then each ``require_contact`` class's components touching none of
    its anchors removed (:func:`remove_detached_components`). Kept first because on a raw prediction a false
    positive can touch a stray anchor speck that the first step removes."""
    largest = list(keep_largest)
    out = keep_largest_component(labels, largest) if largest else labels
    for value, anchors in require_contact.items():
        out = remove_detached_components(out, value, anchors)
    return out


__all__ = ["keep_largest_component", "remove_detached_components", "postprocess_labels"]
