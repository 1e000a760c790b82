#!/usr/bin/env python
"""Experiment (issue 12): int8 post-training quantisation of a model's OpenVINO IR with NNCF.

Calibration windows are the real inputs of the sliding window: the predictor runs on ``--calib`` training
cases with a forward_fn that records each window (and returns zeros). The quantised IR then predicts the
validation cases; its label maps are compared (pooled Dice per foreground label) with OpenVINO f32 (which
matches PyTorch fp32 to Dice 0.99999, docs/performance.md) and bf16, and one window batch is timed for
f32 / bf16 / int8 in this OpenVINO-only process. Needs ``pip install nncf``; not part of predict.

    python benchmarks/check_int8.py -m acdc --data /work/data/acdc --split src/lightmedseg/splits/acdc_nnformer.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lightmedseg.data.layout import case_files
from lightmedseg.data.splits import read_split
from lightmedseg.inference.inputs import CaseInput
from lightmedseg.inference.openvino_backend import StaticShapeForward, compile_properties, read_ir_config
from lightmedseg.inference.openvino_convert import cached_ir
from lightmedseg.inference.pipeline import read_case
from lightmedseg.inference.predictor import Predictor


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-m", "--model", required=True)
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--split", required=True)
    p.add_argument("--calib", type=int, default=8, help="training cases whose windows calibrate")
    p.add_argument("--limit", type=int, default=0, help="validation cases (0 = all)")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    import nncf
    import openvino as ov

    from lightmedseg.checkpoint import resolve_model_path

    torch.set_num_threads(2)
    core = ov.Core()
    ir = cached_ir(resolve_model_path(args.model))
    model = core.read_model(str(ir.xml))
    config = read_ir_config(model, ir.xml)
    split = read_split(args.split)
    train_key = "training" if "training" in split else "train"
    windows: list[np.ndarray] = []

    def record(x: torch.Tensor) -> torch.Tensor:
        windows.append(x.numpy().copy())
        return torch.zeros(x.shape[0], int(config["model"]["num_classes"]), *x.shape[2:])

    recorder = Predictor(config, record)
    for case in split[train_key][: args.calib]:
        images, _ = case_files(args.data, case)
        recorder.predict_image(read_case(CaseInput(case, list(images)))[0])
    t0 = time.perf_counter()
    q_model = nncf.quantize(model.clone(), nncf.Dataset(windows), subset_size=len(windows))  # it alters its input
    quant_s = time.perf_counter() - t0
    print(f"calibrated on {len(windows)} windows of {args.calib} training cases; quantised in {quant_s:.1f} s", flush=True)

    fns = {"f32": StaticShapeForward(core, model, compile_properties("f32"), ir.xml),
           "bf16": StaticShapeForward(core, model, compile_properties("bf16"), ir.xml),
           # int8 with the bf16 hint does not compile in OpenVINO 2026.4 ("No suitable implementations"):
           # the ops NNCF leaves unquantised run in f32
           "int8": StaticShapeForward(core, q_model, compile_properties("f32"), ir.xml)}
    predictors = {k: Predictor(config, fn) for k, fn in fns.items()}
    labels = [v for v in predictors["f32"].label_values if v != 0]
    counts = {k: {lab: [0, 0] for lab in labels} for k in ("bf16", "int8")}
    agree = {k: [0, 0] for k in counts}
    seconds = {k: [] for k in fns}
    for case in split["validation"][: args.limit or None]:
        images, _ = case_files(args.data, case)
        image = read_case(CaseInput(case, list(images)))[0]
        out = {}
        for k, pr in predictors.items():
            t0 = time.perf_counter()
            out[k] = pr.predict_image(image).labels
            seconds[k].append(time.perf_counter() - t0)
        for k in counts:
            for lab in labels:
                a, b = out[k] == lab, out["f32"] == lab
                counts[k][lab][0] += 2 * int(np.count_nonzero(a & b))
                counts[k][lab][1] += int(np.count_nonzero(a) + np.count_nonzero(b))
            agree[k][0] += int(np.count_nonzero(out[k] == out["f32"]))
            agree[k][1] += out[k].size
        print(case, {k: float(np.mean(out[k] == out["f32"])) for k in counts}, flush=True)
    x = torch.from_numpy(np.stack([w[0] for w in windows[:4]]))  # one batch of 4 real windows
    times = {k: [] for k in fns}
    for k in fns:
        fns[k](x)  # compile + warm-up
    for _ in range(5):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn(x)
            times[k].append(time.perf_counter() - t0)
    dice = {k: {str(lab): (n / d if d else 1.0) for lab, (n, d) in c.items()} for k, c in counts.items()}
    res = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "loadavg": os.getloadavg(),
           "model": args.model, "calibration_windows": len(windows), "quantise_s": quant_s,
           "dice_vs_f32": {k: {**d, "mean": float(np.mean(list(d.values())))} for k, d in dice.items()},
           "voxel_agreement_vs_f32": {k: a / b for k, (a, b) in agree.items()},
           "median_case_s": {k: statistics.median(v) for k, v in seconds.items()},
           "window_batch": list(x.shape), "window_batch_median_s": {k: statistics.median(v) for k, v in times.items()},
           "command": "python " + " ".join(sys.argv)}
    print(json.dumps(res, indent=1))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
