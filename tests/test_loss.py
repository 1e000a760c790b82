"""Properties of the Eq. 22 loss: weights, band, perfect prediction, empty classes, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from lightmedseg.training.loss import (
    LightMedSegLoss,
    boundary_band,
    boundary_voxels,
    inverse_frequency_weights,
)

torch.set_num_threads(1)


def _confident_logits(target: torch.Tensor, num_classes: int, margin: float = 30.0) -> torch.Tensor:
    onehot = torch.nn.functional.one_hot(target[:, 0], num_classes).movedim(-1, 1).float()
    return onehot * margin - margin / 2


def _blob_target(size: int = 16) -> torch.Tensor:
    t = torch.zeros(2, 1, size, size, size, dtype=torch.long)
    t[0, 0, 4:12, 4:12, 4:12] = 1
    t[0, 0, 6:10, 6:10, 6:10] = 2
    t[1, 0, 2:7, 3:9, 5:11] = 3
    return t


def test_weights_exactly_as_defined() -> None:
    t = _blob_target()
    w = inverse_frequency_weights(t, 4)
    counts = torch.tensor([(t == c).sum().item() for c in range(4)], dtype=torch.float64)
    expected = t.numel() / (4 * counts)
    assert torch.allclose(w.double(), expected, rtol=1e-6)
    # The rarest class gets the largest weight, and w_c * count_c is the same for every class.
    assert torch.allclose((w.double() * counts), torch.full((4,), t.numel() / 4, dtype=torch.float64), rtol=1e-6)


def test_absent_class_gets_zero_weight() -> None:
    t = torch.zeros(1, 1, 8, 8, 8, dtype=torch.long)
    t[..., :4] = 1
    w = inverse_frequency_weights(t, 3)
    assert w[2] == 0 and torch.allclose(w[:2], torch.tensor([512 / (3 * 256)] * 2))


def test_out_of_range_target_is_rejected() -> None:
    with pytest.raises(ValueError, match="outside 0..2"):
        inverse_frequency_weights(torch.full((1, 1, 2, 2, 2), 3), 3)


def test_boundary_and_band_on_a_plane_interface() -> None:
    # Labels 0 for x < 8 and 1 for x >= 8: boundary voxels are x = 7 and x = 8; band (d = 3) is x = 4..11.
    t = torch.zeros(1, 1, 5, 5, 16, dtype=torch.long)
    t[..., 8:] = 1
    edge = boundary_voxels(t)[0, 0]
    assert edge[..., 7].all() and edge[..., 8].all() and edge.sum() == 2 * 25
    band = boundary_band(t, radius=3)[0, 0]
    xs = torch.nonzero(band.any(dim=0).any(dim=0)).flatten().tolist()
    assert xs == list(range(4, 12))
    assert band[..., 4:12].all()


def test_band_of_a_single_voxel_is_a_9_cube() -> None:
    # One foreground voxel: it and its 26 neighbours are boundary (3^3), dilated by radius 3 -> 9^3 cube.
    t = torch.zeros(1, 1, 15, 15, 15, dtype=torch.long)
    t[0, 0, 7, 7, 7] = 1
    assert boundary_voxels(t).sum() == 27
    band = boundary_band(t, radius=3)[0, 0]
    assert band.sum() == 9**3 and band[3:12, 3:12, 3:12].all()
    assert boundary_band(t, radius=0).sum() == 27


def test_volume_edge_is_not_a_boundary() -> None:
    t = torch.ones(1, 1, 6, 6, 6, dtype=torch.long)
    assert not boundary_voxels(t).any()


def test_near_zero_on_perfect_confident_prediction() -> None:
    t = _blob_target()
    loss_fn = LightMedSegLoss(4)
    loss = loss_fn(_confident_logits(t, 4), t)
    assert loss.item() < 1e-4
    assert all(v.item() < 1e-4 for v in loss_fn.last_terms.values())
    # A wrong prediction (classes rolled) is far from zero.
    wrong = loss_fn(_confident_logits((t + 1) % 4, 4), t)
    assert wrong.item() > 1.0


def test_total_combines_terms_with_paper_weights() -> None:
    torch.manual_seed(0)
    t = _blob_target()
    logits = torch.randn(2, 4, 16, 16, 16)
    loss_fn = LightMedSegLoss(4)
    total = loss_fn(logits, t)
    terms = loss_fn.last_terms
    expected = terms["dice"] + terms["ce"] + 0.5 * terms["boundary"]
    assert torch.isclose(total, expected, rtol=1e-5)
    assert terms["boundary"] > 0
    # CE term equals torch's class-weighted cross-entropy with the batch weights.
    w = inverse_frequency_weights(t, 4)
    ce = torch.nn.functional.cross_entropy(logits, t[:, 0], weight=w)
    assert torch.isclose(terms["ce"], ce, rtol=1e-5)


def test_boundary_term_only_sees_the_band() -> None:
    # Changing logits outside the band must not change the boundary term.
    torch.manual_seed(1)
    t = torch.zeros(1, 1, 16, 16, 24, dtype=torch.long)
    t[..., 12:] = 1
    logits = torch.randn(1, 2, 16, 16, 24)
    loss_fn = LightMedSegLoss(2)
    loss_fn(logits, t)
    before = loss_fn.last_terms["boundary"].clone()
    band = boundary_band(t, 3)
    changed = logits.clone()
    changed[band.expand_as(changed).logical_not()] = 50.0
    loss_fn(changed, t)
    assert torch.isclose(loss_fn.last_terms["boundary"], before)
    changed_in = logits.clone()
    changed_in[band.expand_as(changed_in)] = 50.0
    loss_fn(changed_in, t)
    assert not torch.isclose(loss_fn.last_terms["boundary"], before)


def test_finite_with_empty_classes_and_single_label_batch() -> None:
    torch.manual_seed(2)
    loss_fn = LightMedSegLoss(4)
    only_bg = torch.zeros(1, 1, 8, 8, 8, dtype=torch.long)
    logits = torch.randn(1, 4, 8, 8, 8, requires_grad=True)
    loss = loss_fn(logits, only_bg)
    assert math.isfinite(loss.item()) and loss_fn.last_terms["boundary"] == 0  # empty band -> 0
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    two = torch.zeros(1, 1, 8, 8, 8, dtype=torch.long)
    two[..., 4:] = 2  # classes 1 and 3 absent
    assert math.isfinite(loss_fn(logits, two).item())


def test_gradient_flows_to_every_class_channel() -> None:
    torch.manual_seed(3)
    t = _blob_target()
    logits = torch.randn(2, 4, 16, 16, 16, requires_grad=True)
    LightMedSegLoss(4)(logits, t).backward()
    g = logits.grad
    assert g is not None and torch.isfinite(g).all()
    assert all(g[:, c].abs().sum() > 0 for c in range(4))


def test_runs_under_bf16_autocast_in_fp32() -> None:
    t = _blob_target(16)
    logits = torch.randn(2, 4, 16, 16, 16).bfloat16()
    loss = LightMedSegLoss(4)(logits, t)
    assert loss.dtype == torch.float32 and math.isfinite(loss.item())


def test_from_config_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="unknown keys"):
        LightMedSegLoss.from_config(4, {"dice": 1.0, "focal": 2.0})
    loss = LightMedSegLoss.from_config(4, {"dice": 1.0, "ce": 1.0, "boundary": 0.5, "boundary_dilation": 3,
                                           "class_weighting": "inverse_frequency"})
    assert loss.radius == 3 and loss.w_bdry == 0.5


def test_separable_cube_max_equals_max_pool3d() -> None:
    import torch.nn.functional as F

    from lightmedseg.training.loss import cube_max

    x = torch.randn(2, 3, 9, 11, 7)
    for r in (1, 2, 3):
        assert torch.equal(cube_max(x, r), F.max_pool3d(x, 2 * r + 1, 1, r))


def test_class_emphasis_scales_one_class_in_every_term() -> None:
    """Issue 28's emphasis on a hard class: fixed factors times the inverse-frequency w_c, in all three terms."""
    torch.manual_seed(0)
    t = torch.randint(0, 4, (2, 1, 8, 8, 8))
    logits = torch.randn(2, 4, 8, 8, 8)
    plain, rv = LightMedSegLoss(4), LightMedSegLoss(4, class_emphasis=[1, 3, 1, 1])
    assert torch.allclose(rv.class_weights(t), plain.class_weights(t) * torch.tensor([1.0, 3.0, 1.0, 1.0]))
    assert not torch.isclose(rv(logits, t), plain(logits, t))
    assert torch.isclose(LightMedSegLoss(4, class_emphasis=[2, 2, 2, 2])(logits, t), plain(logits, t))  # scale-free
    with pytest.raises(ValueError, match="4 positive factors"):
        LightMedSegLoss(4, class_emphasis=[1, 0, 1, 1])


def test_boundary_band_equals_max_pool_definition() -> None:
    """The shifted-maximum band on integer labels is the max_pool3d definition on float labels, voxel for voxel."""
    import torch.nn.functional as F

    from lightmedseg.training.loss import _cube_reduce

    torch.manual_seed(0)
    for classes in (2, 4, 300):  # 300: labels beyond int8
        t = torch.randint(0, classes, (2, 1, 5, 9, 7))
        f = t.float()
        edges = F.max_pool3d(f, 3, 1, 1) != -F.max_pool3d(-f, 3, 1, 1)
        for r in (0, 1, 3):
            ref = edges if r == 0 else F.max_pool3d(edges.float(), 2 * r + 1, 1, r) > 0
            assert torch.equal(boundary_band(t, r), ref)
    x = torch.randint(-5, 5, (1, 2, 4, 6, 5), dtype=torch.int16)
    assert torch.equal(_cube_reduce(x, 1, take_max=False).float(), -F.max_pool3d(-x.float(), 3, 1, 1))
