"""Paired learning-curve check, fp32 vs bf16 autocast, for the fast training path (issue 25): same seed, same
initial weights, same fixed batches, same steps; prints both loss curves and their largest difference.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paired_amp_curve.py --steps 150 [--size 16 64 64] [--seed 7]

Data: smooth random fields thresholded into 4 classes (synthetic, so it runs anywhere); the network, the Eq. 22
loss with deep supervision and AdamW are the `acdc` preset's.
"""

from __future__ import annotations

import argparse
import json

import torch
from torch.nn import functional as F

from lightmedseg.config import load_config
from lightmedseg.fast import fast_train_forward
from lightmedseg.model.factory import build_model
from lightmedseg.training.loss import DeepSupervisionLoss, LightMedSegLoss
from lightmedseg.training.runtime import autocast


def batches(n: int, size: list[int], seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``n`` fixed (image, label) batches of 2 volumes: smoothed noise, labels by thresholds, plus noise."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        field = F.avg_pool3d(torch.randn(2, 1, *size, generator=g), 5, 1, 2)
        label = torch.bucketize(field, torch.tensor([-0.1, 0.0, 0.1])).long()
        out.append((field + 0.05 * torch.randn(field.shape, generator=g), label))
    return out


def curve(amp: str, data, steps: int) -> list[float]:
    torch.manual_seed(0)
    model = build_model(load_config("acdc"))
    net = fast_train_forward(model).train()
    loss_fn = DeepSupervisionLoss(LightMedSegLoss(4))
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    dtype = torch.bfloat16 if amp == "bf16" else None
    losses = []
    for i in range(steps):
        x, y = data[i % len(data)]
        with autocast(torch.device("cpu"), dtype):
            loss = loss_fn(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(round(loss.item(), 4))
    return losses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--size", type=int, nargs=3, default=[16, 64, 64])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = batches(8, args.size, args.seed)
    curves = {amp: curve(amp, data, args.steps) for amp in ("none", "bf16")}
    a, b = curves["none"], curves["bf16"]
    print(json.dumps({"steps": args.steps, "size": args.size, "seed": args.seed, "curves": curves,
                      "max_abs_diff": round(max(abs(p - q) for p, q in zip(a, b)), 4),
                      "max_rel_diff": round(max(abs(p - q) / abs(p) for p, q in zip(a, b)), 5),
                      "mean_last10": [round(sum(a[-10:]) / 10, 4), round(sum(b[-10:]) / 10, 4)]}))


if __name__ == "__main__":
    main()
