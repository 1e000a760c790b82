"""``lightmedseg demo``: synthetic data -> train -> predict -> evaluate -> report, with no download."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", "--out", dest="out", default="lightmedseg_demo", help="new folder for data, run and report (default ./lightmedseg_demo)")
    p.add_argument("--minutes", type=float, default=6.0, help="training budget in minutes (default 6)")
    p.add_argument("--max-steps", type=int, default=None, help="stop training after N steps (for quick checks)")
    p.add_argument("--train-cases", type=int, default=10, help="synthetic training cases (default 10)")
    p.add_argument("--test-cases", type=int, default=3, help="synthetic unseen test cases (default 3)")
    p.add_argument("--shape", type=int, nargs=3, default=[64, 64, 64], metavar=("Z", "Y", "X"),
                   help="phantom size, multiples of 16 (default 64 64 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override the demo preset, e.g. data.patch_size=[32,32,32]")
    p.add_argument("-q", "--quiet", "--no-progress", dest="no_progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from lightmedseg.tools.demo import DemoSettings, run_demo

    from lightmedseg.model.network import PAPER_SIZE_DIVISOR  # the demo preset's network

    if any(s < m or s % m for s, m in zip(args.shape, PAPER_SIZE_DIVISOR)):
        raise ValueError(f"--shape {args.shape}: every size must be a positive multiple of {PAPER_SIZE_DIVISOR[0]}")
    report = run_demo(DemoSettings(
        out_dir=Path(args.out), train_cases=args.train_cases, test_cases=args.test_cases, shape=args.shape,
        minutes=args.minutes, max_steps=args.max_steps, seed=args.seed, overrides=args.overrides,
        progress=not args.no_progress,
    ))
    print(f"\nDemo finished. Report: {report.resolve() / 'README.md'}")
    return 0
