#!/usr/bin/env python
"""Does the default CPU predict path keep the predictions? Plain fp32 vs fast path / OpenVINO, fp32 and bf16, on real cases.

For each case of one split subset, the same trained model predicts the whole volume (sliding window,
the model's own preprocessing) three ways: the plain eager fp32 forward (``--reference``, the oracle),
the fast path in fp32 and the fast path in bf16 (``--precision bf16``, the default on CPUs with
native bf16), and since issue 12 OpenVINO in f32 and bf16 (the default backend on the CPU). It reports, per case and pooled over all cases, the Dice between each fast label map and
the plain one (per foreground label, then the mean; target >= 0.995, issue 6), the share of voxels
whose label agrees, the Dice of each against the ground truth, and the seconds per case.

Rerun, e.g.:
  python benchmarks/check_precision_real.py -m acdc --data /work/data/acdc \
      --split src/lightmedseg/splits/acdc_nnformer.json --subset validation --json runs/precision_acdc.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from lightmedseg.data.io import read_label
from lightmedseg.data.layout import case_files
from lightmedseg.data.splits import read_split
from lightmedseg.inference.backends import load_backend
from lightmedseg.inference.inputs import CaseInput
from lightmedseg.inference.pipeline import read_case
from lightmedseg.inference.predictor import Predictor

PATHS = {  # name -> (backend, reference, precision)
    "plain fp32": ("torch", True, "fp32"),
    "fast fp32": ("torch", False, "fp32"),
    "fast bf16": ("torch", False, "bf16"),
    "openvino f32": ("openvino", False, "fp32"),
    "openvino bf16": ("openvino", False, "bf16"),
}


def overlap_counts(a: np.ndarray, b: np.ndarray, labels: list[int]) -> dict[int, tuple[int, int]]:
    """Per label: (2 |A & B|, |A| + |B|), summed later so pooled Dice weighs cases by size."""
    return {lab: (2 * int(np.count_nonzero((a == lab) & (b == lab))),
                  int(np.count_nonzero(a == lab) + np.count_nonzero(b == lab))) for lab in labels}


def dice(counts: dict[int, tuple[int, int]]) -> dict[int, float]:
    return {lab: (num / den if den else 1.0) for lab, (num, den) in counts.items()}


def add(total: dict[int, list[int]], counts: dict[int, tuple[int, int]]) -> None:
    for lab, (num, den) in counts.items():
        total.setdefault(lab, [0, 0])
        total[lab][0] += num
        total[lab][1] += den


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-m", "--model", required=True, help="run folder, model file or shipped name")
    p.add_argument("--data", required=True, type=Path, help="converted dataset folder (dataset.json)")
    p.add_argument("--split", required=True)
    p.add_argument("--subset", default="validation")
    p.add_argument("--limit", type=int, default=0, help="only the first N cases (0 = all)")
    p.add_argument("--json", type=Path, help="write the results here too")
    p.add_argument("--paths", default="fast,openvino",
                   help="families compared with plain fp32: fast (torch fast path), openvino (issue 12)")
    args = p.parse_args()

    split = read_split(args.split)
    cases = split[args.subset][: args.limit or None]
    names = [n for n in PATHS if n == "plain fp32" or n.split()[0] in args.paths.split(",")]
    loaded = {name: load_backend(args.model, backend=PATHS[name][0], reference=PATHS[name][1],
                                 precision=PATHS[name][2]) for name in names}
    label_map = loaded["plain fp32"].config.get("labels")  # dataset.json style: name -> value
    label_names = {int(v): k for k, v in label_map.items()} if isinstance(label_map, dict) else {}
    predictors = {name: Predictor(lm.config, lm.forward_fn) for name, lm in loaded.items()}
    labels = [v for v in predictors["plain fp32"].label_values if v != 0]
    vs_plain: dict[str, dict[int, list[int]]] = {n: {} for n in names if n != "plain fp32"}
    vs_truth: dict[str, dict[int, list[int]]] = {n: {} for n in names}
    agree = {n: [0, 0] for n in vs_plain}
    seconds: dict[str, list[float]] = {n: [] for n in names}
    rows = []
    for case in cases:
        images, label_file = case_files(args.data, case)
        image, _ = read_case(CaseInput(case, list(images)))
        truth = read_label(label_file)[0] if label_file else None  # (Z, Y, X), like the prediction
        out = {}
        for name, predictor in predictors.items():
            t0 = time.perf_counter()
            out[name] = predictor.predict_image(image).labels
            seconds[name].append(time.perf_counter() - t0)
            if truth is not None:
                add(vs_truth[name], overlap_counts(out[name], truth, labels))
        row = {"case": case}
        for name in vs_plain:
            counts = overlap_counts(out[name], out["plain fp32"], labels)
            add(vs_plain[name], counts)
            same = int(np.count_nonzero(out[name] == out["plain fp32"]))
            agree[name][0] += same
            agree[name][1] += out[name].size
            d = dice(counts)
            row[name] = {"dice_vs_plain_mean": float(np.mean(list(d.values()))), "voxel_agreement": same / out[name].size}
        rows.append(row)
        print(json.dumps(row), flush=True)

    def pooled(total: dict[int, list[int]]) -> dict[str, float]:
        d = dice({lab: tuple(v) for lab, v in total.items()})
        res = {label_names.get(lab, str(lab)): d[lab] for lab in d}
        res["mean"] = float(np.mean(list(d.values())))
        return res

    summary = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
        "model": str(args.model), "split": str(args.split), "subset": args.subset, "cases": len(cases),
        "dice_vs_plain": {n: pooled(t) for n, t in vs_plain.items()},
        "case_min_dice_vs_plain": {n: min(r[n]["dice_vs_plain_mean"] for r in rows) for n in vs_plain},
        "voxel_agreement": {n: a / b for n, (a, b) in agree.items()},
        "dice_vs_truth": {n: pooled(t) for n, t in vs_truth.items() if t},
        "median_seconds_per_case": {n: float(np.median(s)) for n, s in seconds.items()},
        "per_case": rows,
        "command": "python " + " ".join(sys.argv),
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "per_case"}, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
