"""The training loss of the paper, Eq. 22: L = L_Dice + L_CE + 0.5 * L_Bdry.

All three terms are weighted by the inverse voxel frequency of each class in the current batch,
``w_c = |Omega| / (N_cls * sum_r y_{c,r})``. Choices the paper leaves open, fixed here (and in
docs/training.md):

* **Empty classes.** A class with no voxel in the batch would get an infinite weight; we give it weight 0
  (nothing to up-weight). Its false positives are still penalised: the softmax couples the classes, so
  the CE and Dice of the classes that *are* present push its probability down.
* **Normalisation of the weights.** Each term is a weighted *mean* over classes (divided by ``sum_c w_c``),
  so every term stays on its natural scale (CE in nats, Dice in [0, 1]) and the 0.5 of Eq. 22 keeps its
  meaning. The CE term is exactly ``torch.nn.functional.cross_entropy(weight=w)``.
* **Boundary band M.** A voxel is a *boundary* voxel when one of its 26 neighbours (a 3^3 cube, the
  l-infinity unit ball) has a different label; the volume's edge is not a boundary (a crop border is not
  anatomy). ``d`` is the **radius** of the dilation in the l-infinity norm: M is every voxel within
  Chebyshev distance ``d`` of a boundary voxel, i.e. the boundary dilated by a (2d+1)^3 cube (7^3 for
  d = 3), computed with ``max_pool3d``. One band is shared by all classes.
* **Boundary term.** Per class, the binary cross-entropy between the softmax probability p_c and the
  one-hot target y_c, summed over M and divided by |M|, then the class-weighted mean. An empty band
  (a batch with a single label) gives 0.

The Dice term is MONAI's :class:`~monai.losses.DiceLoss` (soft Dice over the batch, per class); the band,
the weights and the masked BCE are new code (no library offers them).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from torch import nn


def inverse_frequency_weights(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``w_c = |Omega| / (N_cls * count_c)`` over the whole batch; 0 for classes absent from it.

    Args:
        target: (B, 1, *S) or (B, *S) integer class indices.
        num_classes: N_cls.
    """
    flat = target.reshape(-1).long()
    if flat.numel() == 0 or int(flat.min()) < 0 or int(flat.max()) >= num_classes:
        raise ValueError(f"loss: target holds class indices outside 0..{num_classes - 1}")
    counts = torch.bincount(flat, minlength=num_classes).double()
    total = float(target.numel())
    weights = torch.where(counts > 0, total / (num_classes * counts.clamp(min=1.0)), torch.zeros_like(counts))
    return weights.float()


def _cube_reduce(x: torch.Tensor, radius: int, take_max: bool) -> torch.Tensor:
    """Max (or min) over the (2r+1)^3 cube around each voxel of a (B, C, D, H, W) tensor, the outside of the
    volume ignored: per axis, 2r elementwise ``torch.maximum`` / ``torch.minimum`` of shifted views of a padded copy.

    Separable, so exact; works in any dtype (integer labels included). On this CPU it measured 4x faster than
    ``F.max_pool3d`` in float32 and ~10x in int8 (``max_pool3d`` has no integer kernel and computes indices).
    """
    if x.is_floating_point():
        fill = float("-inf") if take_max else float("inf")
    else:
        info = torch.iinfo(x.dtype)
        fill = info.min if take_max else info.max
    op = torch.maximum if take_max else torch.minimum
    for axis in (2, 3, 4):
        n = x.shape[axis]
        pad = [0] * 6
        pad[2 * (4 - axis)] = pad[2 * (4 - axis) + 1] = radius
        padded = F.pad(x, pad, value=fill)
        out = padded.narrow(axis, 0, n).clone()
        for k in range(1, 2 * radius + 1):
            op(out, padded.narrow(axis, k, n), out=out)
        x = out
    return x


def cube_max(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Max over the (2r+1)^3 cube around each voxel (-inf padding): equals ``F.max_pool3d(x, 2r+1, 1, r)``."""
    return _cube_reduce(x, radius, take_max=True)


def _small_int_labels(target: torch.Tensor) -> torch.Tensor:
    """Class indices in the narrowest integer dtype that holds them (less memory traffic for the band)."""
    if target.numel() and int(target.max()) <= torch.iinfo(torch.int8).max and int(target.min()) >= 0:
        return target.to(torch.int8)
    return target.to(torch.int32)


def boundary_voxels(target: torch.Tensor) -> torch.Tensor:
    """Voxels with a 26-neighbour of another label, as a bool tensor shaped like ``target`` (B, 1, *S)."""
    t = _small_int_labels(target)
    # max/min over the 3^3 neighbourhood, the volume edge left out, so the edge is not a boundary.
    return _cube_reduce(t, 1, take_max=True) != _cube_reduce(t, 1, take_max=False)


def boundary_band(target: torch.Tensor, radius: int = 3) -> torch.Tensor:
    """The band M: voxels within l-infinity distance ``radius`` of a boundary voxel (bool, (B, 1, *S))."""
    if radius < 0:
        raise ValueError(f"boundary dilation radius must be >= 0, got {radius}")
    edges = boundary_voxels(target)
    if radius == 0:
        return edges
    return _cube_reduce(edges.to(torch.uint8), radius, take_max=True) > 0


class LightMedSegLoss(nn.Module):
    """Eq. 22 with inverse-frequency class weights recomputed on every batch.

    Args:
        num_classes: N_cls (channels of the logits).
        dice, ce, boundary: weights of the three terms (1, 1, 0.5 in the paper).
        boundary_dilation: radius d of the l-infinity dilation of the class boundaries (3).
        class_weighting: ``inverse_frequency`` (paper) or ``none`` (all w_c = 1, for ablations).
        class_emphasis: optional fixed factors, one per class, multiplied into the w_c of every term (issue 28's
            emphasis on a hard class, e.g. ``[1, 2, 1, 1]`` doubles ACDC's RV); None: all 1 (the paper).

    ``forward(logits, target)`` takes logits (B, N_cls, *S) and class indices (B, 1, *S) and returns the
    total loss; the last terms are kept in :attr:`last_terms` (detached tensors) for logging.
    """

    def __init__(
        self,
        num_classes: int,
        dice: float = 1.0,
        ce: float = 1.0,
        boundary: float = 0.5,
        boundary_dilation: int = 3,
        class_weighting: str = "inverse_frequency",
        class_emphasis: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if class_weighting not in ("inverse_frequency", "none"):
            raise ValueError(f"loss.class_weighting must be 'inverse_frequency' or 'none', got {class_weighting!r}")
        if class_emphasis is not None and (len(class_emphasis) != num_classes
                                           or any(not float(f) > 0 for f in class_emphasis)):
            raise ValueError(f"loss.class_emphasis must be {num_classes} positive factors (one per class), "
                             f"got {list(class_emphasis)}")
        self.emphasis = None if class_emphasis is None else torch.tensor([float(f) for f in class_emphasis])
        if boundary_dilation < 0:
            raise ValueError(f"loss.boundary_dilation must be >= 0, got {boundary_dilation}")
        self.num_classes = int(num_classes)
        self.w_dice, self.w_ce, self.w_bdry = float(dice), float(ce), float(boundary)
        self.radius = int(boundary_dilation)
        self.class_weighting = class_weighting
        # Soft Dice per class, pooled over the batch (batch=True) as nnU-Net does; weighting is ours.
        self.dice = DiceLoss(softmax=True, to_onehot_y=True, batch=True, reduction="none",
                             smooth_nr=1e-5, smooth_dr=1e-5)
        self.last_terms: dict[str, torch.Tensor] = {}

    @classmethod
    def from_config(cls, num_classes: int, loss_cfg: dict | None) -> "LightMedSegLoss":
        """Build from the ``train.loss`` section of a preset."""
        cfg = dict(loss_cfg or {})
        known = {"dice", "ce", "boundary", "boundary_dilation", "class_weighting", "class_emphasis"}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ValueError(f"train.loss: unknown keys {unknown}; expected some of {sorted(known)}")
        return cls(num_classes, **cfg)

    def class_weights(self, target: torch.Tensor) -> torch.Tensor:
        """w_c of Eq. 22 for this batch, times the fixed ``class_emphasis`` when one is set."""
        if self.class_weighting == "none":
            w = torch.ones(self.num_classes, device=target.device)
        else:
            w = inverse_frequency_weights(target, self.num_classes).to(target.device)
        return w if self.emphasis is None else w * self.emphasis.to(target.device)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape[1] != self.num_classes:
            raise ValueError(f"loss: logits have {logits.shape[1]} channels, expected {self.num_classes}")
        if target.dim() == logits.dim() - 1:
            target = target.unsqueeze(1)
        if target.shape[2:] != logits.shape[2:] or target.shape[0] != logits.shape[0]:
            raise ValueError(f"loss: target shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}")
        logits = logits.float()  # the loss always runs in fp32, also under autocast
        target = target.long()
        w = self.class_weights(target)
        w_sum = w.sum().clamp(min=1e-12)

        dice_per_class = self.dice(logits, target).reshape(-1)  # (N_cls,)
        l_dice = (w * dice_per_class).sum() / w_sum
        l_ce = F.cross_entropy(logits, target[:, 0], weight=w)

        band = boundary_band(target, self.radius)  # (B, 1, *S)
        band_size = band.sum()
        if self.w_bdry != 0 and band_size > 0:
            log_p = F.log_softmax(logits, dim=1)
            onehot = F.one_hot(target[:, 0], self.num_classes).movedim(-1, 1).float()
            # log(1 - p) with p clamped below 1 so a confident voxel gives a finite term (like torch's BCE).
            log_1mp = torch.log1p(-log_p.exp().clamp(max=1.0 - 1e-6))
            bce = -(onehot * log_p + (1.0 - onehot) * log_1mp)  # (B, N_cls, *S)
            per_class = (bce * band).sum(dim=(0, *range(2, bce.dim()))) / band_size
            l_bdry = (w * per_class).sum() / w_sum
        else:
            l_bdry = logits.sum() * 0.0

        total = self.w_dice * l_dice + self.w_ce * l_ce + self.w_bdry * l_bdry
        self.last_terms = {"dice": l_dice.detach(), "ce": l_ce.detach(), "boundary": l_bdry.detach()}
        return total


def deep_supervision_weights(num_outputs: int) -> list[float]:
    """nnU-Net's weights for outputs from the finest to the coarsest: 1, 1/2, 1/4, ..., normalised to sum 1."""
    raw = [0.5**i for i in range(num_outputs)]
    return [w / sum(raw) for w in raw]


class DeepSupervisionLoss(nn.Module):
    """Eq. 22 on the full-resolution logits plus, when the network returns a list (deep supervision,
    not in the paper), on each coarser output against the nearest-neighbour-downsampled target.

    A plain tensor is passed straight to the wrapped loss, so the wrapper is a no-op without deep
    supervision. ``last_terms`` are those of the full-resolution output (what the logs show).
    """

    def __init__(self, loss: LightMedSegLoss) -> None:
        super().__init__()
        self.loss = loss

    @property
    def last_terms(self) -> dict[str, torch.Tensor]:
        return self.loss.last_terms

    def forward(self, outputs: torch.Tensor | list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            return self.loss(outputs, target)
        if target.dim() == outputs[0].dim() - 1:
            target = target.unsqueeze(1)
        weights = deep_supervision_weights(len(outputs))
        total = outputs[0].new_zeros((), dtype=torch.float32)
        full_terms: dict[str, torch.Tensor] = {}
        for i, (w, logits) in enumerate(zip(weights, outputs)):
            t = target if i == 0 else F.interpolate(target.float(), size=logits.shape[2:], mode="nearest").long()
            total = total + w * self.loss(logits, t)
            if i == 0:
                full_terms = self.loss.last_terms
        self.loss.last_terms = full_terms
        return total
