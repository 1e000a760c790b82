"""``lightmedseg finalize RUN --data DATASET``: from a trained run to a shippable model in one command.

Scores the run's model files and the average of ``model_best`` and ``model_last`` on its validation split
with predict's code path (``score-checkpoints``), keeps the best as ``RUN/model.safetensors``, then chooses
the TTA mode and post-processing on validation and writes ``RUN/card.json`` (``make-card``): afterwards
``lightmedseg predict -m RUN`` predicts the way the shipped models do. ``lightmedseg train --finalize``
runs this when training finishes. See docs/training.md, "From a run to a shippable model".
"""

from __future__ import annotations

import argparse

from lightmedseg.cli import path_arg
from lightmedseg.inference.options import DEVICES_HELP


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """``--device``, ``--backend``, ``--precision``, ``--max-cases`` and ``-q``: shared by the model-making commands."""
    from lightmedseg.inference.backends import BACKENDS, PRECISIONS

    parser.add_argument("--device", default="auto", help=f"{DEVICES_HELP}; default auto")
    parser.add_argument("--backend", choices=BACKENDS, default="auto", help="as lightmedseg predict --backend")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help="as lightmedseg predict --precision")
    parser.add_argument("--max-cases", type=int, default=None, metavar="N",
                        help="only the first N validation cases (a quick check; choices on few cases are noisy)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no line per model and TTA mode")


def add_tta_modes(parser: argparse.ArgumentParser) -> None:
    """``--tta-modes``: the candidate TTA modes (shared by ``make-card`` and ``finalize``)."""
    from lightmedseg.training.finalize import TTA_CANDIDATES

    parser.add_argument("--tta-modes", nargs="+", choices=TTA_CANDIDATES, default=list(TTA_CANDIDATES), metavar="MODE",
                        help=f"the TTA modes to try, of {list(TTA_CANDIDATES)} (default all; mirror and rot90 cost "
                             "8 passes per window)")


def options_of(args: argparse.Namespace):
    """The :class:`~lightmedseg.training.finalize.Options` of the parsed arguments."""
    from lightmedseg.training.finalize import Options

    return Options(device=args.device, backend=args.backend, precision=args.precision,
                   log=(lambda message: None) if args.quiet else print)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=path_arg, help="run folder written by lightmedseg train (holds split.json)")
    parser.add_argument("--data", required=True, type=path_arg, help="the converted dataset the run was trained on")
    add_tta_modes(parser)
    add_model_options(parser)


def run(args: argparse.Namespace) -> int:
    from lightmedseg.training.finalize import finalize

    report = finalize(args.run, args.data, options_of(args), args.tta_modes, args.max_cases)
    validation = report.card["validation"]
    print(f"{report.model}: from {report.chosen}; validation mean Dice {validation['mean_dice']:.2f} with "
          f"TTA {report.card['predict']['tta']}, post-processing {report.card['postprocess']['keep_largest']} "
          f"{report.card['postprocess']['require_contact']} (card: {args.run / 'card.json'})")
    return 0
