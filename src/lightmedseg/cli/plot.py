"""``lightmedseg plot RUN_DIR [--out PNG]``: training curves (losses, learning rate, validation Dice)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a training run folder (holds steps.csv / metrics.csv)")
    parser.add_argument("-o", "--output", "--out", dest="out", help="PNG to write (default RUN_DIR/curves.png)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


def run(args: argparse.Namespace) -> int:
    from lightmedseg.training.plots import plot_curves

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir}: no such run folder")
    if args.out is not None:  # RUN_DIR/curves.png is the run's own; any other existing file is the user's
        from lightmedseg.training.plots import CURVES_PNG
        from lightmedseg.write_rule import check_output_file

        own = (run_dir / CURVES_PNG).resolve()
        check_output_file(args.out, args.overwrite, "plot", ours=lambda p: p.resolve() == own)
    print(f"wrote {plot_curves(run_dir, args.out)}")
    return 0
