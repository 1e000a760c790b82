#!/usr/bin/env python
"""Validation Dice of several run folders side by side: a markdown table (rows = runs, columns = steps) and
one figure of the curves. For the CPU pairs of issue 17 (stage 4, crop size) and issue 28. Where a run folder
holds ``eval/card_defaults*.csv`` (issue 28's ``score_with_card.sh``: snapshots scored with the shipped card's
defaults), those points are a second row and a dashed curve, "LABEL, card defaults".

    python experiments/acdc_issue17/plot_runs.py experiments/acdc_issue17/stage4_rot:"rotation +-180" \
        experiments/acdc_issue17/stage4_ctl:"rotation +-30 (control)" --out docs/img/acdc_stage4.png
"""

from __future__ import annotations

import argparse
import csv
import re
from pathlib import Path

import yaml
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def validation_points(run: Path) -> dict[int, float]:
    """step -> validation mean Dice (%) from a run folder's metrics.csv."""
    with open(run / "metrics.csv") as fh:
        return {int(r["step"]): 100 * float(r["val_dice"]) for r in csv.DictReader(fh)
                if r["val_dice"] not in ("", "nan")}


def card_default_points(run: Path) -> dict[int, float]:
    """step -> mean Dice (%) with the card's defaults, from RUN/eval/card_defaults*.csv (snapshot names carry the
    step: model_step0002000.safetensors); empty when the run has no such table."""
    points: dict[int, float] = {}
    for table in sorted((run / "eval").glob("card_defaults*.csv")):  # one table per scoring session
        with open(table) as fh:
            points.update({int(m.group(1)): float(r["mean_dice"]) for r in csv.DictReader(fh)
                           if (m := re.search(r"model_step(\d+)", r["model"]))})
    return points


def run_batch(folder: Path) -> int | None:
    """The run's global batch size (train.batch_size of its config.yaml), None when it has none."""
    try:
        return int(yaml.safe_load((folder / "config.yaml").read_text())["train"]["batch_size"])
    except (OSError, KeyError, TypeError, ValueError):
        return None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="RUN_FOLDER:LABEL")
    p.add_argument("--out", type=Path, help="figure to write (PNG)")
    args = p.parse_args()
    curves = {}
    batches = set()
    for item in args.runs:
        folder, _, label = item.partition(":")
        batches.add(run_batch(Path(folder)))
        label = label or Path(folder).name
        curves[label] = validation_points(Path(folder))
        if card := card_default_points(Path(folder)):
            curves[f"{label}, card defaults"] = card
    steps = sorted({s for c in curves.values() for s in c})
    print("| run | " + " | ".join(str(s) for s in steps) + " |")
    print("| --- |" + " ---: |" * len(steps))
    for label, points in curves.items():
        print(f"| {label} | " + " | ".join(f"{points[s]:.1f}" if s in points else "-" for s in steps) + " |")
    if args.out:
        fig, ax = plt.subplots(figsize=(6, 4))
        for label, points in curves.items():
            xs = sorted(points)
            ax.plot(xs, [points[x] for x in xs], marker="o", label=label,
                    linestyle="--" if label.endswith("card defaults") else "-")
        ax.set_xlabel(f"optimiser step (batch {' or '.join(map(str, sorted(batches - {None}))) or '?'})")
        ax.set_ylabel("validation mean Dice (%)")
        ax.set_title("solid: one pass; dashed: the card's defaults (TTA, post-processing)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.out, dpi=100)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
