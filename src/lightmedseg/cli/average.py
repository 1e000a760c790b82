"""``lightmedseg average -o OUT.safetensors MODEL MODEL [...]``: one model file whose weights are the mean of
the given model files' (checkpoints of one run, one network config): the gain of an ensemble of checkpoints
at the cost of one model (the shipped ``acdc`` is such an average). Score it with ``score-checkpoints --models``.
"""

from __future__ import annotations

import argparse

from lightmedseg.cli import path_arg


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="+", help="model files (or run folders) of one network, at least two")
    parser.add_argument("-o", "--output", required=True, type=path_arg, help="the averaged model file (.safetensors)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT file")


def run(args: argparse.Namespace) -> int:
    from lightmedseg.training.finalize import average_weights
    from lightmedseg.write_rule import check_output_file

    if args.output.suffix != ".safetensors":
        raise ValueError(f"-o {args.output}: expected a .safetensors file name")
    check_output_file(args.output, args.overwrite, "averaged model")  # never into a dataset, never over a model file
    out = average_weights(args.models, args.output)
    print(f"wrote {out}: the mean of {len(args.models)} model files' weights")
    return 0
