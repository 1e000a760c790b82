"""``lightmedseg make-card RUN --data DATASET``: choose TTA and post-processing on validation, write the card.

The run's model (``--model``, default the file ``RUN`` resolves to) is predicted on the validation cases once
per TTA mode without post-processing; per class, keeping the largest component and dropping components
that touch no other class are kept when they raise the mean Dice (nnU-Net's ``determine_postprocessing``).
The best mode with its post-processing is written into ``RUN/card.json`` (other fields kept), every variant
tried into ``RUN/finalize/defaults.csv``; ``lightmedseg predict -m RUN`` then uses them.
"""

from __future__ import annotations

import argparse

from lightmedseg.cli import path_arg
from lightmedseg.cli.finalize import add_model_options, add_tta_modes, options_of


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=path_arg, help="run folder written by lightmedseg train (holds split.json)")
    parser.add_argument("--data", required=True, type=path_arg, help="the converted dataset the run was trained on")
    parser.add_argument("--model", type=path_arg, help="the model file the card is for (default: what RUN resolves to)")
    add_tta_modes(parser)
    add_model_options(parser)


def run(args: argparse.Namespace) -> int:
    from lightmedseg.training.finalize import determine_defaults, validation_set

    cases = validation_set(args.run, args.data, args.max_cases)
    card = determine_defaults(args.run, args.data, args.model, args.tta_modes, options_of(args), cases)
    print(f"wrote {args.run / 'card.json'}: TTA {card['predict']['tta']}, keep largest "
          f"{card['postprocess']['keep_largest']}, require contact {card['postprocess']['require_contact']}; "
          f"validation mean Dice {card['validation']['mean_dice']:.2f}")
    return 0
