"""Seconds per nnU-Net v2 training iteration on this CPU, measured with nnU-Net's own trainer, plans and data
loader (issue 28, item 3). Builds the trainer exactly as ``nnUNetv2_train DATASET 3d_fullres FOLD -device cpu``
does, runs its ``on_train_start`` (network, loss, optimiser, data loaders), then times ``train_step`` on
batches from its training loader, and ``validation_step`` on batches from its validation loader; prints one
JSON object. Why not the CLI: it sets torch to every core (``multiprocessing.cpu_count()``) and reports a time
only per 250-iteration epoch, hours on this CPU; here the thread count is ours and a few dozen iterations do.

    nnUNet_raw=... nnUNet_preprocessed=... nnUNet_results=... nnUNet_n_proc_DA=0 OMP_NUM_THREADS=1 \
    /work/venv-nnunet/bin/python experiments/acdc_issue28/nnunet/time_train_iterations.py --threads 1

Runs in nnU-Net's own virtual environment; nothing in the lightmedseg package imports this file or nnunetv2.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time

import torch

DEFAULT_WARMUP = 2


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (the platform string where that is missing).

    A copy of ``lightmedseg.hardware.cpu_name``: this script runs in nnU-Net's own venv, without lightmedseg.
    """
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def timed(fn, n: int, label: str) -> tuple[list[float], list[float], list[float]]:
    """Call ``fn`` n times; it returns (seconds loading, seconds computing) for one iteration. Also returns this
    process's CPU seconds per iteration (user + system): on a loaded machine the wall time includes waiting
    for a core, the CPU time approximates what one idle core would take. Progress goes to stderr, since one
    iteration can take minutes here."""
    loads, steps, cpu = [], [], []
    for i in range(n):
        c0 = time.process_time()
        load, step = fn()
        cpu.append(time.process_time() - c0)
        loads.append(load)
        steps.append(step)
        print(f"{label} {i + 1}/{n}: data {load:.2f} s, step {step:.2f} s, CPU {cpu[-1]:.2f} s",
              file=sys.stderr, flush=True)
    return loads, steps, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="Dataset027_ACDC")
    parser.add_argument("--configuration", default="3d_fullres")
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--trainer", default="nnUNetTrainer")
    parser.add_argument("--plans", default="nnUNetPlans")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=12, help="timed training iterations (after warm-up)")
    parser.add_argument("--val-iterations", type=int, default=4, help="timed validation iterations")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help="untimed training iterations first")
    parser.add_argument("--save-checkpoint", default="", metavar="NAME",
                        help="also save the (barely trained) network as NAME in the fold folder, so that "
                        "nnUNetv2_predict -chk NAME can time inference; its predictions mean nothing")
    args = parser.parse_args()
    if args.threads < 1 or args.iterations < 1 or args.val_iterations < 0 or args.warmup < 0:
        parser.error("--threads and --iterations must be >= 1, --val-iterations and --warmup >= 0")

    from nnunetv2.run.run_training import get_trainer_from_args

    torch.set_num_threads(args.threads)
    trainer = get_trainer_from_args(args.dataset, args.configuration, args.fold, args.trainer, args.plans,
                                    device=torch.device("cpu"))
    trainer.on_train_start()
    trainer.on_train_epoch_start()
    params = sum(p.numel() for p in trainer.network.parameters())

    def iteration(loader, step):
        """One iteration of nnU-Net's own loop: (seconds loading the batch, seconds in its step)."""
        def run() -> tuple[float, float]:
            t0 = time.perf_counter()
            batch = next(loader)
            t1 = time.perf_counter()
            step(batch)
            return t1 - t0, time.perf_counter() - t1
        return run

    train_iteration = iteration(trainer.dataloader_train, trainer.train_step)
    val_iteration = iteration(trainer.dataloader_val, trainer.validation_step)

    timed(train_iteration, args.warmup, "warm-up")
    loads, steps, cpus = timed(train_iteration, args.iterations, "train")
    trainer.on_validation_epoch_start()
    with torch.no_grad():
        vloads, vsteps, vcpus = timed(val_iteration, args.val_iterations, "validation")

    if args.save_checkpoint:
        trainer.save_checkpoint(os.path.join(trainer.output_folder, args.save_checkpoint))

    train_s = statistics.median([a + b for a, b in zip(loads, steps)])
    val_s = statistics.median([a + b for a, b in zip(vloads, vsteps)]) if vsteps else 0.0
    epoch_s = trainer.num_iterations_per_epoch * train_s + trainer.num_val_iterations_per_epoch * val_s
    print(json.dumps({
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_name(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "trainer": args.trainer,
        "configuration": args.configuration,
        "patch_size": list(trainer.configuration_manager.patch_size),
        "batch_size": trainer.batch_size,
        "parameters": params,
        "iterations_timed": args.iterations,
        "train_s_per_iteration_median": round(train_s, 3),
        "train_s_per_iteration_all": [round(a + b, 3) for a, b in zip(loads, steps)],
        "train_cpu_s_per_iteration_median": round(statistics.median(cpus), 3),
        "train_cpu_s_per_iteration_all": [round(c, 3) for c in cpus],
        "val_cpu_s_per_iteration_median": round(statistics.median(vcpus), 3) if vcpus else 0.0,
        "train_data_s_median": round(statistics.median(loads), 3),
        "train_step_s_median": round(statistics.median(steps), 3),
        "val_s_per_iteration_median": round(val_s, 3),
        "iterations_per_epoch": trainer.num_iterations_per_epoch,
        "val_iterations_per_epoch": trainer.num_val_iterations_per_epoch,
        "epoch_s_estimate": round(epoch_s, 1),
    }, indent=2))


if __name__ == "__main__":
    main()
