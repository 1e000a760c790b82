"""``lightmedseg convert FORMAT SRC DST [--spacing Z Y X] [--overwrite]``: import a dataset."""

from __future__ import annotations

import argparse

from lightmedseg.cli import path_arg
from lightmedseg.data.convert import FORMATS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("format", choices=sorted(FORMATS), metavar="FORMAT",
                        help="; ".join(f"{k}: {v}" for k, v in FORMATS.items()))
    parser.add_argument("src", type=path_arg, help="source folder (read only)")
    parser.add_argument("dst", type=path_arg, help="output folder, written in the canonical nnU-Net v2 raw layout")
    parser.add_argument("--spacing", type=float, nargs=3, metavar=("Z", "Y", "X"),
                        help="voxel spacing in mm for sources that store none (acdc-h5; default 10 1.5625 1.5625)")
    parser.add_argument("--overwrite", action="store_true", help="replace DST if it exists")


def run(args: argparse.Namespace) -> int:
    from lightmedseg.data.convert import convert

    meta = convert(args.format, args.src, args.dst, spacing=args.spacing, overwrite=args.overwrite)
    print(f"wrote {meta['numTraining']} training cases ({len(meta['channel_names'])} channels, "
          f"labels {meta['labels']}) to {args.dst}")
    return 0
