"""Two-process DDP training on CPU (gloo) with torchrun: stops, resumes, finishes; only rank 0 writes;
the replicas hold bit-identical weights.

Run as a script by torchrun, this file is the worker: it trains and writes its rank's weight checksum
into the test's temporary folder (the trainer itself writes nothing on ranks other than 0).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TINY = [
    "data.patch_size=[32,32,32]", "train.epochs=2", "train.iterations_per_epoch=2", "train.batch_size=2",
    "train.val_every=2", "train.amp=none", "train.num_workers=0", "train.tensorboard=false",
    "train.deterministic=true",
]


def _worker(data: str, run: str, report_dir: str, phase: str) -> None:
    """``phase`` "first": stop after 3 of 4 steps (mid-epoch); "resume": continue to the end."""
    import torch

    torch.set_num_threads(1)
    from lightmedseg.config import load_config
    from lightmedseg.training.trainer import train

    if phase == "first":
        summary = train(load_config("demo", overrides=TINY), data, run, max_steps=3, progress=False)
    else:
        summary = train(None, data, run, resume=True, progress=False)
    rank = os.environ["RANK"]
    Path(report_dir, f"{phase}_rank{rank}.json").write_text(json.dumps(summary))


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path) -> None:
    import torch

    from lightmedseg.data.synth import make_synthetic_dataset

    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not on PATH (it ships with torch)")
    data = make_synthetic_dataset(tmp_path / "synth", num_cases=5, seed=1, shape=(32, 32, 32))
    run, reports = tmp_path / "run", tmp_path / "reports"
    reports.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for phase in ("first", "resume"):  # a budget stop mid-epoch, then a resumed run to the end
        cmd = [torchrun, "--standalone", "--nproc_per_node", "2", __file__, str(data), str(run), str(reports), phase]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    first = [json.loads((reports / f"first_rank{r}.json").read_text()) for r in (0, 1)]
    assert all(s["world_size"] == 2 and s["steps"] == 3 and s["stopped"] == "max_steps" for s in first)
    summaries = [json.loads((reports / f"resume_rank{r}.json").read_text()) for r in (0, 1)]
    assert all(s["world_size"] == 2 and s["steps"] == 4 and s["stopped"] == "completed" for s in summaries)
    assert first[0]["weights_checksum"] == first[1]["weights_checksum"]
    assert summaries[0]["weights_checksum"] == summaries[1]["weights_checksum"]
    assert summaries[0]["weights_checksum"] != first[0]["weights_checksum"]  # it did train further
    # Both ranks' RNG states are in the checkpoint, for an exact mid-epoch resume of each replica.
    assert len(torch.load(run / "checkpoint_last.pt", weights_only=True)["rng"]) == 2
    # Every step's loss is the mean over both replicas, logged once by rank 0.
    rows = (run / "steps.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 4
    assert (run / "checkpoint_last.pt").is_file() and (run / "model_best.safetensors").is_file()
    leftovers = [p.name for p in run.iterdir() if p.name.startswith(".")]
    assert not leftovers, leftovers


@pytest.mark.slow
def test_torchrun_budget_stop_is_clean_and_resumable(tmp_path) -> None:
    """A --max-minutes stop under torchrun: both ranks wait for rank 0's checkpoint, exit 0 (torchrun would
    report any other status as FAILED), and stderr says how to continue."""
    import torch

    from lightmedseg.data.synth import make_synthetic_dataset

    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not on PATH (it ships with torch)")
    data = make_synthetic_dataset(tmp_path / "synth", num_cases=5, seed=1, shape=(32, 32, 32))
    run = tmp_path / "run"
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "lightmedseg.cli.main", "train", "--preset",
           "demo", "--data", str(data), "--out", str(run), "--no-progress", "--max-minutes", "1e-6",
           *[a for o in TINY for a in ("--set", o)]]
    done = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "FAILED" not in done.stderr and "stopped by max_minutes at step 1" in done.stderr
    assert json.loads(done.stdout)["stopped"] == "max_minutes"
    assert torch.load(run / "checkpoint_last.pt", weights_only=True)["step"] == 1


def test_fast_path_gradient_strides_differ_only_along_size_one_axes() -> None:
    """Why the trainer hides DDP's "Grad strides do not match bucket view strides" (trainer.DDP_STRIDES_WARNING):
    on the fast path, a gradient whose strides differ from its parameter's differs only along axes of size 1, so
    its memory layout is the parameter's and DDP's copy of it is a few small weights, not a layout conversion."""
    import torch

    from lightmedseg.config import load_config
    from lightmedseg.fast import fast_train_forward
    from lightmedseg.model.factory import build_model

    torch.manual_seed(0)
    model = build_model(load_config("acdc")).train()
    out = fast_train_forward(model)(torch.randn(2, 1, 16, 32, 32))
    sum(o.float().square().mean() for o in (out if isinstance(out, (list, tuple)) else [out])).backward()
    differing = {n: (tuple(p.shape), p.stride(), p.grad.stride()) for n, p in model.named_parameters()
                 if p.grad is not None and p.grad.stride() != p.stride()}
    assert differing, "no gradient strides differ any more: the warning filter in the trainer can go"
    for name, (shape, want, got) in differing.items():
        assert all(a == b for a, b, size in zip(want, got, shape) if size > 1), (name, shape, want, got)


if __name__ == "__main__":
    _worker(*sys.argv[1:5])
