"""OpenVINO levers (issue 12), all in one OpenVINO-only process, interleaved, medians:

* graph: the plain module's IR (what predict converts) vs the IR of the rewritten fast graph
  (``lightmedseg.fast.fast_logits``, exact fp32 variant: closed-form position bias, folded SE, no
  concatenations);
  The fast graph computes transposed-conv weights from the input size, so it compiles only with static
  shapes (OpenVINO's CPU deconvolution needs constant weights);
* shapes: dynamic batch/spatial axes (what predict compiles) vs an IR reshaped to the static window shape;
* hint: ``PERFORMANCE_HINT`` LATENCY (predict) vs THROUGHPUT on a sliding-window batch.

Every IR is checked against PyTorch fp32 first (max |logit difference|, printed). Random weights (seeded).

    .venv/bin/python benchmarks/bench_openvino_levers.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "openvino_levers.json"
SHAPES = {"single": (1, 4, 128, 128, 128), "swbatch": (4, 1, 16, 160, 160)}


class FastGraph(torch.nn.Module):
    """The fast path's forward as a module, traceable: fp32, no in-place chains, NCDHW."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from lightmedseg.fast import fast_logits

        return fast_logits(self.model, x, inplace=False, dtype=None, channels_last=False)


def to_ov(module: torch.nn.Module, in_channels: int, tmp: Path, name: str):
    import openvino as ov

    from lightmedseg.inference.export import export_onnx

    export_onnx(module, {"model": {"in_channels": in_channels, "num_classes": 4}}, tmp / f"{name}.onnx", exporter="legacy")
    return ov.convert_model(str(tmp / f"{name}.onnx"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    import openvino as ov

    from lightmedseg.inference.openvino_backend import compile_properties
    from lightmedseg.model import LightMedSeg

    torch.set_num_threads(args.threads)
    core = ov.Core()
    tmp = Path(tempfile.mkdtemp(prefix="ov-levers-"))
    runs, checks, failed = {}, {}, {}
    for task, shape in SHAPES.items():
        torch.manual_seed(0)
        model = LightMedSeg(in_channels=shape[1], num_classes=4).eval()
        x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
        with torch.inference_mode():
            ref = model(torch.from_numpy(x)).numpy()
        plain = to_ov(model, shape[1], tmp, f"plain_{task}")
        fast = to_ov(FastGraph(model), shape[1], tmp, f"fast_{task}")
        static = plain.clone()
        static.reshape({static.inputs[0]: ov.PartialShape(list(shape))})
        fast_static = fast.clone()
        fast_static.reshape({fast_static.inputs[0]: ov.PartialShape(list(shape))})
        configs = {
            "plain dynamic f32": (plain, "f32", "LATENCY"),
            "plain dynamic bf16": (plain, "bf16", "LATENCY"),
            "plain static bf16": (static, "bf16", "LATENCY"),
            "fast-graph dynamic bf16": (fast, "bf16", "LATENCY"),
            "fast-graph static bf16": (fast_static, "bf16", "LATENCY"),
            "fast-graph static f32": (fast_static, "f32", "LATENCY"),
        }
        if shape[0] > 1:
            configs["plain dynamic bf16, THROUGHPUT hint"] = (plain, "bf16", "THROUGHPUT")
        for name, (m, prec, hint) in configs.items():
            props = compile_properties(prec, args.threads)
            props["PERFORMANCE_HINT"] = hint
            key = f"{task}/{name}"
            try:
                req = core.compile_model(m, "CPU", props).create_infer_request()
            except RuntimeError as exc:  # e.g. the fast graph's input-dependent deconv weights with dynamic shapes
                lines = [ln for ln in str(exc).splitlines() if ln.strip()]
                failed[key] = next((ln for ln in lines if "support" in ln), lines[-1] if lines else "")[:300]
                print(f"{key}: does not compile: {failed[key]}", flush=True)
                continue
            req.infer({0: x})
            out = np.array(req.get_output_tensor(0).data)
            checks[key] = {"max_abs_diff": float(np.abs(out - ref).max()),
                           "argmax_agreement": float(np.mean(out.argmax(1) == ref.argmax(1)))}
            print(f"{key}: max |diff| {checks[key]['max_abs_diff']:.2e}, argmax {100 * checks[key]['argmax_agreement']:.3f}%", flush=True)
            runs[key] = (req, x)
    times: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(args.rounds):
        for key, (req, x) in runs.items():
            t0 = time.perf_counter()
            req.infer({0: x})
            times[key].append(time.perf_counter() - t0)
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in times.items()), flush=True)
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "threads": args.threads,
              "loadavg": os.getloadavg(), "openvino": ov.__version__, "shapes": SHAPES,
              "configs": {k: {"median_s": statistics.median(v), "times_s": v, **checks[k]} for k, v in times.items()},
              "failed_to_compile": failed}
    for k, v in result["configs"].items():
        print(f"  {k:48s} {v['median_s']:.3f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
