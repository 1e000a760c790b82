"""``lightmedseg synth DST --cases N --seed S [--shape Z Y X]``: write synthetic phantoms."""

from __future__ import annotations

import argparse

from lightmedseg.cli import path_arg


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dst", type=path_arg, help="output dataset folder (canonical nnU-Net v2 raw layout)")
    parser.add_argument("--cases", type=int, default=8, help="number of cases (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--shape", type=int, nargs=3, default=[64, 64, 64], metavar=("Z", "Y", "X"),
                        help="volume size in voxels (default 64 64 64)")
    parser.add_argument("--overwrite", action="store_true", help="replace DST if it exists")


def run(args: argparse.Namespace) -> int:
    from lightmedseg.data.synth import make_synthetic_dataset

    out = make_synthetic_dataset(args.dst, num_cases=args.cases, seed=args.seed, shape=args.shape,
                                 overwrite=args.overwrite)
    print(f"wrote {args.cases} synthetic cases to {out}")
    return 0
