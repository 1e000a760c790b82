"""Depthwise 3^3 conv, forward + backward, contiguous (NCDHW) vs channels-last input, one thread, at the
shapes of the ACDC network's decoder: why every conv of lightmedseg/fast/graph.py takes channels-last input.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_depthwise_layout.py

Prints one JSON line per shape: best of 3 after a warm-up, milliseconds.
"""

from __future__ import annotations

import json
import time

import torch
import torch.nn.functional as F

SHAPES = [(4, (16, 160, 160)), (8, (16, 160, 160)), (8, (16, 80, 80)), (16, (16, 80, 80)), (32, (16, 40, 40))]


def best_ms(fn, runs: int = 3) -> float:
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(1e3 * min(times), 1)


def main() -> None:
    torch.set_num_threads(1)
    for channels, size in SHAPES:
        row = {"channels": channels, "size": list(size)}
        for layout, fmt in (("contiguous", torch.contiguous_format), ("channels_last", torch.channels_last_3d)):
            x = torch.randn(2, channels, *size).contiguous(memory_format=fmt).requires_grad_()
            w = torch.randn(channels, 1, 3, 3, 3, requires_grad=True)
            g = torch.randn(2, channels, *size).contiguous(memory_format=fmt)
            row[f"{layout}_ms"] = best_ms(lambda: F.conv3d(x, w, padding=1, groups=channels).backward(g))
        print(json.dumps(row))


if __name__ == "__main__":
    main()
