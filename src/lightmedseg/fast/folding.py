"""Exact algebraic rewrites of LightMedSeg's linear pieces, as differentiable functions of its parameters.

Every function here returns weights computed *from* the reference parameters on each call (a few
hundred multiply-adds), so the fast path keeps the checkpoint format and autograd still reaches the
original ``nn.Parameter`` objects during training. Why hand-written: neither torch nor MONAI composes
a 1x1x1 conv with a transposed conv, or collapses the paper's anchor-offset stack (Eqs. 14-15).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def pointwise_matrix(conv: nn.Conv3d) -> torch.Tensor:
    """The (out x in) matrix of a 1x1x1 convolution."""
    return conv.weight.flatten(1)


def compose_pointwise(outer: torch.Tensor, conv: nn.Conv3d) -> tuple[torch.Tensor, torch.Tensor]:
    """``outer @ conv``: weight (out x in x 1 x 1 x 1) and bias of the 1x1x1 conv ``x -> outer (W x + b)``."""
    w = outer @ pointwise_matrix(conv)
    b = outer @ conv.bias if conv.bias is not None else w.new_zeros(w.shape[0])
    return w[:, :, None, None, None], b


def compose_transpose(outer: torch.Tensor, up: nn.ConvTranspose3d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``x -> outer @ ConvT(x)``: a 1x1x1 conv after a transposed conv is a transposed conv.

    ConvTranspose3d weights are (in x out x k x k x k); the 1x1 acts on the ``out`` axis.
    """
    w = torch.einsum("oc,icdhw->iodhw", outer, up.weight)
    b = outer @ up.bias if up.bias is not None else w.new_zeros(w.shape[1])
    return w, b


def position_bias_terms(
    spb_proj: nn.Conv3d, anchors: torch.Tensor, outer: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed form of ``outer @ SPB`` (Eqs. 14-15), with no B x K x D x H x W tensor.

    P_k = R - c_k with the ramp R[d,h,w] = d/D + h/H + w/W and c_k = s_kd + s_kh + s_kw, so
    ``Conv1x1(P) = (sum_k W_ck) R + (b_c - sum_k W_ck c_k)``. Returns ``(slope, shift)``: slope (C,)
    multiplies R, shift (B x C) is a per-sample constant, both already mapped through ``outer``.
    """
    w = pointwise_matrix(spb_proj)  # C x K
    slope = w.sum(dim=1)
    bias = spb_proj.bias if spb_proj.bias is not None else w.new_zeros(w.shape[0])
    shift = bias[None, :] - anchors.sum(dim=2) @ w.t()  # B x C
    return outer @ slope, shift @ outer.t()


def axis_ramps(size: Sequence[int], device: torch.device, dtype: torch.dtype) -> list[torch.Tensor]:
    """The three 1-D ramps d/D, h/H, w/W of Eq. 14 as broadcastable (1,1,n,1,1)-style tensors."""
    ramps = []
    for axis, n in enumerate(size):
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = n
        ramps.append((torch.arange(n, device=device, dtype=torch.float32) / n).to(dtype).view(shape))
    return ramps
