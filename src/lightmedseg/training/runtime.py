"""Where and how the training runs: device, torch.distributed (torchrun), mixed precision, determinism.

Everything here wraps PyTorch's own facilities (``torch.distributed`` with ``env://`` initialisation,
``torch.autocast``, ``torch.amp.GradScaler``, ``torch.use_deterministic_algorithms``); the only new code
is the policy choosing among them from ``config["train"]``.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import random
from dataclasses import dataclass
from typing import ContextManager

import numpy as np
import torch
import torch.distributed as dist

AMP_CHOICES = ("auto", "bf16", "fp16", "none")


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


def init_distributed(device: str | None = None) -> DistInfo:
    """Join the torchrun job described by the environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT).

    Uses NCCL when the process drives a CUDA device and gloo on CPU; ``env://`` works across nodes.
    Without torchrun variables (or WORLD_SIZE=1) it returns a single-process :class:`DistInfo`.
    """
    use_cuda = torch.cuda.is_available() if device in (None, "auto") else str(device).startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise ValueError(f"train.device={device!r} but CUDA is not available on this machine")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        dev = torch.device("cuda", local if world > 1 else torch.cuda.current_device())
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        # Long timeout: rank 0 validates while the others wait at the next collective.
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", init_method="env://",
                                rank=rank, world_size=world, timeout=datetime.timedelta(hours=2))
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


def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 instructions (AVX512-BF16 or AMX), i.e. bf16 autocast pays off."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # private helpers missing in some torch builds: be conservative
        return False


def amp_policy(amp: str | bool | None, device: torch.device) -> AmpPolicy:
    """Resolve ``train.amp`` (auto | bf16 | fp16 | none) for ``device``.

    CPU: ``auto`` = fp32: measured on an AVX512-BF16/AMX CPU (docs/benchmarks.md, CPU speed), a bf16
    training step was several times slower than the fp32 fast path (bf16 backward of the depthwise and
    grouped 3D convolutions has no fast kernel); ``bf16`` still selects bf16 autocast. ``fp16`` is refused.
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
