"""Seconds per training step of LightMedSeg on this device: fast graph vs the reference module.

Prints one JSON line per (path, batch); the experiment script reads the last line ("choice") to pick
the faster path. Random tensors at 16 x 160 x 160, the ACDC preset's network, bf16 autocast on CUDA.
"""

from __future__ import annotations

import json
import sys
import time

import torch

from lightmedseg.model.factory import build_model
from lightmedseg.config import load_config
from lightmedseg.fast import fast_train_forward
from lightmedseg.training.loss import DeepSupervisionLoss, LightMedSegLoss


def seconds_per_step(fast: bool, batch: int, steps: int = 15) -> float:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    config = load_config("acdc")
    model = build_model(config).to(device)
    net = fast_train_forward(model) if fast else model
    loss_fn = DeepSupervisionLoss(LightMedSegLoss(4))
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    x = torch.randn(batch, 1, 16, 160, 160, device=device)
    y = torch.randint(0, 4, (batch, 1, 16, 160, 160), device=device)
    dtype = torch.bfloat16 if device.type == "cuda" else None
    times = []
    for i in range(steps + 3):
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = net(x)
        loss = loss_fn(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


if __name__ == "__main__":
    batches = [int(b) for b in sys.argv[1:]] or [2, 8]
    results = {}
    for batch in batches:
        for fast in (True, False):
            try:
                s = seconds_per_step(fast, batch)
            except Exception as exc:  # a path that fails here must not be chosen, nor stop the probe
                print(json.dumps({"path": "fast" if fast else "reference", "batch": batch, "error": str(exc)[:300]}))
                s = float("inf")
            results[(fast, batch)] = s
            print(json.dumps({"path": "fast" if fast else "reference", "batch": batch, "s_per_step": round(s, 4)}), flush=True)
    fast_wins = sum(results[(True, b)] for b in batches) <= sum(results[(False, b)] for b in batches)
    print(json.dumps({"choice": "fast" if fast_wins else "reference"}), flush=True)
