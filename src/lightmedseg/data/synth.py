"""Seeded synthetic 4-modality brain-tumour phantoms in the canonical layout (for the demo and tests).

Each case is a skull-stripped "brain": an ellipsoid with grey-matter rim, white matter, two
ventricles, a tumour made of nested sub-regions (oedema around an enhancing shell around a necrotic
core, labels 2 / 4 / 1 in the BraTS convention), per-modality tissue contrasts that mimic T1, T1ce, T2
and FLAIR, a smooth multiplicative bias field and Gaussian noise. Everything is vectorised numpy, so
8 cases of 64^3 take a few seconds. This generator is new code (no library offers such phantoms).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage

from lightmedseg.data import labels as L
from lightmedseg.data.io import ImageGeometry
from lightmedseg.data.geometry_checks import check_allocation
from lightmedseg.data.layout import DatasetWriter, staged_output

# Memory a phantom needs while it is drawn (4 float32 channels, coordinate grids, label): a rough upper bound.
SYNTH_BYTES_PER_VOXEL = 64

# Tissue -> mean intensity in (T1, T1ce, T2, FLAIR); relative values loosely follow MRI contrasts.
_TISSUE = {
    "csf": (0.20, 0.25, 1.00, 0.15),
    "gm": (0.55, 0.60, 0.65, 0.60),
    "wm": (0.80, 0.80, 0.45, 0.50),
    "ed": (0.50, 0.55, 0.90, 0.95),
    "et": (0.55, 1.25, 0.70, 0.80),
    "ncr": (0.30, 0.35, 0.85, 0.55),
}


def _smooth_field(rng: np.random.Generator, shape: Sequence[int], coarse: int = 4, terms: int = 8) -> np.ndarray:
    """Low-frequency random field with standard deviation about 0.5: a sum of random plane waves
    of at most about ``coarse / 2`` cycles across the volume, evaluated on a 4x coarser grid and
    upsampled linearly (the field is smooth, so this loses nothing visible and is ~50x cheaper)."""
    shape = tuple(int(s) for s in shape)
    small = tuple(max(4, s // 4) for s in shape)
    axes = [np.linspace(0.0, 1.0, s, dtype=np.float32) for s in small]
    field = np.zeros(small, np.float32)
    amp = 0.5 * np.sqrt(2.0 / terms)
    for _ in range(terms):
        fz, fy, fx = rng.normal(0.0, coarse / 4.0, 3) * 2.0 * np.pi
        phase = rng.uniform(0.0, 2.0 * np.pi)
        field += amp * np.cos(fz * axes[0][:, None, None] + fy * axes[1][None, :, None]
                              + fx * axes[2][None, None, :] + phase)
    field = ndimage.zoom(field, [s / m for s, m in zip(shape, small)], order=1, mode="nearest", grid_mode=True)
    return field[: shape[0], : shape[1], : shape[2]]


def make_phantom(shape: Sequence[int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One phantom: image (4, Z, Y, X) float32 and label (Z, Y, X) int16 with values {0, 1, 2, 4}."""
    shape = tuple(int(s) for s in shape)
    z, y, x = np.meshgrid(*[np.linspace(-1.0, 1.0, s, dtype=np.float32) for s in shape], indexing="ij")
    # Brain ellipsoid with a bumpy outline (gyri-like), slightly off-centre.
    radii = rng.uniform(0.70, 0.85, 3).astype(np.float32)
    centre = rng.uniform(-0.05, 0.05, 3).astype(np.float32)
    r_brain = np.sqrt(((z - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2
                      + ((x - centre[2]) / radii[2]) ** 2)
    r_brain = r_brain + 0.04 * _smooth_field(rng, shape, 6)
    brain = r_brain < 1.0
    masks = {"gm": brain & (r_brain > 0.8), "wm": brain & (r_brain <= 0.8)}
    # Two ventricles (CSF) either side of the midline.
    vent = np.zeros(shape, bool)
    for side in (-1.0, 1.0):
        vr = np.array([0.18, 0.12, 0.08]) * rng.uniform(0.8, 1.2, 3)
        vc = centre + np.array([0.05, -0.05, side * 0.12], dtype=np.float32)
        vent |= (((z - vc[0]) / vr[0]) ** 2 + ((y - vc[1]) / vr[1]) ** 2 + ((x - vc[2]) / vr[2]) ** 2) < 1.0
    masks["csf"] = vent & brain
    # Tumour: a deformed sphere inside the brain; radius >= 3 voxels so every sub-region exists.
    min_r = 3.5 * 2.0 / min(shape)
    t_rad = max(float(rng.uniform(0.30, 0.40)), 2.2 * min_r)
    direction = rng.standard_normal(3)
    direction /= np.linalg.norm(direction)
    t_c = centre + direction * rng.uniform(0.10, 0.25) * radii
    r_t = np.sqrt((z - t_c[0]) ** 2 + (y - t_c[1]) ** 2 + (x - t_c[2]) ** 2) / t_rad
    r_t = r_t * (1.0 + 0.15 * _smooth_field(rng, shape, 4))
    core_frac = rng.uniform(0.55, 0.7)
    ncr_frac = core_frac * rng.uniform(0.45, 0.55)
    label = np.zeros(shape, np.int16)
    label[(r_t < 1.0) & brain] = 2
    label[(r_t < core_frac) & brain] = 4
    label[(r_t < ncr_frac) & brain] = 1
    order = [("wm", masks["wm"]), ("gm", masks["gm"]), ("csf", masks["csf"]),
             ("ed", label == 2), ("et", label == 4), ("ncr", label == 1)]
    image = np.zeros((4,) + shape, np.float32)
    for name, m in order:  # later tissues overwrite earlier ones
        image[:, m] = np.asarray(_TISSUE[name], np.float32)[:, None]
    # Per-modality contrast jitter, partial-volume blur, bias field and noise; background stays 0.
    for c in range(4):
        vol = image[c] * rng.uniform(0.9, 1.1)
        vol = ndimage.gaussian_filter(vol, 0.6)
        vol = vol * np.exp(0.15 * _smooth_field(rng, shape, 3))
        vol = vol + rng.normal(0.0, 0.03, shape).astype(np.float32)
        image[c] = np.where(brain, np.maximum(vol, 1e-3), 0.0) * 1000.0  # MRI-like arbitrary units
    return image, label


def make_synthetic_dataset(dst: str | os.PathLike, num_cases: int = 8, seed: int = 0,
                           shape: Sequence[int] = (64, 64, 64), overwrite: bool = False) -> Path:
    """Write ``num_cases`` phantoms (case IDs ``synth_000``...) to ``dst`` in the canonical layout."""
    if num_cases < 1:
        raise ValueError(f"num_cases must be >= 1, got {num_cases}")
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 16:
        raise ValueError(f"shape must be three sizes >= 16 (Z Y X), got {shape}")
    check_allocation(float(np.prod(shape, dtype=np.float64)), SYNTH_BYTES_PER_VOXEL, f"a synthetic case of shape {list(shape)}")
    children = np.random.SeedSequence(seed).spawn(num_cases)
    geometry = ImageGeometry.from_spacing(shape, (1.0, 1.0, 1.0))
    with staged_output(dst, overwrite=overwrite) as tmp:
        writer = DatasetWriter(tmp, list(L.BRATS_MODALITIES), L.brats_labels_for("brats2021"), "brats")
        for i, child in enumerate(children):
            image, label = make_phantom(shape, np.random.default_rng(child))
            writer.write_case(f"synth_{i:03d}", image, label, geometry)
        writer.finish("SyntheticBraTS", "synth", description="seeded synthetic brain-tumour phantoms",
                      synth={"seed": seed, "shape": list(shape), "num_cases": num_cases})
    return Path(dst)
