#!/usr/bin/env python
"""LightMedSeg against MONAI's UNet, SegResNet, UNETR and SwinUNETR, measured in one run on one machine.

For every network at 1 x 4 x 128^3 (4 classes): parameters, multiply-adds (torch.utils.flop_counter,
and thop where it can trace the model), peak memory of one no_grad forward (peak RSS increase in a
fresh process), median CPU forward latency, median training-step time (forward + Eq. 22-free
cross-entropy + backward + AdamW step, batch 1), and the time to predict one BraTS-size volume
(4 x 155 x 240 x 240, MONAI sliding window, 128^3 windows, overlap 0.5, Gaussian weighting).

Each measurement runs in its own subprocess under a memory cap (``--mem-cap-gb``), so a network
that does not fit is reported as such instead of taking the machine down. Results are printed, saved
as JSON, and written into docs/benchmarks.md between the ``peers`` markers, as absolute figures and
as ratios to LightMedSeg (ghost, eager).

Rerun:  .venv/bin/python benchmarks/bench_peers.py [--runs 3] [--threads 2] [--skip-volume]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (1, 4, 128, 128, 128)
VOLUME = (1, 4, 155, 240, 240)
NETWORKS = {
    "LightMedSeg (ghost)": {"architecture": "lightmedseg", "conv": "ghost"},
    "LightMedSeg (ghost, fast path)": {"architecture": "lightmedseg", "conv": "ghost", "fast": True},
    # the default `lightmedseg predict` path on CPUs with native bf16 (inference only: training stays fp32)
    "LightMedSeg (ghost, fast path, bf16)": {"architecture": "lightmedseg", "conv": "ghost", "fast": True,
                                             "bf16": True},
    "LightMedSeg (standard conv)": {"architecture": "lightmedseg", "conv": "standard"},
    "MONAI UNet": {"architecture": "unet"},
    "MONAI SegResNet": {"architecture": "segresnet"},
    "MONAI UNETR": {"architecture": "unetr"},
    "MONAI SwinUNETR": {"architecture": "swinunetr"},
}
BASELINE = "LightMedSeg (ghost)"


# ----------------------------------------------------------------------------------------------
# worker: one measurement of one network, in a fresh process
# ----------------------------------------------------------------------------------------------
def _build(spec: dict):
    import torch

    from lightmedseg.model.factory import build_model

    model_cfg = {"in_channels": 4, "num_classes": 4}
    arch = spec["architecture"]
    if arch == "lightmedseg":
        model_cfg["conv"] = spec["conv"]
    else:
        model_cfg["architecture"] = arch
    model = build_model({"model": model_cfg, "infer": {"roi_size": list(SHAPE[2:])}})
    fn = model
    if spec.get("fast"):
        from lightmedseg.fast import fast_forward

        fn = fast_forward(model.eval(), device="cpu", dtype=torch.bfloat16 if spec.get("bf16") else None)
    return model, fn, torch


def worker(kind: str, spec: dict, runs: int) -> dict:
    import resource
    import statistics

    import psutil

    model, fn, torch = _build(spec)
    out: dict = {}
    if kind == "static":
        from lightmedseg.tools.profiling import macs_flop_counter, macs_thop

        model.eval()
        x = torch.randn(*SHAPE)
        out["params"] = sum(p.numel() for p in model.parameters())
        out["macs_flop_counter"] = macs_flop_counter(model, x)["total"]
        try:
            out["macs_thop"] = macs_thop(model, x)
        except Exception as exc:  # thop cannot trace some transformer blocks
            out["macs_thop"] = None
            out["thop_error"] = f"{type(exc).__name__}: {exc}"[:200]
    elif kind == "forward":
        model.eval()
        x = torch.randn(*SHAPE)
        # UNETR's patch embedding is built for one input size, and SwinUNETR's instance norms need more
        # than one voxel at its bottleneck, so the transformers warm up at the measured size
        warm = x if spec["architecture"] in ("unetr", "swinunetr") else torch.randn(1, 4, 32, 32, 32)
        with torch.inference_mode():
            fn(warm)
            rss = psutil.Process().memory_info().rss
            t0 = time.perf_counter()
            fn(x)
            first = time.perf_counter() - t0
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            times = [first]
            for _ in range(runs - 1):
                t0 = time.perf_counter()
                fn(x)
                times.append(time.perf_counter() - t0)
        out["peak_mb"] = (peak - rss) / 2**20
        out["latency_s"] = statistics.median(times[1:] if len(times) > 1 else times)
        out["latency_all_s"] = times
    elif kind == "train":
        model.train()
        x = torch.randn(*SHAPE)
        y = torch.randint(0, 4, (SHAPE[0], *SHAPE[2:]))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        step_fn = model
        if spec.get("fast"):
            from lightmedseg.fast import fast_logits

            def step_fn(t):  # noqa: E306 - the training fast path, same parameters
                return fast_logits(model, t, dtype=torch.bfloat16 if spec.get("bf16") else None)
        times = []
        for _ in range(runs + 1):
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(step_fn(x), y)
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t0)
        out["train_step_s"] = statistics.median(times[1:])
        out["train_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    elif kind == "volume":
        from monai.inferers import sliding_window_inference

        model.eval()
        x = torch.randn(*VOLUME)
        # pad to a multiple of 16, as the predictor does
        pads = [(-s) % 16 for s in VOLUME[2:]]
        x = torch.nn.functional.pad(x, [0, pads[2], 0, pads[1], 0, pads[0]])
        t0 = time.perf_counter()
        with torch.inference_mode():
            sliding_window_inference(x, SHAPE[2:], 1, fn, overlap=0.5, mode="gaussian")
        out["volume_s"] = time.perf_counter() - t0
    return out


def run_worker(kind: str, name: str, runs: int, threads: int, mem_cap_gb: float, timeout: float) -> dict:
    code = (
        "import json, resource, sys, torch\n"
        f"cap = int({mem_cap_gb} * 2**30)\n"
        "resource.setrlimit(resource.RLIMIT_AS, (cap, cap))\n"
        f"torch.set_num_threads({threads})\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "import bench_peers as b\n"
        "print('RESULT ' + json.dumps(b.worker(sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]))))\n"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code, str(Path(__file__).parent), kind, json.dumps(NETWORKS[name]), str(runs)],
            capture_output=True, text=True, timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
    if "MemoryError" in proc.stderr or "memory" in tail[0].lower() or proc.returncode in (-9, 137):
        return {"error": f"out of memory under the {mem_cap_gb:g} GB cap"}
    return {"error": tail[0][:200]}


# ----------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------
def machine() -> str:
    import torch

    cpu = platform.processor() or "cpu"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}"


def _fmt(v, unit: str = "", digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return f"{v:,.{digits}f}{unit}"


def markdown(results: dict, meta: dict) -> str:
    cols = [
        ("params", "Params (M)", 1e-6, 3), ("macs_flop_counter", "MACs flop_counter (G)", 1e-9, 2),
        ("macs_thop", "MACs thop (G)", 1e-9, 2), ("peak_mb", "Fwd peak (MB)", 1, 0),
        ("latency_s", "Fwd latency (s)", 1, 2), ("train_step_s", "Train step (s)", 1, 2),
        ("volume_s", "240x240x155 volume (s)", 1, 1),
    ]
    base = results.get(BASELINE, {})
    lines = [
        "<!-- peers:start -->",
        "## LightMedSeg vs MONAI networks (1 x 4 x 128^3, CPU)",
        "",
        f"Measured {meta['date']} on {meta['machine']}, {meta['threads']} threads, {meta['runs']} warm runs per median; "
        f"rerun: `{meta['command']}`. "
        + ("Every cell is a measurement from this run; " if "; then " not in meta["command"] else
           "Every cell is a measurement; each later command (`--merge`) replaced the cells of the networks and "
           "columns it measured, so cells from different commands were measured at different times and loads "
           "(see the note below the table); ")
        + "`-` = not measured, `OOM` = did not fit the memory cap, each measurement in a fresh process.",
        "",
        "| network | " + " | ".join(c[1] for c in cols) + " |",
        "| --- | " + " | ".join("---:" for _ in cols) + " |",
    ]
    for name, r in results.items():
        cells = []
        for key, _, scale, digits in cols:
            v = r.get(key)
            err = r.get(f"{key}_error")
            cells.append("OOM" if err and "memory" in err else ("err" if err else _fmt(None if v is None else v * scale, "", digits)))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"Ratios to {BASELINE} (x = times the baseline's value):", "",
              "| network | " + " | ".join(c[1] for c in cols) + " |",
              "| --- | " + " | ".join("---:" for _ in cols) + " |"]
    for name, r in results.items():
        cells = []
        for key, *_ in cols:
            v, b = r.get(key), base.get(key)
            cells.append("-" if not v or not b else f"{v / b:.2f}x")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    errors = {n: {k: v for k, v in r.items() if k.endswith("_error")} for n, r in results.items()}
    errors = {n: e for n, e in errors.items() if e}
    if errors:
        lines += ["", "Failures: " + "; ".join(f"{n}: {e}" for n, e in errors.items())]
    lines.append("<!-- peers:end -->")
    return "\n".join(lines) + "\n"


def write_section(doc: Path, section: str) -> None:
    text = doc.read_text() if doc.exists() else "# Benchmarks\n\nEvery figure here was measured by a script in `benchmarks/`; each section names its command.\n\n"
    start, end = "<!-- peers:start -->", "<!-- peers:end -->"
    if start in text and end in text:
        text = text[: text.index(start)] + section.rstrip("\n") + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    tmp = doc.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, doc)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--mem-cap-gb", type=float, default=14.0)
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per measurement")
    p.add_argument("--only", nargs="*", default=None, help="subset of network names")
    p.add_argument("--skip-volume", action="store_true", help="skip the full-volume sliding-window timing")
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--volume-networks", nargs="*", default=[n for n in NETWORKS if "UNETR" not in n],
                   help="networks whose full-volume time is measured (default: all but the two transformers, "
                        "whose 27-window CPU sliding window takes tens of minutes)")
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "peers.json"))
    p.add_argument("--merge", action="store_true",
                   help="update the networks measured now inside the existing --json results (same machine)")
    p.add_argument("--doc", default=str(ROOT / "docs" / "benchmarks.md"))
    args = p.parse_args()

    names = [n for n in NETWORKS if not args.only or n in args.only]
    previous = json.loads(Path(args.json).read_text()) if args.merge and Path(args.json).exists() else None
    kinds = ["static", "forward"] + ([] if args.skip_train else ["train"]) + ([] if args.skip_volume else ["volume"])
    results: dict[str, dict] = {}
    for name in names:
        results[name] = {}
        for kind in kinds:
            if kind == "volume" and name not in args.volume_networks:
                continue
            t0 = time.perf_counter()
            r = run_worker(kind, name, args.runs, args.threads, args.mem_cap_gb, args.timeout)
            if "error" in r:
                keys = {"static": ["params"], "forward": ["peak_mb", "latency_s"], "train": ["train_step_s"],
                        "volume": ["volume_s"]}[kind]
                for k in keys:
                    results[name][f"{k}_error"] = r["error"]
            else:
                results[name].update(r)
            print(f"{name:<34} {kind:<8} {time.perf_counter() - t0:7.1f} s  {r}", flush=True)
    meta = {
        "date": dt.date.today().isoformat(), "machine": machine(), "threads": args.threads, "runs": args.runs,
        "command": "python benchmarks/bench_peers.py " + shlex.join(sys.argv[1:]),
    }
    if previous is not None:  # keep the other networks' measurements, in the table's usual order
        old = previous["results"]  # per network, new measurements replace old ones key by key
        results = {n: {**old.get(n, {}), **results.get(n, {})} for n in NETWORKS if n in old or n in results}
        meta["command"] = previous["meta"]["command"] + "; then " + meta["command"]
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    section = markdown(results, meta)
    print(section)
    write_section(Path(args.doc), section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
