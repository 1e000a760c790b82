"""Dice / HD95 in both modes against hand-worked examples and an independent brute-force computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from lightmedseg.evaluation.metrics import dice_score, hd95, image_diagonal_mm, mask_metrics


def _border_bruteforce(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with at least one 6-neighbour outside it (outside the array counts as outside)."""
    padded = np.pad(mask, 1)
    inner = padded[1:-1, 1:-1, 1:-1].copy()
    for axis in range(3):
        for shift in (-1, 1):
            inner &= np.roll(padded, shift, axis=axis)[1:-1, 1:-1, 1:-1]
    return np.argwhere(mask & ~inner).astype(float)


def _directed(a: np.ndarray, b: np.ndarray, spacing) -> np.ndarray:
    pa, pb = _border_bruteforce(a) * spacing, _border_bruteforce(b) * spacing
    return cdist(pa, pb).min(axis=1)


def _line_case():
    ref = np.zeros((3, 3, 12), bool)
    ref[1, 1, 0:10] = True  # a thin line: every voxel is a border voxel
    pred = np.zeros_like(ref)
    pred[1, 1, 0] = True
    return pred, ref


def test_dice_hand_worked():
    pred = np.zeros((4, 4, 4), bool)
    ref = np.zeros_like(pred)
    pred[0, 0, 0:4] = True  # 4 voxels
    ref[0, 0, 2:4] = True  # 2 voxels, both inside pred
    assert dice_score(pred, ref, "strict") == pytest.approx(2 * 2 / 6)
    assert dice_score(pred, ref, "nnformer") == pytest.approx(2 * 2 / 6)


def test_hd95_hand_worked_pooled_vs_directed():
    pred, ref = _line_case()
    # directed distances: pred->ref = [0]; ref->pred = [0, 1, ..., 9]
    # nnformer (medpy): 95th percentile of the 11 pooled values [0, 0, 1, ..., 9] -> 8 + 0.5 * (9 - 8) = 8.5
    assert hd95(pred, ref, None, "nnformer") == pytest.approx(8.5, abs=1e-5)
    # strict (MONAI): max(q95([0]), q95([0..9]) = 0.95 * 9 = 8.55), times the spacing along the line axis
    assert hd95(pred, ref, (1.0, 1.0, 1.0), "strict") == pytest.approx(8.55, abs=1e-5)
    assert hd95(pred, ref, (3.0, 5.0, 2.0), "strict") == pytest.approx(17.1, abs=1e-4)
    # nnformer ignores spacing (the scripts call medpy's hd95 without voxelspacing)
    assert hd95(pred, ref, (3.0, 5.0, 2.0), "nnformer") == pytest.approx(8.5, abs=1e-5)


def test_two_single_voxels_anisotropic():
    a = np.zeros((5, 5, 5), bool)
    b = np.zeros_like(a)
    a[0, 2, 2] = True
    b[3, 2, 2] = True  # 3 voxels apart along axis 0
    assert hd95(a, b, (2.5, 1.0, 1.0), "strict") == pytest.approx(7.5, abs=1e-5)
    assert hd95(a, b, (2.5, 1.0, 1.0), "nnformer") == pytest.approx(3.0, abs=1e-5)
    assert dice_score(a, b, "strict") == 0.0


def test_empty_masks_both_modes():
    shape, spacing = (4, 5, 6), (1.0, 2.0, 3.0)
    empty = np.zeros(shape, bool)
    full = np.zeros(shape, bool)
    full[1:3, 1:3, 1:3] = True
    # both empty
    assert math.isnan(dice_score(empty, empty, "strict"))
    assert math.isnan(hd95(empty, empty, spacing, "strict"))
    assert dice_score(empty, empty, "nnformer") == 1.0
    assert hd95(empty, empty, spacing, "nnformer") == 0.0
    # exactly one empty (either side)
    diag = math.sqrt(4**2 + 10**2 + 18**2)
    assert image_diagonal_mm(shape, spacing) == pytest.approx(diag)
    for p, r in ((empty, full), (full, empty)):
        assert dice_score(p, r, "strict") == 0.0
        assert hd95(p, r, spacing, "strict") == pytest.approx(diag)
        assert dice_score(p, r, "nnformer") == 0.0
        assert hd95(p, r, spacing, "nnformer") == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_blobs_match_bruteforce(seed):
    rng = np.random.default_rng(seed)
    shape = (9, 11, 7)
    spacing = np.array([3.0, 0.8, 1.7])
    a = rng.random(shape) > 0.7
    b = rng.random(shape) > 0.6
    a[0, :, :] = True  # touches the image border: border voxels there must count as surface
    d_ab, d_ba = _directed(a, b, spacing), _directed(b, a, spacing)
    strict = max(np.percentile(d_ab, 95), np.percentile(d_ba, 95))
    assert hd95(a, b, tuple(spacing), "strict") == pytest.approx(strict, rel=1e-5)
    v_ab, v_ba = _directed(a, b, np.ones(3)), _directed(b, a, np.ones(3))
    pooled = np.percentile(np.concatenate([v_ab, v_ba]), 95)
    assert hd95(a, b, tuple(spacing), "nnformer") == pytest.approx(pooled, rel=1e-5)
    inter = np.logical_and(a, b).sum()
    assert dice_score(a, b, "strict") == pytest.approx(2 * inter / (a.sum() + b.sum()))


def test_mask_metrics_counts_and_bad_input():
    a = np.zeros((4, 4, 4), bool)
    a[1, 1, 1] = True
    m = mask_metrics(a, a, (1.0, 1.0, 1.0), "strict")
    assert m == {"dice": 1.0, "hd95": 0.0, "pred_voxels": 1, "ref_voxels": 1}
    with pytest.raises(ValueError, match="unknown evaluation mode"):
        dice_score(a, a, "mm")
    with pytest.raises(ValueError, match="shapes differ"):
        hd95(a, a[:3], None, "strict")
