"""Seconds per training step on this CPU: LightMedSeg (a preset's network, fast path) vs MONAI's UNet with the
same strides, batch 2 at 16 x 160 x 160 (the ACDC recipe), fp32, in one process, interleaved, medians.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_train_step.py --threads 1 [--preset acdc] [--steps 8]

Prints one JSON object; used for the per-CPU-hour comparison in docs/results.md. Run on an idle machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time

import torch

from lightmedseg.model.factory import build_model
from lightmedseg.config import load_config
from lightmedseg.fast import fast_train_forward
from lightmedseg.training.loss import DeepSupervisionLoss, LightMedSegLoss


def make_step(config: dict, fast: bool, batch: int, size: tuple[int, int, int]):
    torch.manual_seed(0)
    model = build_model(config)
    net = fast_train_forward(model) if fast else model
    net.train()
    loss_fn = DeepSupervisionLoss(LightMedSegLoss(int(config["model"]["num_classes"])))
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    x = torch.randn(batch, int(config["model"]["in_channels"]), *size)
    y = torch.randint(0, int(config["model"]["num_classes"]), (batch, 1, *size))

    def step() -> float:
        t0 = time.perf_counter()
        loss = loss_fn(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - t0

    return step


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="acdc")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size = tuple(load_config(args.preset)["data"]["patch_size"])
    lms = load_config(args.preset)
    unet = load_config(args.preset, overrides=["model.architecture=unet", "model.deep_supervision=0"])
    steps = {"lightmedseg_fast": make_step(lms, True, args.batch, size), "unet": make_step(unet, False, args.batch, size)}
    for fn in steps.values():  # warm-up (oneDNN primitive creation)
        fn(), fn()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(args.steps):
        for name, fn in steps.items():
            times[name].append(fn())
    med = {k: statistics.median(v) for k, v in times.items()}
    print(json.dumps({
        "date": datetime.date.today().isoformat(), "cpu": cpu_name(), "threads": args.threads, "preset": args.preset,
        "batch": args.batch, "size": list(size), "s_per_step_median": {k: round(v, 3) for k, v in med.items()},
        "unet_steps_per_lightmedseg_step": round(med["lightmedseg_fast"] / med["unet"], 2),
    }))


if __name__ == "__main__":
    main()
