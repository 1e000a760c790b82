"""CPU speed of LightMedSeg: plain eager vs the fast paths, with MONAI's UNet as the bar (issue 6).

Timing: all configurations of a task (forward, training step) are built in ONE process and run
interleaved over several rounds, so that load from other processes on a shared machine hits them
alike; the table reports medians and ratios to the plain eager fp32 path measured alongside.
Memory: each configuration runs once more in a fresh subprocess (warm-up + one call) whose peak RSS
minus its RSS before the first call is reported, so every figure is that configuration's own.

    .venv/bin/python benchmarks/bench_cpu_speed.py            # measure, print, update docs/benchmarks.md
    .venv/bin/python benchmarks/bench_cpu_speed.py --quick    # one round, no docs update
    .venv/bin/python benchmarks/bench_cpu_speed.py --compile  # also torch.compile (minutes of compiling)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- cpu-speed:start -->", "<!-- cpu-speed:end -->"
RERUN = ".venv/bin/python benchmarks/bench_cpu_speed.py"

FORWARD_SHAPE = (1, 4, 128, 128, 128)  # BraTS-like, 4 modalities, 4 classes
TRAIN_SHAPE = (2, 1, 16, 160, 160)  # ACDC-like crop, batch 2, 1 channel, 4 classes

# name -> (task, description)
CONFIGS: dict[str, tuple[str, str]] = {
    "fwd/plain_fp32": ("forward", "LightMedSeg, plain eager fp32 (reference forward, no_grad)"),
    "fwd/fast_fp32": ("forward", "LightMedSeg fast path, fp32 (exact), channels-last"),
    "fwd/fast_bf16": ("forward", "LightMedSeg fast path, bf16, channels-last (default predict path on CPUs with native bf16)"),
    "fwd/unet_fp32": ("forward", "MONAI UNet 16-256, 2 res units, eager fp32 (no_grad)"),
    "fwd/unet_bf16": ("forward", "MONAI UNet, bf16 autocast, channels-last"),
    "fwd/fast_bf16_compile": ("forward", "LightMedSeg fast path, bf16, torch.compile (inductor)"),
    "train/plain_fp32": ("train", "LightMedSeg, plain eager fp32 training step"),
    "train/fast_fp32": ("train", "LightMedSeg fast training path, fp32, channels-last"),
    "train/fast_bf16": ("train", "LightMedSeg fast training path, bf16 activations"),
    "train/unet_fp32": ("train", "MONAI UNet, eager fp32 training step"),
}


def build(name: str, in_channels: int):
    """(model, callable x -> output) for one configuration."""
    import torch

    torch.manual_seed(0)
    if "unet" in name:
        from monai.networks.nets import UNet

        model = UNet(spatial_dims=3, in_channels=in_channels, out_channels=4, channels=(16, 32, 64, 128, 256),
                     strides=(2, 2, 2, 2), num_res_units=2)
        if name.endswith("unet_bf16"):
            model = model.to(memory_format=torch.channels_last_3d)

            def run(x):
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return model(x.contiguous(memory_format=torch.channels_last_3d)).float()

            return model, run
        return model, model
    from lightmedseg import LightMedSeg
    from lightmedseg.fast import fast_forward, fast_train_forward

    model = LightMedSeg(in_channels=in_channels, num_classes=4)
    if name.startswith("fwd/"):
        if name == "fwd/plain_fp32":
            return model.eval(), model
        dtype = torch.bfloat16 if "bf16" in name else None
        return model, fast_forward(model, dtype=dtype, compile=name.endswith("compile"))
    if name == "train/plain_fp32":
        return model, model
    return model, fast_train_forward(model, dtype=torch.bfloat16 if "bf16" in name else None)


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def make_step(name: str):
    """(model, zero-argument step function) for one configuration, with its own seeded input."""
    import torch
    from torch.nn import functional as F

    task = CONFIGS[name][0]
    shape = FORWARD_SHAPE if task == "forward" else TRAIN_SHAPE
    model, fn = build(name, shape[1])
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g)
    if task == "forward":
        def step() -> None:
            with torch.no_grad():
                fn(x)
        return model, step
    model.train()
    y = torch.randint(0, 4, (shape[0], *shape[2:]), generator=g)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(fn(x), y).backward()
        opt.step()
    return model, train_step


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads: robust to other jobs taking the cores."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def memory_worker(name: str, threads: int) -> dict:
    """Peak RSS increase of one configuration, measured in this (fresh) process."""
    import torch

    torch.set_num_threads(threads)
    model, step = make_step(name)
    base = rss_mb()
    step()
    step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"name": name, "peak_increase_mb": peak - base}


def time_task(names: list[str], rounds: int, threads: int) -> dict[str, dict]:
    """Interleaved timing of several configurations in this process."""
    import torch

    torch.set_num_threads(threads)
    steps, results = {}, {}
    for name in names:
        model, step = make_step(name)
        t0 = time.perf_counter()
        step()  # warm-up (and compilation, when asked)
        results[name] = {"times": [], "first": time.perf_counter() - t0,
                         "params": sum(p.numel() for p in model.parameters())}
        steps[name] = step
        print(f"  built {name:24s} first call {results[name]['first']:7.2f} s", flush=True)
    for r in range(rounds):
        for name in names:
            c0, t0 = cpu_seconds(), time.perf_counter()
            steps[name]()
            results[name]["times"].append(time.perf_counter() - t0)
            results[name].setdefault("cpu", []).append(cpu_seconds() - c0)
        print(f"  round {r + 1}/{rounds}: " + ", ".join(
            f"{n.split('/')[1]} {results[n]['times'][-1]:.2f}s" for n in names), flush=True)
    return results


def machine() -> str:
    import torch

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        flags = re.search(r"^flags\s*:(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
        extra = [f for f in ("avx512_bf16", "amx_bf16", "amx_tile") if flags and f in flags.group(1).split()]
    except OSError:
        extra = []
    return (f"{cpu} ({', '.join(extra) or 'no native bf16'}), {os.cpu_count()} logical cores, "
            f"torch {torch.__version__}, Python {platform.python_version()}")


def run_all(names: list[str], rounds: int, threads: int) -> dict[str, dict]:
    results: dict[str, dict] = {}
    for task in ("forward", "train"):
        group = [n for n in names if CONFIGS[n][0] == task]
        print(f"timing {task} ({len(group)} configurations, {rounds} interleaved rounds)", flush=True)
        proc = subprocess.run([sys.executable, __file__, "--time-worker", ",".join(group), "--rounds", str(rounds),
                               "--threads", str(threads)], capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            raise RuntimeError(f"timing {task} failed:\n{proc.stderr[-3000:]}")
        print(proc.stdout.rsplit("\n", 2)[0], flush=True)
        results.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    for name in names:
        proc = subprocess.run([sys.executable, __file__, "--worker", name, "--threads", str(threads)],
                              capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")
        results[name]["peak"] = json.loads(proc.stdout.strip().splitlines()[-1])["peak_increase_mb"]
        print(f"memory {name:24s} peak +{results[name]['peak']:6.0f} MB", flush=True)
    return results


def table(results: dict[str, dict], task: str, baseline: str) -> list[str]:
    base = statistics.median(results[baseline]["times"])
    base_cpu = statistics.median(results[baseline]["cpu"])
    lines = ["| configuration | params | median wall s | wall speed-up | median CPU s | CPU speed-up "
             "| first call s | peak RSS increase MB |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, res in results.items():
        if CONFIGS[name][0] != task:
            continue
        med, cpu = statistics.median(res["times"]), statistics.median(res["cpu"])
        lines.append(f"| {CONFIGS[name][1]} | {res['params'] / 1e6:.2f}M | {med:.3f} | {base / med:.2f}x | "
                     f"{cpu:.2f} | {base_cpu / cpu:.2f}x | {res['first']:.2f} | {res['peak']:.0f} |")
    return lines


def write_doc(section: str) -> None:
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    block = f"{START}\n{section.rstrip()}\n{END}\n"
    if START in text and END in text:
        text = text[: text.index(START)] + block + text[text.index(END) + len(END) + 1 :]
    else:
        text = text.rstrip() + "\n\n" + block
    DOC.write_text(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--time-worker", help=argparse.SUPPRESS)
    ap.add_argument("--rounds", type=int, default=4, help="interleaved timed rounds (after one warm-up call each)")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile of the fast path")
    ap.add_argument("--quick", action="store_true", help="one round, do not touch docs/benchmarks.md")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(memory_worker(args.worker, args.threads)))
        return 0
    if args.time_worker:
        print(json.dumps(time_task(args.time_worker.split(","), args.rounds, args.threads)))
        return 0
    names = [n for n in CONFIGS if args.compile or not n.endswith("compile")]
    rounds = 2 if args.quick else args.rounds
    results = run_all(names, rounds, args.threads)
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "## CPU speed of LightMedSeg (issue 6)", "",
        f"Measured {now} on {machine()}; {args.threads} torch threads. Times: medians of {rounds} "
        "timed calls per configuration after one warm-up call, all configurations of a table in one process "
        "and interleaved call by call. Peak RSS: a fresh process per configuration. The machine is shared "
        "with other jobs, so compare ratios within a table, not absolute seconds across runs; CPU s is the "
        "process's user + system time per call (all threads), which other jobs do not inflate the way they "
        "inflate wall time. Rerun: `" + RERUN + (" --compile" if args.compile else "") + "`.", "",
        f"### Inference forward, input {'x'.join(map(str, FORWARD_SHAPE))} (4 classes)", "",
        *table(results, "forward", "fwd/plain_fp32"), "",
        f"### Training step (forward, cross-entropy, backward, AdamW), batch {'x'.join(map(str, TRAIN_SHAPE))} "
        "(1 channel, 4 classes)", "",
        *table(results, "train", "train/plain_fp32"), "",
        "Targets (issue 6): inference >= 2x the plain eager fp32 forward with peak memory <= 1174 MB; "
        "training step >= 1.5x; goal: as fast as the UNet. Peak RSS increase is the process's peak "
        "resident memory minus its resident memory just before the warm-up call (model and input "
        "already allocated). See docs/performance.md for the levers behind these numbers.",
    ]
    section = "\n".join(lines)
    print("\n" + section)
    if not args.quick:
        write_doc(section)
        print(f"\nwrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
