"""One training per run folder: rank 0 holds an exclusive ``flock`` on ``RUN_DIR/train.lock`` for the run.

The kernel releases a ``flock`` when its process dies, however it dies (SIGKILL, node crash on NFS
after the lease), so a killed run never leaves a stale lock; the file itself stays and only names the
last owner. On a file system without ``flock`` (e.g. a Lustre mount without ``-o flock``) the run goes
on without a lock, with a warning.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

import torch.distributed as dist

from lightmedseg.training.runtime import DistInfo

LOCK_NAME = "train.lock"


class RunFolderInUse(FileExistsError):
    """Another live training process writes into this run folder."""


def _owner() -> str:
    job = os.environ.get("SLURM_JOB_ID")
    return f"pid {os.getpid()} on {socket.gethostname()}" + (f", SLURM job {job}" if job else "")


def _try_lock(run_dir: Path) -> tuple[IO[str] | None, str]:
    """(open locked file, "") on success, (None, message) when a live process holds the lock."""
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = open(run_dir / LOCK_NAME, "a+", encoding="utf-8")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        return None, (f"{run_dir} is in use by a live training ({owner}); wait for it to end or stop it, "
                      "or choose another --out")
    except OSError as exc:  # no flock on this file system: go on unprotected
        print(f"lightmedseg train: warning: cannot lock {run_dir / LOCK_NAME} ({exc.strerror}); "
              "make sure no other training writes into this folder", file=sys.stderr)
        return handle, ""
    handle.seek(0)
    handle.truncate()
    handle.write(_owner() + "\n")
    handle.flush()
    return handle, ""


@contextmanager
def run_folder_lock(run_dir: Path, info: DistInfo) -> Iterator[None]:
    """Hold the run folder for this job (rank 0 locks); every rank raises :class:`RunFolderInUse` if it is taken."""
    handle, error = _try_lock(run_dir) if info.is_main else (None, "")
    if info.distributed:  # every rank learns rank 0's verdict, so the whole job stops with the same message
        box = [error]
        dist.broadcast_object_list(box, src=0)
        error = box[0]
    if error:
        raise RunFolderInUse(error)
    try:
        yield
    finally:
        if handle is not None:
            handle.close()  # releases the flock
