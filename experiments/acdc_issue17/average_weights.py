#!/usr/bin/env python
"""Average the weights of several checkpoints of one run into one model file (stochastic weight averaging
done after the fact, Izmailov et al. 2018), to test whether the tail of the long run gives one model that is as
good as an ensemble of its checkpoints at the cost of one.

Why: ensembles of checkpoints scored about +0.5 validation Dice over the best single one (docs/results.md,
session 8) but cost N forward passes; averaged weights cost one, and the network has no batch-norm statistics
to recompute (GroupNorm only), so the average is usable as it is.

  python experiments/acdc_issue17/average_weights.py OUT.safetensors MODEL1 MODEL2 ...

The members must share one config (the first's is stored); the result is scored like any candidate with
``select_snapshot.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from lightmedseg.checkpoint import read_checkpoint, save_model
from lightmedseg.model.factory import build_model


def average(paths: list[Path]) -> tuple[dict[str, torch.Tensor], dict]:
    """Mean of the members' floating-point tensors (others taken from the first), and the first's config."""
    states, configs = zip(*[read_checkpoint(p)[:2] for p in paths])
    for path, config in zip(paths[1:], configs[1:]):
        if config["model"] != configs[0]["model"]:
            raise SystemExit(f"{path}: its network differs from {paths[0]}'s; average checkpoints of one run")
    out = {}
    for key, first in states[0].items():
        out[key] = (torch.stack([s[key].double() for s in states]).mean(0).to(first.dtype)
                    if first.is_floating_point() else first.clone())
    return out, configs[0]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="the averaged model file (.safetensors)")
    p.add_argument("models", nargs="+", type=Path, help="model files of one run (snapshots, model_best, ...)")
    args = p.parse_args()
    state, config = average(args.models)
    model = build_model(config)
    model.load_state_dict(state)
    save_model(args.out, model, config)
    print(f"wrote {args.out}: mean of {len(args.models)} checkpoints")
    return 0


if __name__ == "__main__":
    sys.exit(main())
