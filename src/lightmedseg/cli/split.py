"""``lightmedseg split``: write train/validation/test case-ID files.

Examples::

    lightmedseg split DATASET --protocol acdc_nnformer -o acdc_split.json   # shipped split, resolved
    lightmedseg split DATASET --kfold 5 --seed 0 -o folds.json              # k folds grouped by patient
    lightmedseg split DATASET --fractions 0.7 0.1 0.2 -o split.json         # seeded random, by patient
    lightmedseg split --list                                                # shipped splits
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", nargs="?", help="dataset folder in the canonical layout")
    parser.add_argument("-o", "--output", help="split file to write (JSON)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--protocol", help="a shipped split (see --list), resolved against DATASET")
    mode.add_argument("--kfold", type=int, metavar="K", help="K folds grouped by patient")
    mode.add_argument("--fractions", type=float, nargs=3, metavar=("TRAIN", "VAL", "TEST"),
                      help="seeded random split by patient with these fractions")
    parser.add_argument("--seed", type=int, default=0, help="seed for --kfold / --fractions (default 0)")
    parser.add_argument("--list", action="store_true", help="list the shipped splits and exit")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT file")


def run(args: argparse.Namespace) -> int:
    from lightmedseg.data import splits as S
    from lightmedseg.data.layout import list_cases
    from lightmedseg.write_rule import check_output_file

    if args.list:
        for name in S.shipped_splits():
            split = S.read_split(name)
            print(f"{name}: " + ", ".join(f"{k} {len(v)}" for k, v in split.items()))
        return 0
    if not args.dataset or not args.output:
        raise ValueError("give DATASET and -o OUTPUT (or --list)")
    if not (args.protocol or args.kfold or args.fractions):
        raise ValueError("choose one of --protocol NAME, --kfold K or --fractions TRAIN VAL TEST")
    check_output_file(args.output, args.overwrite, "split file")  # never into the dataset, never a user's file
    cases = list_cases(args.dataset)
    if args.protocol:
        split = S.read_split(args.protocol, case_ids=cases)
        uncovered = sorted(set(cases) - {c for ids in split.values() for c in ids})
        S.write_split(args.output, split, protocol=args.protocol)
        if uncovered:
            print(f"note: {len(uncovered)} dataset cases are in no subset, e.g. {uncovered[:3]}")
    elif args.kfold:
        folds = S.kfold_splits(cases, args.kfold, args.seed)
        S.write_split(args.output, {"folds": folds}, protocol=f"{args.kfold}-fold by patient, seed {args.seed}")
        split = folds[0]
    else:
        split = S.random_split(cases, args.fractions, args.seed)
        S.write_split(args.output, split, protocol=f"random by patient {args.fractions}, seed {args.seed}")
    print(f"wrote {args.output}: " + ", ".join(f"{k} {len(v)}" for k, v in split.items())
          + (f" (fold 0 of {args.kfold})" if args.kfold else ""))
    return 0
