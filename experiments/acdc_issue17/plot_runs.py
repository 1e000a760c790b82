#!/usr/bin/env python
"""Validation Dice of several run folders side by side: a markdown table (rows = runs, columns = steps) and
one figure of the curves. For the CPU pairs of issue 17 (stage 4, crop size).

    python experiments/acdc_issue17/plot_runs.py experiments/acdc_issue17/stage4_rot:"rotation +-180" \
        experiments/acdc_issue17/stage4_ctl:"rotation +-30 (control)" --out docs/img/acdc_stage4.png
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def validation_points(run: Path) -> dict[int, float]:
    """step -> validation mean Dice (%) from a run folder's metrics.csv."""
    with open(run / "metrics.csv") as fh:
        return {int(r["step"]): 100 * float(r["val_dice"]) for r in csv.DictReader(fh)
                if r["val_dice"] not in ("", "nan")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="RUN_FOLDER:LABEL")
    p.add_argument("--out", type=Path, help="figure to write (PNG)")
    args = p.parse_args()
    curves = {}
    for item in args.runs:
        folder, _, label = item.partition(":")
        curves[label or Path(folder).name] = validation_points(Path(folder))
    steps = sorted({s for c in curves.values() for s in c})
    print("| run | " + " | ".join(str(s) for s in steps) + " |")
    print("| --- |" + " ---: |" * len(steps))
    for label, points in curves.items():
        print(f"| {label} | " + " | ".join(f"{points[s]:.1f}" if s in points else "-" for s in steps) + " |")
    if args.out:
        fig, ax = plt.subplots(figsize=(6, 4))
        for label, points in curves.items():
            xs = sorted(points)
            ax.plot(xs, [points[x] for x in xs], marker="o", label=label)
        ax.set_xlabel("optimiser step (batch 2)")
        ax.set_ylabel("validation mean Dice (%)")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.out, dpi=100)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
