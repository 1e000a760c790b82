"""The training loop: paper recipe, resumable to the exact step, observable, single process or torchrun DDP.

One optimiser step = one batch of random patches; one epoch = ``train.iterations_per_epoch`` steps
(nnU-Net style). At the end of an epoch: validation every ``train.val_every`` epochs (sharded over the
ranks, metrics gathered), the epoch row of ``metrics.csv``, ``checkpoint_last.pt`` (and
``checkpoint_best.pt`` when the mean validation Dice improved), curves. A stop requested by
``--max-steps``, ``--max-minutes``, SIGUSR1, SIGTERM or Ctrl-C also ends with a checkpoint, taken
mid-epoch if need be; a stop before the schedule's end other than ``--max-steps`` is reported as
resumable (:data:`EXIT_RESUME` from the CLI).

Exact resume: every epoch draws its patches from a loader re-seeded from ``(seed, epoch, rank)``; a
mid-epoch checkpoint records how many batches of the epoch were consumed, so a resumed run rebuilds
that epoch's loader, skips those batches and restores the saved RNG states. In deterministic mode the
resumed run therefore reproduces the uninterrupted run's losses.
"""

from __future__ import annotations

import hashlib
import math
import os
import signal
import sys
import time
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Callable, Collection, ContextManager, Iterator, Mapping

import torch
import torch.distributed as dist
import yaml
from monai.data import DataLoader
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from lightmedseg.checkpoint import CheckpointError
from lightmedseg.config import Config, typed_config
from lightmedseg.data.integrity import check_split_complete
from lightmedseg.fast import fast_train_forward, supports
from lightmedseg.io_utils import write_json_atomic, write_text_atomic
from lightmedseg.model.factory import build_model
from lightmedseg.training import checkpointing as C
from lightmedseg.training.ema import WeightAverage
from lightmedseg.training.logs import METRICS_CSV, STEPS_CSV, RunLogger
from lightmedseg.training.loss import DeepSupervisionLoss, LightMedSegLoss
from lightmedseg.training.optim import build_optimizer, build_scheduler
from lightmedseg.training.plots import CURVES_PNG, plot_curves
from lightmedseg.training.runlock import run_folder_lock
from lightmedseg.training.runtime import (
    DistInfo,
    StoppedWhileJoining,
    amp_policy,
    autocast,
    barrier,
    cleanup_distributed,
    init_distributed,
    seed_everything,
    set_deterministic,
)
from lightmedseg.training.resume import RunStart, run_start
from lightmedseg.write_rule import check_output_folder
from lightmedseg.training.validation import metric_names, summarize_cases, validate_cases

EPOCH_FIELDS = ["epoch", "step", "train_loss", "train_dice", "train_ce", "train_boundary", "lr", "epoch_seconds"]
TERMS = ("loss", "dice", "ce", "boundary")
# Exit status of `lightmedseg train` for "stopped before the end of the schedule, resume me" (a signal or
# --max-minutes); sysexits.h EX_TEMPFAIL. 0 = finished (schedule or --max-steps), 2 = refused, 1 = failed.
EXIT_RESUME = 75
# DDP warns once that some gradients' strides differ from its bucket's. On the fast path (channels-last) these are
# the 18 weights with one input channel per group (depthwise and single-channel convs, 4-8 x 1 x k^3): their
# strides differ only along that size-1 axis, i.e. the same memory layout, and DDP copies them (43 KB a step in
# `acdc`) instead of aliasing. Measured harmless (session 14; tests/test_train_ddp.py checks the claim), so hidden.
DDP_STRIDES_WARNING = "Grad strides do not match bucket view strides"
FINISHED = ("completed", "max_steps")  # summary["stopped"] values of a run that did what was asked
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGINT", "SIGUSR1") if hasattr(signal, n))


def exit_status(summary: dict[str, Any], environ: Mapping[str, str] | None = None) -> int:
    """0 when the run did what was asked (schedule or --max-steps), :data:`EXIT_RESUME` when it should be resumed.

    Under torchrun a resumable stop is 0 as well: torchrun reports any non-zero exit of a worker as a
    failure (and stops the other workers); the summary's ``stopped`` and :func:`resume_hint` say it.
    """
    if summary.get("stopped") in FINISHED:
        return 0
    return 0 if launched_by_torchrun(environ) else EXIT_RESUME


def launched_by_torchrun(environ: Mapping[str, str] | None = None) -> bool:
    """True in a worker started by torchrun (its agent sets ``TORCHELASTIC_RUN_ID``)."""
    return "TORCHELASTIC_RUN_ID" in (os.environ if environ is None else environ)


def resume_hint(summary: dict[str, Any]) -> str | None:
    """One line for a run stopped before the end of its schedule (None when there is nothing to resume)."""
    if summary.get("stopped") in FINISHED:
        return None
    return (f"stopped by {summary.get('stopped')} at step {summary.get('steps')}, before the end of the schedule; "
            f"continue with the same command plus --resume (run folder {summary.get('run_dir')})")


def weights_checksum(model: torch.nn.Module) -> str:
    """SHA-256 of all parameters and buffers (sorted by name): equal iff the replicas are bit-identical."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """Seed of one rank's patch stream in one epoch (independent of everything that came before)."""
    return (int(seed) * 1_000_003 + epoch * 7_919 + rank * 104_729) % 2**31


def epoch_loader(base: DataLoader, seed: int) -> DataLoader:
    """A fresh loader over ``base``'s dataset whose sampling and augmentation depend only on ``seed``.

    The dataset (and any cache it holds) is shared; only the sampler, the transforms' random state and
    the worker seeds are renewed, so an epoch can be replayed exactly after a restart.
    """
    generator = torch.Generator().manual_seed(seed)
    dataset = base.dataset
    transform = getattr(dataset, "transform", None)
    if hasattr(transform, "set_random_state"):
        transform.set_random_state(seed=seed)
    sampler = torch.utils.data.RandomSampler(dataset, replacement=True, num_samples=len(base.sampler),
                                             generator=generator)
    return DataLoader(dataset, batch_size=base.batch_size, sampler=sampler, num_workers=base.num_workers,
                      drop_last=True, generator=generator, persistent_workers=False)


@contextmanager
def _stop_on_signals(flag: dict) -> Iterator[None]:
    """SIGTERM / SIGINT / SIGUSR1 request a clean stop (checkpoint first) instead of killing the run."""
    def handler(signum: int, _frame: Any) -> None:
        if flag.get("requested") and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: give up at once
        flag.setdefault("requested", signal.Signals(signum).name)  # a repeated SIGUSR1/SIGTERM changes nothing

    previous = {}
    try:
        for sig in STOP_SIGNALS:
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: no signal handling
        pass
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class Trainer:
    """Holds the model, optimiser state and loop of one run; use :func:`train`."""

    def __init__(self, config: dict | Config, data_dir: Path, run_dir: Path, split: dict, info: DistInfo,
                 state: dict | None = None, reference: bool = False, progress: bool = True,
                 init_weights: dict[str, torch.Tensor] | None = None) -> None:
        self.cfg = typed_config(config)  # read typed; the defaults are the schema's (lightmedseg.config.schema)
        self.config = self.cfg.to_dict()  # the serialised form: stored in checkpoints, given to validation
        self.data_dir, self.run_dir, self.split, self.info = data_dir, run_dir, split, info
        tcfg = self.cfg.train
        self.device = info.device
        self.seed = tcfg.seed
        self.epochs = tcfg.epochs
        self.iters = tcfg.iterations_per_epoch
        self.val_every = max(1, tcfg.val_every)
        self.grad_clip = float(tcfg.grad_clip or 0.0)
        self.progress = progress and tcfg.progress
        global_batch = tcfg.batch_size
        if global_batch % info.world_size:
            raise ValueError(f"train.batch_size={global_batch} (global) is not divisible by the "
                             f"{info.world_size} processes; choose a multiple of {info.world_size}")
        self.batch_size = global_batch // info.world_size
        self.amp = amp_policy(tcfg.amp, self.device)

        self.model = build_model(self.cfg).to(self.device)
        weights = state["model"] if state is not None else init_weights  # a resumed run, or --init-weights
        if weights is not None:
            try:
                self.model.load_state_dict(weights)
            except RuntimeError as exc:
                raise CheckpointError(f"checkpoint weights do not match the config ({str(exc)[:300]})") from None
        # The one place the network is called from; train.fast plugs in the fast path (same parameters).
        use_fast = tcfg.fast and not reference
        if use_fast:
            use_fast, why = supports(self.model)
            if not use_fast and info.is_main:
                print(f"train.fast: {why}; training with the reference forward", file=sys.stderr)
        net: torch.nn.Module = fast_train_forward(self.model) if use_fast else self.model
        self.ddp_model: torch.nn.Module = net
        if info.distributed:  # DDP wraps whatever is called, so gradient all-reduce sees every forward
            warnings.filterwarnings("ignore", message=DDP_STRIDES_WARNING)
            self.ddp_model = DistributedDataParallel(
                net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.forward_fn: Callable[[torch.Tensor], torch.Tensor] = self.ddp_model
        self.optimizer = build_optimizer(self.model.parameters(), tcfg)
        self.scheduler = build_scheduler(self.optimizer, tcfg)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp.use_scaler)
        self.loss_fn = DeepSupervisionLoss(LightMedSegLoss.from_config(self.cfg.model["num_classes"], tcfg.loss))
        # train.ema_decay: validation and the model files use a moving average of the weights (training.ema)
        self.ema = WeightAverage(self.model, tcfg.ema_decay) if tcfg.ema_decay is not None else None

        self.step = 0
        self.epoch = 0
        self.step_in_epoch = 0
        self.best_metric = -math.inf
        self.best_epoch = -1
        self.epoch_sums = {k: 0.0 for k in TERMS}
        self.rng_to_restore: dict | None = None
        if state is not None:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            self.step, self.epoch = int(state["step"]), int(state["epoch"])
            self.step_in_epoch = int(state["step_in_epoch"])
            self.best_metric = float(state.get("best_metric", -math.inf))
            self.best_epoch = int(state.get("best_epoch", -1))
            self.epoch_sums = {k: float(v) for k, v in state.get("epoch_sums", self.epoch_sums).items()}
            if self.ema is not None:
                if "ema" not in state:
                    raise CheckpointError("the checkpoint holds no weight average (key 'ema') but train.ema_decay "
                                          "is set; resume with the config it was saved with")
                self.ema.load_state_dict(state["ema"])
            rngs = state["rng"]
            self.rng_to_restore = rngs[info.rank] if info.rank < len(rngs) else None

        from lightmedseg.training.loader import make_train_loader

        self.base_loader = make_train_loader(data_dir, split["train"], self.cfg, self.batch_size, self.seed,
                                             info.rank, info.world_size)
        if len(self.base_loader.sampler) != self.iters * self.batch_size:
            raise ValueError("the training loader does not yield train.iterations_per_epoch batches per epoch")
        val_ids = list(split.get("validation", []))
        max_val = tcfg.val_max_cases
        self.val_ids = val_ids[:max_val] if max_val else val_ids
        self.metric_fields = metric_names(self.config)

    # -- pieces ---------------------------------------------------------------------------------------
    def _autocast(self) -> ContextManager:
        return autocast(self.device, self.amp.dtype)

    def _train_step(self, batch: dict) -> torch.Tensor:
        """One optimiser step; returns [loss, dice, ce, boundary] (detached, this rank)."""
        x = batch["image"].to(self.device, non_blocking=True)
        y = batch["label"].to(self.device, non_blocking=True)
        self.ddp_model.train()
        with self._autocast():
            logits = self.forward_fn(x)
        loss = self.loss_fn(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip or math.inf)
        if self.amp.use_scaler or torch.isfinite(norm):
            self.scaler.step(self.optimizer)  # with fp16 the scaler itself skips non-finite steps
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        terms = self.loss_fn.last_terms
        return torch.stack([loss.detach(), terms["dice"], terms["ce"], terms["boundary"]]).float()

    def _sync(self, values: torch.Tensor, stop: bool, signalled: bool = False) -> tuple[list[float], bool, bool]:
        """Average the loss terms over ranks and agree on stopping: (terms, stop, any rank signalled).

        Rank 0 decides time limits (``stop``); a signal received by any rank stops every rank.
        """
        flags = torch.tensor([float(stop), float(signalled)], device=self.device)
        packed = torch.cat([values.to(self.device), flags])
        if self.info.distributed:
            dist.all_reduce(packed)
            packed[:-2] /= self.info.world_size
        out = packed.cpu().tolist()
        return out[:-2], out[-2] > 0 or out[-1] > 0, out[-1] > 0

    def _gather_rng(self) -> list[dict]:
        mine = C.capture_rng_state()
        if not self.info.distributed:
            return [mine]
        everyone: list[Any] = [None] * self.info.world_size
        dist.all_gather_object(everyone, mine)
        return everyone

    def _save(self, best: bool, snapshot: bool = False) -> None:
        rngs = self._gather_rng()  # collective: every rank takes part
        if self.info.is_main:
            state = {
                "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                "config": self.config,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "rng": [{k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in r.items()} for r in rngs],
                "step": self.step, "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
                "best_metric": self.best_metric, "best_epoch": self.best_epoch,
                "epoch_sums": dict(self.epoch_sums),
                "split": {k: list(v) for k, v in self.split.items()},
            }
            if self.ema is not None:
                state["ema"] = self.ema.state_dict()
            self.logger.flush_steps()
            # the model files hold what validation scores: the average, if any
            shipped = self.ema.network if self.ema is not None else self.model
            C.save_run_checkpoint(self.run_dir, state, shipped, best, snapshot=snapshot)
        barrier(self.info)

    def _validate(self) -> dict[str, float]:
        """Every rank scores its share of the validation cases; the per-case metrics are gathered in case order."""
        if not self.val_ids:
            return {n: math.nan for n in self.metric_fields}
        info = self.info
        mine = list(range(info.rank, len(self.val_ids), info.world_size))
        self.model.eval()  # the unwrapped network (fast path if train.fast): no DDP collectives
        net = self.ddp_model.module if isinstance(self.ddp_model, DistributedDataParallel) else self.ddp_model
        # the average (if any) swapped into the model in place, so the fast-path wrapper `net` sees it
        with self.ema.applied_to(self.model) if self.ema is not None else nullcontext():
            scores = validate_cases(net, self.data_dir, [self.val_ids[i] for i in mine], self.config, self.device,
                                    self.amp.dtype)
        self.model.train()
        pairs = list(zip(mine, scores))
        if info.distributed:
            everyone: list[Any] = [None] * info.world_size
            dist.all_gather_object(everyone, pairs)
            pairs = [p for part in everyone for p in part]
        return summarize_cases([m for _, m in sorted(pairs, key=lambda p: p[0])], self.config)

    # -- loop -----------------------------------------------------------------------------------------
    def run(self, max_steps: int | None = None, max_minutes: float | None = None,
            signal_flag: dict | None = None) -> dict[str, Any]:
        """Train until the last epoch or a budget/signal stop; returns a summary dict.

        ``signal_flag``: the dict a :func:`_stop_on_signals` handler fills (installed here when None).
        """
        info = self.info
        t0 = time.monotonic()
        self.logger = RunLogger(self.run_dir if info.is_main else None, EPOCH_FIELDS + self.metric_fields,
                                self.step, self.epoch, tensorboard=self.cfg.train.tensorboard)
        planned = self.epochs * self.iters if max_steps is None else min(self.epochs * self.iters, max_steps)
        bar = tqdm(total=planned, initial=min(self.step, planned), unit="it", dynamic_ncols=True,
                   disable=not (info.is_main and self.progress), file=sys.stderr, desc="train")
        own_handlers = signal_flag is None
        signal_flag = {} if signal_flag is None else signal_flag
        # A resumed run may already have used its --max-steps budget: then it does nothing.
        stopped = "max_steps" if max_steps is not None and self.step >= max_steps else "completed"
        last_loss = math.nan
        signalled = False
        with _stop_on_signals(signal_flag) if own_handlers else nullcontext():
            while self.epoch < self.epochs and stopped == "completed":
                epoch_t0 = time.monotonic()
                loader = epoch_loader(self.base_loader, epoch_seed(self.seed, self.epoch, info.rank))
                batches = iter(loader)
                if self.step_in_epoch == 0:  # every epoch starts from RNG states that depend on it alone
                    seed_everything(epoch_seed(self.seed, self.epoch, info.rank) + 1)
                else:  # mid-epoch resume: replay the consumed batches, then continue with the saved RNG
                    for _ in range(self.step_in_epoch):
                        next(batches)
                    if self.rng_to_restore is not None:
                        C.restore_rng_state(self.rng_to_restore)
                self.rng_to_restore = None
                for batch in batches:
                    lr = self.optimizer.param_groups[0]["lr"]
                    values = self._train_step(batch)
                    self.step += 1
                    self.step_in_epoch += 1
                    want_stop = (max_steps is not None and self.step >= max_steps) or (
                        max_minutes is not None and time.monotonic() - t0 >= 60.0 * max_minutes)
                    terms, stop, signalled = self._sync(values, want_stop and info.is_main, bool(signal_flag))
                    stop = stop or (max_steps is not None and self.step >= max_steps)
                    for k, v in zip(TERMS, terms):
                        self.epoch_sums[k] += v
                    last_loss = terms[0]
                    self.logger.log_step({"step": self.step, "epoch": self.epoch, "lr": lr,
                                          **dict(zip(TERMS, terms))})
                    bar.set_postfix(epoch=self.epoch, loss=f"{terms[0]:.4f}", lr=f"{lr:.2e}", refresh=False)
                    bar.update(1)
                    if stop:
                        stopped = (signal_flag.get("requested") or "signal") if signalled else (
                            "max_steps" if max_steps is not None and self.step >= max_steps else "max_minutes")
                        break
                if stopped != "completed" and self.step_in_epoch < self.iters:
                    # Mid-epoch stop, resumable at this exact batch; a signal (pre-emption) exits at once.
                    if not signalled:
                        self._end_epoch(time.monotonic() - epoch_t0, partial=True)
                    else:
                        self._save(best=False)
                    break
                self._end_epoch(time.monotonic() - epoch_t0)
        if self.epoch >= self.epochs and stopped != "max_steps":
            stopped = "completed"  # a stop that fell on the schedule's last step leaves nothing to resume
        bar.close()
        self.logger.close()
        if info.is_main:
            try:
                plot_curves(self.run_dir)
            except ValueError:
                pass
        # No rank leaves before rank 0 has written its checkpoint and curves: a launcher that sees one
        # process exit (torchrun) stops the others, which could otherwise kill rank 0 mid-write.
        barrier(info)
        return {"run_dir": str(self.run_dir), "steps": self.step, "epochs_completed": self.epoch,
                "stopped": stopped, "last_loss": last_loss,
                "best_metric": None if self.best_metric == -math.inf else self.best_metric,
                "best_epoch": self.best_epoch, "world_size": info.world_size, "amp": self.amp.name,
                "weights_checksum": weights_checksum(self.model)}

    def _end_epoch(self, seconds: float, partial: bool = False) -> None:
        """Epoch row of metrics.csv, validation when due, checkpoints, curves.

        ``partial``: a budget stop (--max-steps / --max-minutes) in the middle of an epoch. The final model
        is validated (``train.validate_on_stop``) so ``model_best`` can reflect it; the row is dropped
        again when the run is resumed, and the epoch itself is not advanced.
        """
        epoch = self.epoch
        n = max(1, self.step_in_epoch)
        row: dict[str, Any] = {"epoch": epoch, "step": self.step, "epoch_seconds": round(seconds, 3),
                               "lr": self.optimizer.param_groups[0]["lr"],
                               **{f"train_{k}": self.epoch_sums[k] / n for k in TERMS}}
        if partial:
            validated = self.cfg.train.validate_on_stop
        else:
            validated = (epoch + 1) % self.val_every == 0 or epoch + 1 == self.epochs
        metrics = self._validate() if validated else {n_: math.nan for n_ in self.metric_fields}
        row.update(metrics)
        best = False
        if validated and self.info.is_main and not math.isnan(metrics["val_dice"]):
            best = metrics["val_dice"] > self.best_metric
            if best:
                self.best_metric, self.best_epoch = metrics["val_dice"], epoch
        elif validated and not self.val_ids and self.info.is_main:
            best = True  # no validation cases: the latest model is the best we know
            self.best_epoch = epoch
        self.logger.log_epoch(row)
        if not partial:
            self.epoch += 1
            self.step_in_epoch = 0
            self.epoch_sums = {k: 0.0 for k in TERMS}
        self._save(best=best, snapshot=validated and self.cfg.train.snapshots)
        if validated and self.info.is_main:
            plot_curves(self.run_dir)


def _remove_stale_temp_files(run_dir: Path) -> None:
    """Delete temp files of our atomic writes left by a process killed mid-write (SIGKILL, power loss)."""
    for name in (C.LAST, C.BEST, C.MODEL_LAST, C.MODEL_BEST, STEPS_CSV, METRICS_CSV, CURVES_PNG,
                 C.RUN_CONFIG, C.RUN_SPLIT):
        for tmp in run_dir.glob(f".{name}.*"):
            tmp.unlink(missing_ok=True)
    for tmp in (run_dir / C.SNAPSHOTS).glob(".model_step*.safetensors.*"):
        tmp.unlink(missing_ok=True)


def _run_folder_state(run_dir: Path) -> tuple[int, int] | None:
    """Size and modification time of the run's last checkpoint (None: none), to notice a run written meanwhile."""
    try:
        st = (run_dir / C.LAST).stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def train(config: dict | None, data_dir: str | Path, out_dir: str | Path, *, split: str | Path | None = None,
          fold: int | None = None, max_steps: int | None = None, max_minutes: float | None = None,
          resume: bool = False, reference: bool = False, progress: bool = True,
          init_weights: str | Path | None = None, cache_dir: str | Path | None = None,
          resume_explicit: Collection[str] | None = None) -> dict[str, Any]:
    """Train LightMedSeg on the canonical dataset ``data_dir`` into the run folder ``out_dir``.

    Args:
        config: a preset from :func:`lightmedseg.config.load_config` (may be None with ``resume``).
        split, fold: a split file (and fold) naming train/validation cases; default a seeded 80/20 split.
        max_steps: stop (with a checkpoint) once this many optimiser steps have been done in total.
        max_minutes: stop (with a checkpoint) after this much wall time in this invocation.
        resume: continue from ``out_dir/checkpoint_last.pt`` (starts afresh when there is none yet).
        reference: force the reference forward path even when ``train.fast`` is set.
        init_weights: start a new run from these network weights (a run folder, model file or shipped
            name) with a fresh optimiser and schedule - fine-tuning or a second training stage. The
            network config must match the run's. Ignored when an existing run is resumed.
        cache_dir: folder of the ``data.cache: disk`` cache (node-local storage); replaces the config's
            ``data.cache_dir`` (default: ``$TMPDIR``, see :func:`lightmedseg.training.loader.default_cache_dir`).
        resume_explicit: the ``train.*`` keys of ``config`` the user set explicitly (``--set``); on resume the
            other keys must agree with the stored config (see :func:`lightmedseg.training.resume.merge_resumed_config`).
            None: every budget key of ``config`` counts as explicit.
    Returns:
        a summary (steps, epochs, stop reason, best validation Dice, weights checksum of this replica).
    """
    data_dir, run_dir = Path(data_dir), Path(out_dir)
    if not (data_dir / "dataset.json").is_file():
        raise ValueError(f"{data_dir}: not a converted dataset (no dataset.json); run lightmedseg convert/synth first")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"--max-steps must be >= 1, got {max_steps}")
    if max_minutes is not None and not (math.isfinite(max_minutes) and max_minutes > 0):
        raise ValueError(f"--max-minutes must be a finite number > 0, got {max_minutes}")
    check_output_folder(run_dir, "run folder")  # never inside a dataset

    given = config

    def begin() -> RunStart:
        """Resume or new run, decided from the run folder as it is now."""
        begun = run_start(given, data_dir, run_dir, split, fold, resume, init_weights, explicit=resume_explicit)
        if cache_dir is not None:
            begun.config.setdefault("data", {})["cache_dir"] = str(cache_dir)
        elif begun.state is not None:  # a machine setting, not recipe: a resumed job on another node uses its own
            begun.config.get("data", {}).pop("cache_dir", None)
        return begun

    seen = _run_folder_state(run_dir)
    start = begin()
    config, state = start.config, start.state
    check_split_complete(data_dir, start.split)  # a truncated case is named now, not a crash in a loader worker
    signal_flag: dict = {}
    # Signals are caught from here on (a SIGUSR1 during set-up or caching must not kill the job); they take
    # effect after the first step of this invocation.
    with _stop_on_signals(signal_flag):
        try:
            tcfg = typed_config(config).train
            info = init_distributed(tcfg.device, tcfg.dist_timeout_minutes,
                                    stop=lambda: signal_flag.get("requested"))
        except StoppedWhileJoining as exc:  # scancel / Ctrl-C while the peers are awaited: stop now
            print(f"lightmedseg train: {exc}", file=sys.stderr)
            return {"run_dir": str(run_dir), "steps": int(state["step"]) if state else 0,
                    "epochs_completed": int(state["epoch"]) if state else 0, "stopped": exc.signal_name}
        try:
            with run_folder_lock(run_dir, info):  # before anything is written into the run folder
                if _run_folder_state(run_dir) != seen:  # another run wrote here before we held the lock:
                    start = begin()  # decide again, under the lock (refused now if it left a run)
                    config, state = start.config, start.state
                tcfg = typed_config(config).train
                set_deterministic(tcfg.deterministic)
                seed_everything(tcfg.seed + info.rank)
                if info.is_main:
                    _remove_stale_temp_files(run_dir)
                    write_text_atomic(run_dir / C.RUN_CONFIG, yaml.safe_dump(config, sort_keys=False))
                    write_json_atomic(run_dir / C.RUN_SPLIT, start.split)
                barrier(info)
                try:
                    trainer = Trainer(config, data_dir, run_dir, start.split, info, state=state, reference=reference,
                                      progress=progress, init_weights=start.weights)
                    return trainer.run(max_steps=max_steps, max_minutes=max_minutes, signal_flag=signal_flag)
                except RuntimeError as exc:  # a case the loader could not use: its DataError, naming the file
                    from lightmedseg.training.loader import case_error

                    if (error := case_error(exc)) is None:
                        raise
                    raise error from None
        finally:
            cleanup_distributed()
