"""Seconds per ACDC training step (acdc preset, fast path, fp32) at two crop sizes, interleaved in one process.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_crop_size.py     # 2 x 16x160x160 vs 2 x 16x128x128

Prints the medians and their ratio (the crop-size probe of docs/results.md, session 6).
"""

from __future__ import annotations

import json
import statistics

import torch

from bench_train_step import make_step
from lightmedseg.config import load_config


def main() -> None:
    torch.set_num_threads(1)
    cfg = load_config("acdc")
    steps = {size: make_step(cfg, True, 2, size) for size in ((16, 160, 160), (16, 128, 128))}
    for fn in steps.values():
        fn(), fn()
    times: dict = {k: [] for k in steps}
    for _ in range(4):
        for size, fn in steps.items():
            times[size].append(fn())
    med = {"x".join(map(str, k)): round(statistics.median(v), 3) for k, v in times.items()}
    print(json.dumps({"s_per_step_median": med, "ratio_128_to_160": round(med["16x128x128"] / med["16x160x160"], 2)}))


if __name__ == "__main__":
    main()
