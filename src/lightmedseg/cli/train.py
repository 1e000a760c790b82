"""``lightmedseg train --preset NAME --data DATASET_DIR --out RUN_DIR [...]``: train LightMedSeg.

Single process: ``lightmedseg train ...``. Several GPUs or nodes: ``torchrun --nproc_per_node N
-m lightmedseg.cli.main train ...`` or one ``srun`` task per GPU (see docs/training.md); only rank 0
prints and writes.

Exit status: 0 finished (the schedule, or ``--max-steps``); 75 stopped before the end of the schedule
by SIGUSR1/SIGTERM/Ctrl-C or ``--max-minutes``, with a checkpoint - run again with ``--resume`` (under
torchrun 0 instead, with a line on stderr and ``"stopped"`` in the summary: torchrun reports any non-zero
exit as a failure); 2 refused (bad input, run folder in use, a job's processes did not all join); 1
unexpected failure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from lightmedseg.cli import path_arg


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", help="preset name (brats, acdc, demo) or YAML path; optional with --resume")
    parser.add_argument("--variant", help="network variant (ghost, standard, k16, no_lspm, ...) overriding the preset's")
    parser.add_argument("--data", required=True, type=path_arg, help="converted dataset folder (holds dataset.json)")
    parser.add_argument("-o", "--output", "--out", dest="out", required=True, type=path_arg,
                        help="run folder for config, checkpoints, logs and curves")
    parser.add_argument("--split", help="split file naming train/validation cases (default: seeded 80/20 split)")
    parser.add_argument("--fold", type=int, help="fold of a cross-validation split file")
    parser.add_argument("--max-steps", type=int, help="stop (with a checkpoint) after N optimiser steps in total")
    parser.add_argument("--max-minutes", type=float, help="stop (with a checkpoint) after M minutes of this invocation")
    parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint_last.pt")
    parser.add_argument("--init-weights", metavar="MODEL",
                        help="start from these weights (run folder, model file or shipped name) with a fresh "
                             "optimiser and schedule: fine-tuning or a second training stage")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a preset value, e.g. --set data.patch_size=[32,32,32] (repeatable)")
    parser.add_argument("--reference", action="store_true",
                        help="call the plain PyTorch model even if train.fast is set")
    parser.add_argument("-q", "--quiet", "--no-progress", dest="no_progress", action="store_true",
                        help="no progress bar (logs still written)")
    parser.add_argument("--device", default=None, metavar="DEVICE",
                        help="auto (a GPU if present, the default), cpu, cuda, cuda:N or gpu; sets train.device")
    parser.add_argument("--finalize", action="store_true",
                        help="when training completes, run lightmedseg finalize on the run: score its model files "
                             "on validation, keep the best (or the average of best and last) as RUN/model.safetensors, "
                             "choose TTA and post-processing and write RUN/card.json")
    parser.add_argument("--cache-dir", help="folder of the data.cache=disk cache, ideally node-local "
                                            "(default: $TMPDIR/lightmedseg-cache/...)")


def train_device(name: str) -> str:
    """``--device`` as ``train.device``: auto, cpu, cuda or cuda:N (``gpu`` is cuda); anything else is refused."""
    value = "cuda" if name == "gpu" else name
    if value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit()):
        return value
    raise ValueError(f"--device {name!r}: expected auto, cpu, cuda, cuda:N or gpu")


def run(args: argparse.Namespace) -> int:
    from lightmedseg.config import load_config
    from lightmedseg.training.trainer import exit_status, resume_hint, train

    if args.preset is None and not args.resume:
        raise ValueError("--preset is required to start a new run (e.g. --preset demo)")
    if args.device is not None:
        args.overrides = [*args.overrides, f"train.device={train_device(args.device)}"]
    # Checked against the schema before anything is written; a resumed run takes only the keys given (budget).
    config = load_config(args.preset, args.variant, args.overrides, fill=not args.resume) if args.preset else (
        {"train": _train_overrides(args.overrides)} if args.overrides else None)
    if int(os.environ.get("RANK", "0")) == 0:
        from lightmedseg.io_utils import check_writable

        check_writable(args.out, "run folder")
    summary = train(config, args.data, args.out, split=args.split, fold=args.fold, max_steps=args.max_steps,
                    max_minutes=args.max_minutes, resume=args.resume, reference=args.reference,
                    progress=not args.no_progress, init_weights=args.init_weights, cache_dir=args.cache_dir,
                    resume_explicit=[o.partition("=")[0].strip() for o in args.overrides] if args.preset else None)
    if int(os.environ.get("RANK", "0")) == 0:  # set by torchrun, or from SLURM's variables by the trainer
        print(json.dumps(summary, indent=2))
        if hint := resume_hint(summary):
            print(f"lightmedseg train: {hint}", file=sys.stderr)
        if args.finalize:
            _finalize(args, summary)
    return exit_status(summary)


def _finalize(args: argparse.Namespace, summary: dict) -> None:
    """``--finalize``: the run's model and card (:func:`lightmedseg.training.finalize.finalize`) once the
    schedule or ``--max-steps`` is done; a stopped run (resumable) is finalized when it completes."""
    from lightmedseg.training.trainer import FINISHED

    if summary.get("stopped") not in FINISHED:
        print(f"lightmedseg train: --finalize waits for the end of training (stopped: {summary.get('stopped')})",
              file=sys.stderr)
        return
    from lightmedseg.training.finalize import Options, finalize

    device = args.device or "auto"
    report = finalize(args.out, args.data, Options(device=device, log=(lambda m: None) if args.no_progress else print))
    print(f"lightmedseg train: finalized {report.model} from {report.chosen} (card: {args.out / 'card.json'})")


def _train_overrides(overrides: list[str]) -> dict:
    """``train.*`` budget overrides given with --resume and no preset (e.g. train.epochs=400)."""
    from lightmedseg.config import apply_overrides, validate_config
    from lightmedseg.training.resume import RESUME_OVERRIDABLE

    given = validate_config(apply_overrides({}, overrides), fill=False)
    allowed = {f"train.{k}" for k in RESUME_OVERRIDABLE}
    keys = {f"{section}.{k}" if isinstance(v, dict) else section for section, v in given.items()
            for k in (v if isinstance(v, dict) else [None])}
    if bad := sorted(keys - allowed):
        raise ValueError(f"--resume continues with the run's stored config; {bad} cannot be changed "
                         f"(allowed: {sorted(allowed)})")
    return given.get("train", {})
