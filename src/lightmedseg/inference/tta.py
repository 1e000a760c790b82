"""Test-time augmentation of one sliding window: the views a window is predicted in, and their inverses.

Two sets, each averaged over its views' logits:

* ``mirror`` - the window and its 7 mirror images (all non-empty subsets of the 3 spatial axes), as
  nnU-Net does.
* ``rot90`` - the 8 in-plane symmetries of a square (rotations by 0, 90, 180 and 270 degrees about the
  slice axis, each with and without a mirror image along the last axis): the dihedral group D4 of the
  (H, W) plane. Meant for models trained with in-plane rotation over the full circle, like the shipped
  ``acdc``; it needs a window whose two in-plane sizes are equal, since a 90-degree rotation swaps them.

Written here rather than with MONAI's ``TestTimeAugmentation`` (random transforms, inverted through
MetaTensors, a whole volume at a time): these are fixed, exactly invertible tensor operations on each
window, where the sliding window already is.
"""

from __future__ import annotations

import itertools
from typing import Callable, Sequence

import torch

from lightmedseg.inference.options import DEFAULT_TTA_MODE, TTA_MODES, TTA_PASSES

SPATIAL_DIMS = (2, 3, 4)  # (D, H, W) of an (N, C, D, H, W) window
IN_PLANE_DIMS = (3, 4)  # (H, W): the plane of a slice; D is the slice axis

View = tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]


def tta_mode(value: bool | str | None) -> str | None:
    """``True`` -> the default mode, ``False``/``None`` -> None (no TTA), a mode name -> itself; else an error."""
    if value is None or value is False:
        return None
    if value is True:
        return DEFAULT_TTA_MODE
    if isinstance(value, str) and value in TTA_MODES:
        return value
    raise ValueError(f"test-time augmentation {value!r}: expected true, false or one of {list(TTA_MODES)}")


def mirror_axes_sets(axes: Sequence[int] = SPATIAL_DIMS) -> list[tuple[int, ...]]:
    """All non-empty subsets of the spatial axes (7 flips in 3D), like nnU-Net's mirroring TTA."""
    return [c for r in range(1, len(axes) + 1) for c in itertools.combinations(axes, r)]


def _flip(dims: tuple[int, ...]) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda t: torch.flip(t, dims) if dims else t


def views(mode: str | None) -> list[View]:
    """``(transform, inverse)`` pairs, the identity first; one identity view when ``mode`` is None."""
    identity: View = (lambda t: t, lambda t: t)
    if mode is None:
        return [identity]
    if mode == "mirror":
        return [identity] + [(_flip(d), _flip(d)) for d in mirror_axes_sets()]
    if mode == "rot90":
        out = []
        for k, mirrored in itertools.product(range(4), (False, True)):
            flip = _flip((IN_PLANE_DIMS[1],) if mirrored else ())
            out.append((lambda t, k=k, flip=flip: flip(torch.rot90(t, k, IN_PLANE_DIMS)),
                        lambda t, k=k, flip=flip: torch.rot90(flip(t), -k, IN_PLANE_DIMS)))
        return out
    raise ValueError(f"test-time augmentation {mode!r}: expected one of {list(TTA_MODES)}")


def check_window(mode: str | None, roi_size: Sequence[int]) -> str | None:
    """Why ``mode`` cannot run on windows of ``roi_size`` (d, h, w), or None when it can."""
    if mode == "rot90" and roi_size[1] != roi_size[2]:
        return (f"TTA rot90 rotates each window in its plane, so the window's two in-plane sizes must be equal; "
                f"infer.roi_size is {list(roi_size)}")
    return None


__all__ = ["tta_mode", "views", "check_window", "mirror_axes_sets", "TTA_MODES", "TTA_PASSES", "DEFAULT_TTA_MODE"]
