"""Weights of one reading of Section 3.6 as the starting point of the other (docs/architecture.md, reading 1).

The default reading runs the last decoder stage at the input resolution; ``final_transposed_conv`` runs it at
the stem's resolution and restores the input resolution after the head with a transposed conv (kernel =
stride = the stem's stride). Every parameter has the same shape in both but two: the last stage's upsampling
(a stem-stride transposed conv becomes a 1x1x1 one) and the new ``final_up``. This module maps a trained
default-reading model onto the other reading so that it can be fine-tuned instead of trained from scratch
(``lightmedseg train --init-weights MODEL --set model.final_transposed_conv=true``). The map is not exact -
the two networks compute different functions - but it is the closest start there is:

- the last stage's transposed conv: with kernel = stride every fine voxel ``(i, a)`` is ``W_a x_i + b``; their
  mean over the taps ``a`` is ``mean_a(W_a) x_i + b``, the average-pooled output, so the 1x1x1 weight is the
  mean of the taps;
- ``final_up``: the identity on every tap and zero bias, i.e. nearest-neighbour upsampling of the logits.
"""

from __future__ import annotations

import re

import torch

# Checkpoint names (network.py's _CHECKPOINT_NAMES): decoder stage j is "decoder.j."; the new conv "final_up.".
_STAGE_UP = re.compile(r"decoder\.(\d+)\.up\.weight")


def to_final_transposed_conv(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Default-reading weights (checkpoint names) -> weights of the same network with ``final_transposed_conv``.

    Raises ValueError when the weights already hold a ``final_up`` or have no decoder stages.
    """
    if any(k.startswith("final_up.") for k in weights):
        raise ValueError("the weights already have a final transposed conv (final_up.*)")
    stages = sorted(int(m.group(1)) for k in weights if (m := _STAGE_UP.fullmatch(k)))
    if not stages or "head.weight" not in weights:
        raise ValueError("the weights hold no decoder stages or head (decoder.N.up.weight, head.weight)")
    last = f"decoder.{stages[-1]}.up.weight"
    adapted = dict(weights)
    up = weights[last]  # (C_in, C_out, *stem stride): ConvTranspose3d's layout
    adapted[last] = up.mean(dim=(2, 3, 4), keepdim=True)
    classes = weights["head.weight"].shape[0]
    final = torch.zeros(classes, classes, *up.shape[2:], dtype=up.dtype)
    final[torch.arange(classes), torch.arange(classes)] = 1.0  # every tap copies its class: nearest upsampling
    adapted["final_up.weight"] = final
    adapted["final_up.bias"] = torch.zeros(classes, dtype=up.dtype)
    return adapted
