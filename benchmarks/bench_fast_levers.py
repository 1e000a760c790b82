"""One lever at a time: what each optimisation of the fast path buys (issue 6, docs/performance.md).

All variants run in this one process, interleaved over rounds, and are reported as medians and as
ratios to the plain eager fp32 forward measured alongside them.

    .venv/bin/python benchmarks/bench_fast_levers.py [--size 128] [--rounds 3]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from typing import Callable

import torch
from torch.nn import functional as F

from lightmedseg import LightMedSeg
from lightmedseg.fast import fast_logits, fast_train_forward
from lightmedseg.fast import graph
from lightmedseg.fast.folding import axis_ramps, position_bias_terms
from lightmedseg.model.decoder import SpatialPositionBias

CL = torch.channels_last_3d


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def interleave(cases: dict[str, Callable[[], object]], rounds: int) -> dict[str, tuple[float, float]]:
    """Median (wall s, CPU s) per case, cases run call by call in turn after one warm-up each."""
    for fn in cases.values():
        fn()  # warm-up
    wall: dict[str, list[float]] = {k: [] for k in cases}
    cpu: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            c0, t0 = cpu_seconds(), time.perf_counter()
            fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(cpu_seconds() - c0)
    return {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in cases}


def report(title: str, med: dict[str, tuple[float, float]], base: str) -> None:
    print(f"\n{title}\n| variant | median wall s | wall vs {base} | median CPU s | CPU vs {base} |"
          "\n|---|---:|---:|---:|---:|")
    for name, (t, c) in med.items():
        print(f"| {name} | {t:.3f} | {med[base][0] / t:.2f}x | {c:.2f} | {med[base][1] / c:.2f}x |", flush=True)


def forward_levers(size: int, rounds: int) -> None:
    torch.manual_seed(0)
    model = LightMedSeg(4, 4).eval()
    model_cl = LightMedSeg(4, 4).eval().to(memory_format=CL)
    model_cl.load_state_dict(model.state_dict())
    x = torch.randn(1, 4, size, size, size)
    xcl = x.contiguous(memory_format=CL)

    def autocast(fn):
        def run():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return fn()
        return run

    cases = {
        "plain eager fp32": lambda: model(x),
        "plain + channels-last": lambda: model_cl(xcl),
        "plain + bf16 autocast": autocast(lambda: model(x)),
        "plain + bf16 autocast + channels-last": autocast(lambda: model_cl(xcl)),
        "rewrites fp32 (NCDHW, no in-place)": lambda: fast_logits(model, x, channels_last=False),
        "rewrites fp32 + in-place": lambda: fast_logits(model, x, inplace=True, channels_last=False),
        "rewrites fp32 + in-place + channels-last": lambda: fast_logits(model, x, inplace=True),
        "rewrites bf16 + in-place (NCDHW)": lambda: fast_logits(model, x, inplace=True, dtype=torch.bfloat16,
                                                                channels_last=False),
        "rewrites bf16 + in-place + channels-last (fast_forward bf16)": lambda: fast_logits(
            model, x, inplace=True, dtype=torch.bfloat16),
    }
    with torch.inference_mode():
        med = interleave(cases, rounds)
    report(f"Forward 1x4x{size}^3, {torch.get_num_threads()} threads", med, "plain eager fp32")

    threads = torch.get_num_threads()
    per_thread = {}
    with torch.inference_mode():
        for n in sorted({1, threads}):
            torch.set_num_threads(n)
            per_thread[f"fast bf16, {n} thread(s)"] = interleave(
                {"f": lambda: fast_logits(model, x, inplace=True, dtype=torch.bfloat16)}, rounds)["f"]
    torch.set_num_threads(threads)
    report("Threads", per_thread, f"fast bf16, {threads} thread(s)")


def spb_lever(size: int, rounds: int) -> None:
    """Eqs. 14-15 at the last decoder stage: the K-map stack + 1x1 conv vs the closed form."""
    torch.manual_seed(0)
    spb = SpatialPositionBias(8, 8).eval()
    anchors = torch.rand(1, 8, 3)
    eye = torch.eye(8)
    shape = (size, size, size)

    def closed():
        slope, shift = position_bias_terms(spb.proj, anchors, eye)
        rd, rh, rw = axis_ramps(shape, anchors.device, torch.float32)
        return slope[None, :, None, None, None] * (rd + rh + rw) + shift[:, :, None, None, None]

    with torch.inference_mode():
        err = (closed() - spb(anchors, shape)).abs().max().item()
        med = interleave({"reference stack + 1x1": lambda: spb(anchors, shape), "closed form": closed}, rounds)
    report(f"Spatial position bias alone, K=8, C=8, {size}^3 (max abs diff {err:.1e}; the reference "
           f"also allocates a {8 * size**3 * 4 / 2**20:.0f} MB K-map stack)", med, "reference stack + 1x1")


def train_levers(rounds: int) -> None:
    torch.manual_seed(0)
    model = LightMedSeg(1, 4).train()
    x = torch.randn(2, 1, 16, 160, 160)
    y = torch.randint(0, 4, (2, 16, 160, 160))

    def step(fn):
        def run():
            model.zero_grad(set_to_none=True)
            F.cross_entropy(fn(x), y).backward()
        return run

    keep = graph._cl_grad

    def no_grad_hint(v):
        return v

    def without_hint():
        graph._cl_grad = no_grad_hint
        try:
            step(fast_train_forward(model))()
        finally:
            graph._cl_grad = keep

    def autocast_plain():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            step(model)()

    cases = {
        "plain eager fp32": step(model),
        "plain + bf16 autocast": autocast_plain,
        "rewrites fp32, NCDHW": step(fast_train_forward(model, channels_last=False)),
        "rewrites fp32, channels-last, no gradient-layout hint": without_hint,
        "rewrites fp32, channels-last (fast_train_forward)": step(fast_train_forward(model)),
        "rewrites bf16, channels-last": step(fast_train_forward(model, dtype=torch.bfloat16)),
    }
    med = interleave(cases, rounds)
    report("Training step (forward + backward), batch 2x1x16x160x160", med, "plain eager fp32")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", choices=["forward", "spb", "train"], default=None)
    args = ap.parse_args()
    if args.only in (None, "spb"):
        spb_lever(args.size, args.rounds)
    if args.only in (None, "forward"):
        forward_levers(args.size, args.rounds)
    if args.only in (None, "train"):
        train_levers(args.rounds)


if __name__ == "__main__":
    main()
