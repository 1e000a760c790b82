"""Seconds per training step on this CPU: LightMedSeg (a preset's network, fast path) vs MONAI's UNet with the
same strides, batch 2 at 16 x 160 x 160 (the ACDC recipe), in one process, interleaved, medians.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_train_step.py --threads 1 [--preset acdc] [--steps 8] \
        [--amp none bf16] [--torch-kernels] [--no-fuse] [--extra-preset acdc_halfres]

``--amp``: the precisions to time (``bf16`` = ``torch.autocast(cpu, bfloat16)`` around forward and loss, as
``train.amp=bf16`` does); every configuration runs interleaved in the same process, so the ratios hold on a
loaded machine. ``--torch-kernels`` adds rows of the fast path without the hand-written backwards of
``lightmedseg.fast.autograd`` (the before/after ratio); ``--no-fuse`` rows without only its fused elementwise
chains; ``--extra-preset NAME`` rows of another preset's network on the same data (its fast path, the same
batch and size), e.g. ``acdc_halfres`` against ``acdc`` for the two readings of Section 3.6. Prints one JSON
object (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import time

import torch

from lightmedseg.hardware import cpu_name
from lightmedseg.model.factory import build_model
from lightmedseg.config import load_config
from lightmedseg.fast import fast_train_forward
from lightmedseg.training.loss import DeepSupervisionLoss, LightMedSegLoss
from lightmedseg.training.runtime import amp_policy, autocast


def make_step(config: dict, fast: bool, batch: int, size: tuple[int, int, int], amp: str = "none",
              train_kernels: bool = True, fused_chains: bool = True):
    """A closure running one timed training step (forward, Eq. 22 loss, backward, AdamW); returns its seconds."""
    torch.manual_seed(0)
    model = build_model(config)
    net = fast_train_forward(model, train_kernels=train_kernels, fused_chains=fused_chains) if fast else model
    net.train()
    loss_fn = DeepSupervisionLoss(LightMedSegLoss(int(config["model"]["num_classes"])))
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    x = torch.randn(batch, int(config["model"]["in_channels"]), *size)
    y = torch.randint(0, int(config["model"]["num_classes"]), (batch, 1, *size))

    def step() -> float:
        t0 = time.perf_counter()
        with autocast(torch.device("cpu"), amp_policy(amp, torch.device("cpu")).dtype):
            loss = loss_fn(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - t0

    return step




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="acdc")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--amp", nargs="+", default=["none"], choices=["none", "bf16"])
    parser.add_argument("--torch-kernels", action="store_true",
                        help="also time the fast path with torch's own depthwise-conv / group-norm backwards")
    parser.add_argument("--no-fuse", action="store_true",
                        help="also time the fast path without the fused elementwise chains (before/after of that lever)")
    parser.add_argument("--extra-preset", nargs="+", default=[], metavar="NAME",
                        help="also time these presets' networks (fast path) on --preset's data, interleaved")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size = tuple(load_config(args.preset)["data"]["patch_size"])
    lms = load_config(args.preset)
    unet = load_config(args.preset, overrides=["model.architecture=unet", "model.deep_supervision=0"])
    steps = {}
    for amp in args.amp:
        steps[f"lightmedseg_fast_{amp}"] = make_step(lms, True, args.batch, size, amp)
        if args.torch_kernels:
            steps[f"lightmedseg_fast_torchkernels_{amp}"] = make_step(lms, True, args.batch, size, amp, False)
        if args.no_fuse:
            steps[f"lightmedseg_fast_nofuse_{amp}"] = make_step(lms, True, args.batch, size, amp, True, False)
        steps[f"unet_{amp}"] = make_step(unet, False, args.batch, size, amp)
        for extra in args.extra_preset:
            steps[f"lightmedseg_fast_{amp}@{extra}"] = make_step(load_config(extra), True, args.batch, size, amp)
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
        "amp": args.amp, "torch_kernels": args.torch_kernels, "no_fuse": args.no_fuse,
        "lightmedseg_over_unet": {f"{a}/{b}": round(med[f"lightmedseg_fast_{a}"] / med[f"unet_{b}"], 2)
                                  for a in args.amp for b in args.amp},
        "extra_over_preset": {f"{e}/{args.preset} {a}": round(med[f"lightmedseg_fast_{a}@{e}"] / med[f"lightmedseg_fast_{a}"], 3)
                              for e in args.extra_preset for a in args.amp},
        # the same ratios per round (each round runs every row back to back), median over rounds: steadier under load
        "extra_over_preset_paired": {f"{e}/{args.preset} {a}": round(statistics.median(
            x / y for x, y in zip(times[f"lightmedseg_fast_{a}@{e}"], times[f"lightmedseg_fast_{a}"])), 3)
            for e in args.extra_preset for a in args.amp},
        "extra_over_unet_paired": {f"{e}/unet {a}": round(statistics.median(
            x / y for x, y in zip(times[f"lightmedseg_fast_{a}@{e}"], times[f"unet_{a}"])), 3)
            for e in args.extra_preset for a in args.amp},
        "command": "OMP_NUM_THREADS=%d python benchmarks/bench_train_step.py --threads %d --steps %d --amp %s%s" % (
            args.threads, args.threads, args.steps, " ".join(args.amp), " --torch-kernels" if args.torch_kernels else "") + (" --no-fuse" if args.no_fuse else "")
        + (f" --preset {args.preset}" if args.preset != "acdc" else "")
        + (" --extra-preset " + " ".join(args.extra_preset) if args.extra_preset else ""),
    }))


if __name__ == "__main__":
    main()
