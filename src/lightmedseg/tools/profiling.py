"""Parameters, multiply-adds, peak memory and latency of a LightMedSeg variant, next to the paper's figures.

Multiply-adds (MACs) come from independent counters, because they disagree on conventions:

* ``torch.utils.flop_counter`` (PyTorch's own): convolutions and matrix products only; a transposed
  convolution is counted per *input* voxel (what it really computes). Reported FLOPs / 2.
* ``fvcore``: the same convolutions plus group-norm arithmetic.
* ``thop`` (optional): counts a transposed convolution per *output* voxel (8x the real work for a
  2x2x2 stride-2 kernel); this is the convention the paper's 14.64 G appears to use.

Peak memory of one forward: on CPU the increase of the process's peak resident set size during one
``no_grad`` forward, measured in a fresh subprocess so earlier work does not mask it; on CUDA
``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from typing import Any, Sequence

import torch
from torch import nn

from lightmedseg.config import load_config, typed_config
from lightmedseg.model import LightMedSeg

MEASURES = ("params", "macs", "memory", "latency")  # what profile() can measure (``lightmedseg profile --only``)

# Figures stated in the paper (Sections 3.2-3.5, Tables 1-4), for side-by-side reporting.
PAPER_TOTAL_PARAMS = {"ghost": 0.48e6, "standard": 0.66e6, "no_ghost": 0.66e6, "k16": 0.49e6, "k32": 0.52e6}
PAPER_MODULE_PARAMS = {
    "anchor_detector": 8.6e3,
    "lspm": 11.7e3,
    "lspm.texture": 1.0e3,
    "lspm.gating": 10.5e3,
    "lspm.mixer": 0.15e3,
    "skip_router": 24e3,
}
PAPER_GMACS = 14.64  # "GFLOPs" in the paper, at 1 x 4 x 128^3
PAPER_PEAK_MB = 1174.0
PAPER_LATENCY_MS = {"cuda": 13.7, "cpu": 505.4}  # RTX 5080 / Ryzen 9 9950X

REPORTED_MODULES = (
    "stem", "anchor_detector", "lspm", "lspm.texture", "lspm.gating", "lspm.mixer", "encoder",
    "skip_router", "decoder", "decoder.skip_adapters", "decoder.bottleneck", "decoder.stages", "decoder.head",
    "decoder.final_up",  # with final_transposed_conv only
)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def parameter_table(model: LightMedSeg) -> dict[str, int]:
    """Parameters per top-level module (and LSPM branch) plus ``total``."""
    modules = dict(model.named_modules())
    table = {name: count_params(modules[name]) for name in REPORTED_MODULES if name in modules}
    table["total"] = count_params(model)
    return table


def macs_flop_counter(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """MACs per top-level module from torch.utils.flop_counter (FLOPs / 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    macs = {name: sum(c.values()) / 2 for name, c in counter.get_flop_counts().items() if name != "Global"}
    root = next((name for name in macs if "." not in name), type(model).__name__)
    # top-level modules, and the decoder's parts as "decoder.head" etc. (the top-level ones add up to the total)
    out: dict[str, float] = {"total": counter.get_total_flops() / 2, **_macs_by_child(macs, root)}
    out.update({f"decoder.{k}": v for k, v in _macs_by_child(macs, f"{root}.decoder").items()})
    return out


def _macs_by_child(macs: dict[str, float], parent: str) -> dict[str, float]:
    """MACs per child of the module path ``parent``; keys are module paths ("LightMedSeg.decoder.stages.0.up").

    A ModuleList is never called itself, so each child is the sum of its shallowest recorded descendants.
    """
    depth = parent.count(".") + 1
    by_child: dict[str, dict[int, float]] = {}
    for name, value in macs.items():
        if name.startswith(parent + "."):
            parts = name.split(".")
            depth_sums = by_child.setdefault(parts[depth], {})
            depth_sums[len(parts)] = depth_sums.get(len(parts), 0.0) + value
    return {child: depth_sums[min(depth_sums)] for child, depth_sums in by_child.items()}


def macs_fvcore(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """MACs per top-level module from fvcore's tracer."""
    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(model, x)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    with torch.no_grad():
        by_module = analysis.by_module()
    return {"total": float(analysis.total()), **{k: float(v) for k, v in by_module.items() if k and "." not in k}}


def macs_thop(model: nn.Module, x: torch.Tensor) -> float | None:
    """Total MACs as thop counts them, or None when thop is not installed."""
    try:
        from thop import profile as thop_profile
    except ImportError:
        return None
    import copy

    clone = copy.deepcopy(model)  # thop adds buffers to the modules it visits
    with torch.no_grad():
        macs, _ = thop_profile(clone, inputs=(x,), verbose=False)
    return float(macs)


_MEMORY_SNIPPET = """
import json, resource, sys, torch
from lightmedseg.model import LightMedSeg
cfg, shape, threads = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
model = LightMedSeg(**cfg).eval()
x = torch.randn(*shape)
with torch.no_grad():
    model(torch.randn(shape[0], shape[1], *model.size_divisor))
import psutil
before = psutil.Process().memory_info().rss
peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
with torch.no_grad():
    model(x)
peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"peak_increase_bytes": peak_after - max(before, 0), "baseline_rss_bytes": before,
                  "peak_rss_bytes": peak_after, "peak_before_bytes": peak_before}))
"""


def peak_memory_cpu(model_config: dict, shape: Sequence[int], threads: int | None = None) -> dict[str, float]:
    """Peak RSS increase (MB) of one no_grad forward, measured in a fresh Python process."""
    threads = threads or torch.get_num_threads()
    result = subprocess.run(
        [sys.executable, "-c", _MEMORY_SNIPPET, json.dumps(model_config), json.dumps(list(shape)), str(threads)],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"memory measurement subprocess failed: {result.stderr.strip()[-500:]}")
    data = json.loads(result.stdout.strip().splitlines()[-1])
    return {"peak_mb": data["peak_increase_bytes"] / 2**20, "method": "CPU peak RSS increase (fresh process)"}


def peak_memory_cuda(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """``torch.cuda.max_memory_allocated`` during one forward, weights and input excluded."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    with torch.no_grad():
        model(x)
    torch.cuda.synchronize()
    return {
        "peak_mb": (torch.cuda.max_memory_allocated() - base) / 2**20,
        "peak_total_mb": torch.cuda.max_memory_allocated() / 2**20,
        "method": "torch.cuda.max_memory_allocated (minus weights and input)",
    }


def latency_ms(fn, x: torch.Tensor, warmup: int = 1, runs: int = 3) -> dict[str, float]:
    """Median (and min/max) wall time of ``fn(x)`` over ``runs`` warm runs, in milliseconds."""
    cuda = x.is_cuda
    with torch.no_grad():
        for _ in range(warmup):
            fn(x)
        times = []
        for _ in range(runs):
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn(x)
            if cuda:
                torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times), "runs": runs}


def machine_description(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    from lightmedseg.hardware import cpu_name

    return f"{cpu_name()}, {torch.get_num_threads()} threads"


def profile(
    preset: str = "brats",
    variant: str | None = None,
    shape: Sequence[int] = (1, 4, 128, 128, 128),
    device: str = "cpu",
    warmup: int = 1,
    runs: int = 3,
    overrides: Sequence[str] = (),
    measure: Sequence[str] = MEASURES,
) -> dict[str, Any]:
    """Profile one variant; returns a JSON-serialisable dict (see module docstring for the methods)."""
    config = typed_config(load_config(preset, variant=variant, overrides=overrides))
    model_cfg = dict(config.model)
    model_cfg["in_channels"] = int(shape[1])
    model = LightMedSeg(**model_cfg).eval().to(device)
    x = torch.randn(*shape, device=device)
    model.check_input(x)
    variant_name = config.variant
    report: dict[str, Any] = {
        "variant": variant_name,
        "model": model.config,
        "input_shape": list(shape),
        "device": device,
        "machine": machine_description(device),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    if "params" in measure:
        report["params"] = parameter_table(model)
        report["paper_params"] = {
            "total": PAPER_TOTAL_PARAMS.get(variant_name),
            **PAPER_MODULE_PARAMS,
        }
    if "memory" in measure:
        if device.startswith("cuda"):
            report["memory"] = peak_memory_cuda(model, x)
        else:
            report["memory"] = peak_memory_cpu(model_cfg, shape)
        report["memory"]["paper_mb"] = PAPER_PEAK_MB
    if "macs" in measure:
        cpu_model, cpu_x = model.to("cpu"), x.to("cpu")
        report["macs"] = {
            "flop_counter": macs_flop_counter(cpu_model, cpu_x),
            "fvcore": macs_fvcore(cpu_model, cpu_x),
            "thop_total": macs_thop(cpu_model, cpu_x),
            "paper_total": PAPER_GMACS * 1e9,
        }
        model.to(device)
    if "latency" in measure:
        report["latency"] = latency_ms(model, x, warmup, runs)
        report["latency"]["paper_ms"] = PAPER_LATENCY_MS["cuda" if device.startswith("cuda") else "cpu"]
    return report


def _fmt_count(n: float | None, unit: float, suffix: str) -> str:
    return "-" if n is None else f"{n / unit:,.2f}{suffix}"


def format_report(report: dict[str, Any]) -> str:
    """Human-readable tables of a :func:`profile` report."""
    lines = [
        f"LightMedSeg variant '{report['variant']}', input {'x'.join(map(str, report['input_shape']))}, "
        f"device {report['device']} ({report['machine']}), torch {report['torch']}",
    ]
    if "params" in report:
        lines += ["", f"{'module':<22}{'params':>12}{'paper':>12}"]
        paper = report["paper_params"]
        for name, n in report["params"].items():
            p = paper.get(name)
            lines.append(f"{name:<22}{n:>12,}{(f'{p:,.0f}' if p else '-'):>12}")
    if "macs" in report:
        m = report["macs"]
        lines += [
            "",
            "multiply-adds (G):",
            f"  torch.utils.flop_counter (convs + matmuls, ConvT per input voxel): {m['flop_counter']['total'] / 1e9:.2f}",
            f"  fvcore (convs + group norms):                                      {m['fvcore']['total'] / 1e9:.2f}",
            "  thop (ConvT per output voxel):                                     "
            + ("not installed" if m["thop_total"] is None else f"{m['thop_total'] / 1e9:.2f}"),
            f"  paper (Table 3, 'GFLOPs'):                                         {m['paper_total'] / 1e9:.2f}",
        ]
        lines.append("  per module (flop_counter): " + ", ".join(
            f"{k} {v / 1e9:.2f}" for k, v in m["flop_counter"].items() if k != "total" and "." not in k))
    if "memory" in report:
        mem = report["memory"]
        lines += ["", f"peak memory of one forward: {mem['peak_mb']:.0f} MB ({mem['method']}); paper {mem['paper_mb']:.0f} MB"]
    if "latency" in report:
        lat = report["latency"]
        lines += [
            f"latency: median {lat['median_ms']:.1f} ms over {lat['runs']} warm runs "
            f"(min {lat['min_ms']:.1f}, max {lat['max_ms']:.1f}); paper {lat['paper_ms']} ms on its own hardware"
        ]
    return "\n".join(lines)
