"""Entry point of the ``lightmedseg`` console script.

Each subcommand lives in its own module ``lightmedseg.cli.<name>`` exposing
``add_arguments(parser)`` and ``run(args) -> int``; this file only dispatches, so a pipeline stage
can change its options without touching the others.

Only the subcommand on the command line has its module imported and its options built, so
``lightmedseg --help`` and ``--version`` import no subcommand (no torch, no MONAI: well under a second) and
``lightmedseg predict ...`` does not pay for ``train``'s imports. tests/test_import_graph.py holds the line.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterable

from lightmedseg.io_utils import describe_os_error

# (subcommand, module, one-line help) in the order a user meets them.
COMMANDS: list[tuple[str, str, str]] = [
    ("demo", "demo", "synthetic data -> train -> predict -> evaluate -> report, no download"),
    ("synth", "synth", "write a synthetic multi-modal phantom dataset in the canonical layout"),
    ("convert", "convert", "convert BraTS / MSD / ACDC / nnU-Net data to the canonical layout"),
    ("split", "split", "write train/validation/test case-ID split files"),
    ("train", "train", "train LightMedSeg on a converted dataset"),
    ("score-checkpoints", "score_checkpoints", "validation scores of a run's model files with predict's defaults (CSV)"),
    ("average", "average", "average the weights of model files of one network into one model file"),
    ("make-card", "make_card", "choose TTA and post-processing on validation and write the run's card.json"),
    ("finalize", "finalize", "score, average, choose defaults: a run becomes a shippable model (-m RUN)"),
    ("models", "models", "the shipped models: task, channels, training spacing, labels, scores"),
    ("predict", "predict", "segment NIfTI/NRRD/MetaImage/DICOM volumes with a trained model (sliding window)"),
    ("evaluate", "evaluate", "Dice / HD95 per class and region against reference labels"),
    ("plot", "plot", "training curves of a run (losses, learning rate, validation Dice)"),
    ("profile", "profile", "parameters, multiply-adds, peak memory and latency of a variant"),
    ("export", "export", "export a trained model to ONNX (and TorchScript)"),
]


class CLIError(Exception):
    """An error whose message is meant for the user, printed without a traceback."""


def _command_in(argv: list[str]) -> str | None:
    """The subcommand named on the command line: its first word that is not an option."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The parser; ``commands`` (default: all) get their options, the others only their name and help line."""
    chosen = None if commands is None else set(commands)
    parser = argparse.ArgumentParser(
        prog="lightmedseg",
        description="LightMedSeg: lightweight 3D medical image segmentation (paper reimplementation).",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name, help_text in COMMANDS:
        if chosen is not None and name not in chosen:
            sub.add_parser(name, help=help_text, description=help_text)
            continue
        try:
            module = importlib.import_module(f"lightmedseg.cli.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"lightmedseg.cli.{module_name}":
                continue  # subcommand not available in this build
            raise
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = _command_in(argv)
    parser = build_parser([command] if command else [])
    args = parser.parse_args(argv)
    if args.version:
        from lightmedseg import __version__

        print(__version__)
        return 0
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except (CLIError, ValueError) as exc:
        print(f"lightmedseg {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # read-only folder, full disk, missing file...: one line with the path and errno
        print(f"lightmedseg {args.command}: error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lightmedseg {args.command}: interrupted", file=sys.stderr)
        return 130
    except ImportError as exc:  # an optional dependency group is not installed: name the extra
        from lightmedseg.extras import missing_extra

        hint = missing_extra(exc)
        if hint is None:
            raise
        print(f"lightmedseg {args.command}: error: {hint}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
