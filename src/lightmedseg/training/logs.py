"""Metric logs of a run: ``steps.csv`` (one row per optimiser step), ``metrics.csv`` (one row per epoch)
and TensorBoard events (``tensorboard/``), written by rank 0 only.

On resume both CSV files are cut back (atomically) to the rows the checkpoint had seen, and TensorBoard
events after the resumed step are purged (``SummaryWriter(purge_step=...)``), so a resumed run's logs
read exactly like an uninterrupted run's.
"""

from __future__ import annotations

import csv
import io
import math
import os
import threading
from pathlib import Path
from typing import Any, Sequence

from lightmedseg.io_utils import naming_write_errors, write_text_atomic

STEP_FIELDS = ["step", "epoch", "loss", "dice", "ce", "boundary", "lr"]
STEPS_CSV = "steps.csv"
METRICS_CSV = "metrics.csv"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)  # repr: full precision, round-trips exactly
    return str(value)


def read_csv(path: str | Path) -> list[dict[str, str]]:
    """Rows of a CSV log (empty list when the file does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _quiet_event_writer_thread() -> None:
    """Keep TensorBoard's event-writer thread from printing a traceback when a write fails (a full disk).

    Nothing is lost: TensorBoard's writer keeps the thread's error and raises it again in the training thread at
    the next ``add_scalar`` / ``flush`` / ``close``, where :func:`~lightmedseg.io_utils.naming_write_errors` turns
    it into one line naming the events folder. Only ``OSError`` from that thread class is silenced; every other
    thread error still reaches the previous ``threading.excepthook``. Installed once per process.
    """
    try:
        from tensorboard.summary.writer.event_file_writer import _AsyncWriterThread
    except ImportError:  # another tensorboard layout: its thread keeps its own report
        return
    previous = threading.excepthook
    if getattr(previous, "_lightmedseg_event_writer", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        if isinstance(args.thread, _AsyncWriterThread) and isinstance(args.exc_value, OSError):
            return
        previous(args)

    hook._lightmedseg_event_writer = True  # type: ignore[attr-defined]
    threading.excepthook = hook


class CsvLog:
    """Append-only CSV with a fixed header; ``truncate(max_key)`` drops rows beyond a resume point."""

    def __init__(self, path: Path, fields: Sequence[str], key: str) -> None:
        self.path, self.fields, self.key = Path(path), list(fields), key
        if not self.path.exists():
            write_text_atomic(self.path, ",".join(self.fields) + "\n")

    def truncate(self, max_key: int) -> None:
        """Keep only rows whose ``key`` column is <= ``max_key`` (rewrites the file atomically)."""
        rows = [r for r in read_csv(self.path) if int(float(r[self.key])) <= max_key]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.fields, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomic(self.path, buf.getvalue())

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        """Append ``rows``; a failed write (a full disk) names the file and leaves no half row behind."""
        if not rows:
            return
        data = "".join(",".join(_fmt(row.get(f, "")) for f in self.fields) + "\n" for row in rows).encode()
        with naming_write_errors(self.path), open(self.path, "ab", buffering=0) as fh:
            start = fh.seek(0, os.SEEK_END)
            try:
                done = 0
                while done < len(data):
                    done += fh.write(data[done:])
            except OSError:
                fh.truncate(start)
                raise


class RunLogger:
    """CSV + TensorBoard logging for rank 0; a no-op object on the other ranks."""

    def __init__(self, run_dir: Path | None, epoch_fields: Sequence[str], start_step: int, start_epoch: int,
                 tensorboard: bool = True) -> None:
        self.enabled = run_dir is not None
        self._pending: list[dict[str, Any]] = []
        self.writer = None
        if not self.enabled:
            return
        assert run_dir is not None
        self.steps = CsvLog(run_dir / STEPS_CSV, STEP_FIELDS, "step")
        self.epochs = CsvLog(run_dir / METRICS_CSV, list(epoch_fields), "epoch")
        self.steps.truncate(start_step)
        self.epochs.truncate(start_epoch - 1)
        self.tensorboard_dir = run_dir / "tensorboard"
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            _quiet_event_writer_thread()
            self.writer = SummaryWriter(str(self.tensorboard_dir), purge_step=start_step + 1 if start_step else None)

    def log_step(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self._pending.append(row)
        if self.writer is not None:
            with naming_write_errors(self.tensorboard_dir):
                for k in ("loss", "dice", "ce", "boundary"):
                    self.writer.add_scalar(f"train/{k}", row[k], row["step"])
                self.writer.add_scalar("train/lr", row["lr"], row["step"])

    def flush_steps(self) -> None:
        """Write buffered step rows (called before every checkpoint, so the CSV never runs ahead of it)."""
        if self.enabled:
            self.steps.append(self._pending)
            self._pending = []
            if self.writer is not None:
                with naming_write_errors(self.tensorboard_dir):
                    self.writer.flush()

    def log_epoch(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.epochs.append([row])
        if self.writer is not None:
            with naming_write_errors(self.tensorboard_dir):
                for k, v in row.items():
                    if k.startswith(("val_", "train_")) and isinstance(v, float) and not math.isnan(v):
                        tag = f"val/{k[4:]}" if k.startswith("val_") else f"epoch/{k}"  # train/* is per step
                        self.writer.add_scalar(tag, v, row["step"])

    def close(self) -> None:
        self.flush_steps()
        if self.writer is not None:
            with naming_write_errors(self.tensorboard_dir):
                self.writer.close()
