"""``lightmedseg plot RUN_DIR [--out PNG]``: training curves (losses, learning rate, validation Dice)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a training run folder (holds steps.csv / metrics.csv)")
    parser.add_argument("-o", "--output", "--out", dest="out", help="PNG to write (default RUN_DIR/curves.png)")


def run(args: argparse.Namespace) -> int:
    from lightmedseg.training.plots import plot_curves

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir}: no such run folder")
    print(f"wrote {plot_curves(run_dir, args.out)}")
    return 0
