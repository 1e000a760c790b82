"""``lightmedseg score-checkpoints RUN --data DATASET``: validation scores of each model file of a run.

Every model file (``model_best``, ``model_last``, ``snapshots/*.safetensors``, or those given with
``--models``) is predicted on the run's validation cases with predict's code path and the run card's TTA and
post-processing (predict's defaults when the run has no card yet), and scored in strict mode; one row per
file goes to ``RUN/finalize/checkpoints.csv`` (or ``-o``). nnU-Net's ``find_best_configuration``, for
checkpoints.
"""

from __future__ import annotations

import argparse

from lightmedseg.cli import path_arg
from lightmedseg.cli.finalize import add_model_options, options_of


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=path_arg, help="run folder written by lightmedseg train (holds split.json)")
    parser.add_argument("--data", required=True, type=path_arg, help="the converted dataset the run was trained on")
    parser.add_argument("--models", nargs="+", type=path_arg, metavar="FILE",
                        help="model files to score instead of the run's (e.g. an average from lightmedseg average)")
    parser.add_argument("-o", "--output", type=path_arg, help="the CSV table (default RUN/finalize/checkpoints.csv)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT file")
    add_model_options(parser)


def run(args: argparse.Namespace) -> int:
    from lightmedseg.training.finalize import score_checkpoints, validation_set
    from lightmedseg.write_rule import check_output_file

    if args.output is not None:  # the default, in the run's finalize/ folder, is the tool's own
        check_output_file(args.output, args.overwrite, "checkpoint table")
    cases = validation_set(args.run, args.data, args.max_cases)
    rows = score_checkpoints(args.run, args.data, args.models, options_of(args), cases, args.output)
    best = max(rows, key=lambda r: r["mean_dice"])
    print(f"scored {len(rows)} model file(s) on {len(cases.case_ids)} validation case(s); best {best['mean_dice']:.2f}: "
          f"{best['model']}")
    return 0
