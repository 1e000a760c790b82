"""Where and how the training runs: device, torch.distributed (torchrun or SLURM srun), mixed precision,
determinism.

Everything here wraps PyTorch's own facilities (``torch.distributed`` with ``env://`` initialisation,
``torch.autocast``, ``torch.amp.GradScaler``, ``torch.use_deterministic_algorithms``); the only new code
is the policy choosing among them from ``config["train"]`` and the reading of SLURM's task variables
when a job is started by ``srun`` instead of ``torchrun`` (:func:`distributed_env`).
"""

from __future__ import annotations

import contextlib
import datetime
import threading
import os
import random
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Callable, ContextManager

import numpy as np
import torch
import torch.distributed as dist

from lightmedseg.config import DEFAULT_DIST_TIMEOUT_MINUTES  # train.dist_timeout_minutes

AMP_CHOICES = ("auto", "bf16", "fp16", "none")
# MASTER_PORT under SLURM when unset: SLURM_PORT_BASE + SLURM_JOB_ID mod SLURM_PORT_SPAN (jobs sharing a node differ).
SLURM_PORT_BASE, SLURM_PORT_SPAN = 20000, 20000


class DistributedSetupError(ValueError):
    """The processes of a job could not form their group (a rank missing, an unreachable master)."""


def first_slurm_host(nodelist: str) -> str:
    """First host name of a SLURM node list (``gpu[003-004,007],cpu1`` -> ``gpu003``), without ``scontrol``.

    The fallback of :func:`master_address` when ``scontrol`` is not on PATH: the first entry at bracket
    depth 0, each ``[...]`` replaced by its first number (zero padding kept).
    """
    depth, end = 0, len(nodelist)
    for i, ch in enumerate(nodelist):
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            end = i
            break
    entry = nodelist[:end].strip()
    return re.sub(r"\[([^\]]*)\]", lambda m: re.split(r"[,-]", m.group(1))[0], entry)


def master_address(nodelist: str) -> str:
    """First host of ``nodelist`` as ``scontrol show hostnames`` gives it, else :func:`first_slurm_host`."""
    scontrol = shutil.which("scontrol")
    if scontrol:
        try:
            out = subprocess.run([scontrol, "show", "hostnames", nodelist], capture_output=True, text=True,
                                 timeout=30, check=True).stdout.split()
            if out:
                return out[0]
        except (OSError, subprocess.SubprocessError):
            pass
    return first_slurm_host(nodelist)


def distributed_env(environ: dict[str, str] | None = None) -> tuple[int, int, int, str]:
    """``(rank, world_size, local_rank, launcher)`` of this process.

    torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` win when present (launcher ``torchrun``); else a task
    started by ``srun`` is read from ``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS`` (or ``SLURM_NTASKS``) and
    ``SLURM_LOCALID`` (launcher ``slurm``); else a single process (``single``).
    """
    env = os.environ if environ is None else environ
    if "RANK" in env or "WORLD_SIZE" in env:
        return int(env.get("RANK", "0")), int(env.get("WORLD_SIZE", "1")), int(env.get("LOCAL_RANK", "0")), "torchrun"
    tasks = env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS")
    if "SLURM_PROCID" in env and tasks:
        return int(env["SLURM_PROCID"]), int(tasks), int(env.get("SLURM_LOCALID", "0")), "slurm"
    return 0, 1, 0, "single"


def _export_slurm_rendezvous(rank: int, world: int, local: int) -> None:
    """Set torchrun's variables from SLURM's, so ``env://`` and everything after is the torchrun code path."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(local))
    if "MASTER_ADDR" not in os.environ:
        nodelist = (os.environ.get("SLURM_STEP_NODELIST") or os.environ.get("SLURM_JOB_NODELIST")
                    or os.environ.get("SLURM_NODELIST"))
        if not nodelist:
            raise DistributedSetupError("started by SLURM without MASTER_ADDR or SLURM_JOB_NODELIST; "
                                        "export MASTER_ADDR=<first node> in the job script")
        os.environ["MASTER_ADDR"] = master_address(nodelist)
    if "MASTER_PORT" not in os.environ:
        job = int(os.environ.get("SLURM_JOB_ID", "0") or 0)
        os.environ["MASTER_PORT"] = str(SLURM_PORT_BASE + job % SLURM_PORT_SPAN)


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job (a single process is rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


class StoppedWhileJoining(Exception):
    """A stop signal (SIGTERM, SIGINT, SIGUSR1) arrived while this rank waited for the job's other processes."""

    def __init__(self, signal_name: str):
        super().__init__(f"stopped by {signal_name} while waiting for the job's other processes")
        self.signal_name = signal_name


def _join_interruptibly(join: Callable[[], None], stop: Callable[[], str | None] | None, poll_s: float = 0.2) -> None:
    """Run ``join`` (the rendezvous) in a helper thread while this (main) thread keeps handling signals.

    The rendezvous blocks in C++ without returning to Python, so a Python signal handler would only run once
    it ends (minutes later, at the timeout): ``scancel`` and Ctrl-C would be ignored. Here the main thread
    polls ``stop()`` (set by the handlers) and raises :class:`StoppedWhileJoining` at once; the helper thread
    is a daemon and dies with the process, which has written nothing yet.
    """
    if stop is None:
        join()
        return
    outcome: dict[str, BaseException] = {}

    def target() -> None:
        try:
            join()
        except BaseException as exc:  # handed to the main thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="lightmedseg-rendezvous", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(poll_s)
        if (name := stop()) and thread.is_alive():
            raise StoppedWhileJoining(name)
    if "error" in outcome:
        raise outcome["error"]


def init_distributed(device: str | None = None,
                     timeout_minutes: float | None = DEFAULT_DIST_TIMEOUT_MINUTES,
                     stop: Callable[[], str | None] | None = None) -> DistInfo:
    """Join the job described by the environment: torchrun's variables, or SLURM's (see :func:`distributed_env`).

    Uses NCCL when the process drives a CUDA device and gloo on CPU; ``env://`` works across nodes.
    ``timeout_minutes`` bounds the rendezvous and every collective: a rank that does not join (a lone task
    of a multi-task job) or stops answering fails with :class:`DistributedSetupError` or a collective
    error instead of hanging. A single process (world size 1) returns a :class:`DistInfo` at once.
    ``stop``: returns the name of a stop signal received (None: none); while the rendezvous waits it is polled,
    and :class:`StoppedWhileJoining` raised as soon as it says one came (see :func:`_join_interruptibly`).
    """
    use_cuda = torch.cuda.is_available() if device in (None, "auto") else str(device).startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise ValueError(f"train.device={device!r} but CUDA is not available on this machine")
    rank, world, local, launcher = distributed_env()
    if not 0 <= rank < world:
        raise DistributedSetupError(f"rank {rank} is outside world size {world} ({launcher} variables)")
    if launcher == "slurm" and world > 1:
        _export_slurm_rendezvous(rank, world, local)
    if use_cuda:
        if world == 1 and str(device).startswith("cuda:"):  # one process on a chosen GPU
            dev = torch.device(str(device))
        else:
            dev = torch.device("cuda", local % torch.cuda.device_count() if world > 1 else torch.cuda.current_device())
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    minutes = float(timeout_minutes if timeout_minutes is not None else DEFAULT_DIST_TIMEOUT_MINUTES)
    if world > 1 and not dist.is_initialized():
        try:
            _join_interruptibly(lambda: dist.init_process_group(
                backend="nccl" if use_cuda else "gloo", init_method="env://", rank=rank, world_size=world,
                timeout=datetime.timedelta(minutes=minutes)), stop)
        except RuntimeError as exc:  # DistStoreError / DistNetworkError: a peer or the master is missing
            where = f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
            reason = (str(exc).strip().splitlines() or ["no detail"])[0][:200]
            raise DistributedSetupError(
                f"rank {rank} of {world} ({launcher}): the job's {world} processes did not all join at {where} "
                f"within {minutes:g} min ({reason}); start all {world} tasks (srun / torchrun), or set WORLD_SIZE=1 "
                "for a single process") from None
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=dev)


def cleanup_distributed() -> None:
    """Leave the process group (safe to call when none was created)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


@dataclass(frozen=True)
class AmpPolicy:
    """Autocast dtype (None = full fp32) and whether a GradScaler is needed (fp16 only)."""

    dtype: torch.dtype | None
    use_scaler: bool

    @property
    def name(self) -> str:
        return {None: "none", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]


def amp_policy(amp: str | bool | None, device: torch.device) -> AmpPolicy:
    """Resolve ``train.amp`` (auto | bf16 | fp16 | none) for ``device``.

    CPU: ``auto`` = fp32. On an AVX512-BF16 + AMX Xeon (docs/performance.md, "Training step: profile and
    levers") a bf16 autocast step of the fast path was 1.8-1.9x slower than fp32 with torch's kernels (oneDNN's
    bf16 backward of depthwise convs and channels-last group norms); with :mod:`lightmedseg.fast.autograd` it
    is on par with fp32 (0.94x-1.00x in three interleaved runs) and a paired 150-step run gave the same loss
    curve (within 0.15%), but a tie does not justify changing the default. ``bf16`` still selects bf16
    autocast; ``fp16`` is refused.
    CUDA: ``auto`` = bf16 when the GPU supports it, else fp16 with a GradScaler.
    """
    choice = "none" if amp in (None, False, "off", "false") else ("auto" if amp is True else str(amp).lower())
    if choice not in AMP_CHOICES:
        raise ValueError(f"train.amp must be one of {list(AMP_CHOICES)}, got {amp!r}")
    if choice == "none":
        return AmpPolicy(None, False)
    if device.type == "cuda":
        if choice == "auto":
            choice = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return AmpPolicy(torch.bfloat16, False) if choice == "bf16" else AmpPolicy(torch.float16, True)
    if choice == "fp16":
        raise ValueError("train.amp=fp16 needs a CUDA device; on CPU use bf16 or none")
    if choice == "auto":
        return AmpPolicy(None, False)
    return AmpPolicy(torch.bfloat16, False)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_deterministic(enabled: bool) -> None:
    """Deterministic kernels (warn-only: a few 3D CUDA backward ops have no deterministic version)."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled


def autocast(device: torch.device, dtype: torch.dtype | None) -> ContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``, or a no-op context for full precision."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
