"""Where the time of a 1 x 4 x 128^3 prediction goes: OpenVINO's performance counters (PERF_COUNT) for the graph
``lightmedseg predict`` converts by default, in both readings of Section 3.6, beside MONAI's UNet (issue 25: "which
ops stand in the way, with their counters").

For each network: executed ops, the bytes of the activations they write (output tensor sizes in the precision the
engine ran them, summed over executed nodes), and the shares of the engine's time by op type and, for LightMedSeg,
by module of the network (OpenVINO keeps the PyTorch module path in its node names). The networks are the untrained
``brats``-preset model (4 channels, the paper's Table 1 network; the timing does not depend on the weights) and the
UNet of ``bench_vs_unet.py``. Counters are summed over ``--repeats`` calls after one warm-up call.

    .venv/bin/python benchmarks/ov_counters.py [--threads 2] [--repeats 3] [--top 8]

Run on an idle machine; shares are what to read, seconds only within one run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_per_volume import brats_model_dir  # noqa: E402
from bench_vs_unet import SHAPE, _unet  # noqa: E402
from lightmedseg.hardware import cpu_name  # noqa: E402

ELEMENT_BYTES = {"f32": 4, "bf16": 2, "f16": 2, "i8": 1, "u8": 1, "i32": 4, "i64": 8}
MODULE_DEPTH = 3  # "decoder.stages.3" - the level the docs' per-stage shares are counted at


def compiled(ov_model, threads: int):
    import openvino as ov

    from lightmedseg.inference.openvino_backend import compile_properties, resolve_ov_precision

    ov_model.reshape({ov_model.inputs[0]: ov.PartialShape(list(SHAPE))})
    props = {**compile_properties(resolve_ov_precision("auto"), threads), "PERF_COUNT": True}
    return ov.Core().compile_model(ov_model, "CPU", props)


def module_of(name: str) -> str:
    """The module path in an OpenVINO node name ("__module.decoder.stages.3.gate/aten::softmax/..." ->
    "decoder.stages.3"); "(graph)" for nodes the converter named otherwise."""
    m = re.search(r"__module\.([A-Za-z0-9_.]+)", name)
    return ".".join(m.group(1).split(".")[:MODULE_DEPTH]) if m else "(graph)"


def counters(net, threads: int, repeats: int) -> dict:
    """Executed ops, activation bytes, seconds per call, and time by op type and by module."""
    req = net.create_infer_request()
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    req.infer({0: x})  # warm-up
    by_type: Counter = Counter()
    by_module: Counter = Counter()
    executed: set[str] = set()
    for _ in range(repeats):
        req.infer({0: x})
        for info in req.profiling_info:
            if str(info.status).endswith("EXECUTED"):
                us = info.real_time.total_seconds() * 1e6
                by_type[info.node_type] += us
                by_module[module_of(info.node_name)] += us
                executed.add(info.node_name)
    written = 0
    for op in net.get_runtime_model().get_ops():
        if op.get_friendly_name() in executed:
            for out in op.outputs():
                shape = out.get_partial_shape()
                if shape.is_static:
                    written += int(np.prod([d.get_length() for d in shape])) * ELEMENT_BYTES.get(
                        out.get_element_type().get_type_name(), 4)
    total = sum(by_type.values())
    return {"ops": len(executed), "bytes": written, "seconds": total / repeats / 1e6,
            "by_type": {k: v / total for k, v in by_type.most_common()},
            "by_module": {k: v / total for k, v in by_module.most_common()}}


def main() -> int:
    import openvino as ov
    import torch

    from lightmedseg.inference import openvino_convert

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--top", type=int, default=8, help="op types and modules listed per network")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    nets = {}
    for final in (False, True):
        _, model, config = brats_model_dir((f"model.final_transposed_conv={str(final).lower()}",))
        ov_model, _ = openvino_convert.convert_module(model, config)  # what predict converts by default
        nets["LightMedSeg, " + ("final_transposed_conv" if final else "default reading")] = compiled(ov_model, args.threads)
    with torch.no_grad():
        nets["MONAI UNet 16-256"] = compiled(ov.convert_model(_unet(), example_input=torch.zeros(1, SHAPE[1], 32, 32, 32)),
                                            args.threads)
    print(f"{dt.date.today()}, {cpu_name()}, {args.threads} threads, OpenVINO {ov.get_version()}, precision auto, "
          f"input {'x'.join(map(str, SHAPE))}, counters summed over {args.repeats} calls")
    results = {name: counters(net, args.threads, args.repeats) for name, net in nets.items()}
    print("\n| network | executed ops | activation bytes written | s per call (counters) | largest shares by op type |")
    print("|---|---:|---:|---:|---|")
    for name, r in results.items():
        shares = ", ".join(f"{k} {100 * v:.0f}%" for k, v in list(r["by_type"].items())[:args.top])
        print(f"| {name} | {r['ops']} | {r['bytes'] / 1e9:.2f} GB | {r['seconds']:.3f} | {shares} |")
    for name, r in results.items():
        if name.startswith("LightMedSeg"):
            print(f"\n{name}, shares by module: " + ", ".join(
                f"{k} {100 * v:.0f}%" for k, v in list(r["by_module"].items())[:args.top]))
    print(f"\nRerun: .venv/bin/python benchmarks/ov_counters.py --threads {args.threads} --repeats {args.repeats}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
