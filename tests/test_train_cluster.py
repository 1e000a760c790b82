"""Training on a cluster: ranks from SLURM variables (no torchrun), a lone rank times out clearly, the
run-folder lock, SIGUSR1 -> checkpoint + "resume me" exit status + exact resume, sharded validation.

Run as a script, this file is the worker of the two-process SLURM test: it trains (started like
``srun`` starts tasks, with SLURM variables only) and writes its rank's summary into the report folder.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lightmedseg.training import runtime as R
from lightmedseg.training.logs import METRICS_CSV, STEPS_CSV, read_csv
from lightmedseg.training.runlock import LOCK_NAME, RunFolderInUse, run_folder_lock
from lightmedseg.training.trainer import EXIT_RESUME, exit_status

TINY = [
    "data.patch_size=[32,32,32]", "train.epochs=4", "train.iterations_per_epoch=4", "train.batch_size=1",
    "train.val_every=2", "train.amp=none", "train.deterministic=true", "train.num_workers=0",
    "train.tensorboard=false", "train.seed=3", "data.augment={flip: true, rotate: false, noise: true}",
]
DIST_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "GROUP_RANK",
             "TORCHELASTIC_RUN_ID")


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DIST_VARS and not k.startswith("SLURM_")}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def _cli(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "lightmedseg.cli.main", "train", "--preset", "demo", "--data", str(data),
            "--out", str(out), "--no-progress", *extra] + [a for o in TINY for a in ("--set", o)]


def _losses(run_dir: Path) -> list[tuple[int, str]]:
    return [(int(r["step"]), r["loss"]) for r in read_csv(run_dir / STEPS_CSV)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from lightmedseg.data.synth import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("data") / "synth", num_cases=6, seed=0, shape=(32, 32, 32))


# -- rank, world and master from SLURM ---------------------------------------------------------------------

def test_rank_and_world_come_from_torchrun_then_slurm() -> None:
    slurm = {"SLURM_PROCID": "3", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1"}
    assert R.distributed_env(slurm) == (3, 8, 1, "slurm")
    assert R.distributed_env({**slurm, "SLURM_STEP_NUM_TASKS": "4"}) == (3, 4, 1, "slurm")  # the step's tasks
    assert R.distributed_env({**slurm, "RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}) == (1, 2, 0, "torchrun")
    assert R.distributed_env({"SLURM_JOB_ID": "7"}) == (0, 1, 0, "single")  # a plain sbatch job, no srun tasks
    assert R.distributed_env({**slurm, "WORLD_SIZE": "1"})[:2] == (0, 1)  # the documented way out of a task


@pytest.mark.parametrize("nodelist, first", [
    ("gpu[003-004,007],cpu1", "gpu003"), ("node7", "node7"), ("a1,b2", "a1"), ("r[2-3]-n[08-09]", "r2-n08"),
])
def test_first_host_of_a_nodelist_without_scontrol(nodelist: str, first: str, monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert R.master_address(nodelist) == first


def test_master_address_asks_scontrol_first(tmp_path, monkeypatch) -> None:
    fake = tmp_path / "scontrol"
    fake.write_text("#!/bin/sh\n[ \"$1 $2\" = 'show hostnames' ] && printf 'first-node\\nsecond-node\\n'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert R.master_address("x[1-2]") == "first-node"


def test_slurm_rendezvous_defaults(monkeypatch) -> None:
    for key in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.setenv(key, "")  # recorded, so what the function exports is undone after the test
        monkeypatch.delenv(key)
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "gpu[12-13]")
    monkeypatch.setenv("SLURM_JOB_ID", "123456")
    R._export_slurm_rendezvous(1, 2, 1)
    assert os.environ["MASTER_ADDR"] == "gpu12" and os.environ["MASTER_PORT"] == str(20000 + 123456 % 20000)
    assert (os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["LOCAL_RANK"]) == ("1", "2", "1")


def _slurm_worker(data: str, run: str, report_dir: str) -> None:
    """One ``srun`` task: train, then write this rank's summary (rank from SLURM_PROCID)."""
    torch.set_num_threads(1)
    from lightmedseg.config import load_config
    from lightmedseg.training.trainer import train

    overrides = TINY + ["train.epochs=1", "train.batch_size=2", "train.val_every=1"]
    summary = train(load_config("demo", overrides=overrides), data, run, split=Path(report_dir) / "split.json",
                    progress=False)
    Path(report_dir, f"rank{os.environ['SLURM_PROCID']}.json").write_text(json.dumps(summary))


@pytest.mark.slow
def test_two_slurm_tasks_form_one_group_and_shard_validation(dataset, tmp_path) -> None:
    from lightmedseg.checkpoint import load_model
    from lightmedseg.config import load_config
    from lightmedseg.training.setup import config_for_dataset
    from lightmedseg.training.validation import validate

    run, reports = tmp_path / "run", tmp_path / "reports"
    reports.mkdir()
    cases = sorted(p.name.split("_0000")[0] for p in (dataset / "imagesTr").glob("*_0000.nii.gz"))
    val = cases[3:]  # 3 validation cases over 2 ranks: an uneven share
    (reports / "split.json").write_text(json.dumps({"train": cases[:3], "validation": val, "test": []}))
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, __file__, str(dataset), str(run), str(reports)],
                              env=_clean_env(SLURM_PROCID=str(r), SLURM_NTASKS="2", SLURM_LOCALID=str(r),
                                             SLURM_JOB_ID="42", MASTER_ADDR="127.0.0.1", MASTER_PORT=port),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in (0, 1)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-2000:] for o in outs)
    s0, s1 = (json.loads((reports / f"rank{r}.json").read_text()) for r in (0, 1))
    assert s0["world_size"] == s1["world_size"] == 2 and s0["steps"] == s1["steps"] == 4
    assert s0["weights_checksum"] == s1["weights_checksum"]  # one DDP group: identical replicas
    assert len(torch.load(run / "checkpoint_last.pt", weights_only=True)["rng"]) == 2
    # Sharded validation (case 0 and 2 on rank 0, case 1 on rank 1) equals one process validating all 3.
    sharded = float(read_csv(run / METRICS_CSV)[-1]["val_dice"])
    model, stored = load_model(run / "model_last.safetensors")
    config = config_for_dataset(load_config("demo", overrides=TINY), dataset)
    single = validate(model.eval(), dataset, val, config, torch.device("cpu"), None)["val_dice"]
    assert sharded == pytest.approx(single, abs=1e-6)


def test_lone_slurm_rank_times_out_with_a_clear_message(dataset, tmp_path) -> None:
    env = _clean_env(SLURM_PROCID="0", SLURM_NTASKS="2", SLURM_LOCALID="0", MASTER_ADDR="127.0.0.1",
                     MASTER_PORT=_free_port())
    t0 = time.monotonic()
    done = subprocess.run(_cli(dataset, tmp_path / "run", "--set", "train.dist_timeout_minutes=0.05"), env=env,
                          capture_output=True, text=True, timeout=120)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 2, done.stderr[-2000:]
    assert "rank 0 of 2 (slurm)" in last and "did not all join" in last and "0.05 min" in last, last
    assert time.monotonic() - t0 < 60 and not (tmp_path / "run" / "checkpoint_last.pt").exists()


# -- the run-folder lock -----------------------------------------------------------------------------------

def test_second_trainer_on_a_live_run_folder_is_refused(dataset, tmp_path, capsys) -> None:
    from lightmedseg.cli.main import main

    run = tmp_path / "run"
    with run_folder_lock(run, R.DistInfo()):
        assert f"pid {os.getpid()}" in (run / LOCK_NAME).read_text()
        with pytest.raises(RunFolderInUse, match="in use by a live training"):
            with run_folder_lock(run, R.DistInfo()):
                pass
        assert main(["train", "--preset", "demo", "--data", str(dataset), "--out", str(run), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert "in use by a live training" in err and f"pid {os.getpid()}" in err and "Traceback" not in err
        assert not (run / "config.yaml").exists()  # refused before writing anything
    with run_folder_lock(run, R.DistInfo()):  # released at the end of the run
        pass


def test_a_killed_run_leaves_no_stale_lock(tmp_path) -> None:
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from lightmedseg.training.runlock import run_folder_lock;"
        "from lightmedseg.training.runtime import DistInfo\n"
        "with run_folder_lock(Path(sys.argv[1]), DistInfo()):\n print('locked', flush=True); time.sleep(600)"),
        str(run)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(RunFolderInUse, match=f"pid {holder.pid}"):
        with run_folder_lock(run, R.DistInfo()):
            pass
    holder.kill()
    holder.wait()
    with run_folder_lock(run, R.DistInfo()):  # the kernel dropped the dead process's lock
        assert f"pid {os.getpid()}" in (run / LOCK_NAME).read_text()


# -- stop signals, exit statuses, exact resume -------------------------------------------------------------

def test_exit_status_tells_finished_from_resume_me() -> None:
    assert exit_status({"stopped": "completed"}) == exit_status({"stopped": "max_steps"}) == 0
    assert {exit_status({"stopped": s}) for s in ("max_minutes", "SIGUSR1", "SIGTERM", "SIGINT", "signal")} == {75}
    assert EXIT_RESUME not in (0, 1, 2, 130)
    # torchrun turns any non-zero worker exit into FAILED and stops the other workers: a resumable stop is 0.
    assert exit_status({"stopped": "max_minutes"}, {"TORCHELASTIC_RUN_ID": "none"}) == 0


_SIGNAL_CHECK = """
import signal
import pytest
from lightmedseg.training.trainer import _stop_on_signals

flag = {}
with _stop_on_signals(flag):
    signal.raise_signal(signal.SIGUSR1)
    signal.raise_signal(signal.SIGTERM)  # e.g. SLURM's own SIGTERM after the forwarded SIGUSR1
    signal.raise_signal(signal.SIGUSR1)
assert flag == {"requested": "SIGUSR1"}, flag
with pytest.raises(KeyboardInterrupt):
    with _stop_on_signals({}):
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)
assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL  # handlers restored
print("ok")
"""


def test_repeated_stop_signals_keep_the_clean_stop_but_a_second_ctrl_c_aborts() -> None:
    # In a fresh interpreter: signals raised inside the test process, after earlier tests loaded OpenVINO's
    # and torch's thread pools, killed pytest (SIGSEGV, or a default-action signal handled by a pool thread).
    proc = subprocess.run([sys.executable, "-c", _SIGNAL_CHECK], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_max_minutes_before_the_schedule_exits_with_resume_status(dataset, tmp_path) -> None:
    from lightmedseg.cli.main import main

    run = tmp_path / "run"
    extra = ["--set", "train.validate_on_stop=false"]
    assert main(_cli(dataset, run, "--max-minutes", "1e-6", *extra)[3:]) == EXIT_RESUME
    assert torch.load(run / "checkpoint_last.pt", weights_only=True)["step"] == 1
    assert main(_cli(dataset, run, "--resume", "--max-steps", "2", *extra)[3:]) == 0  # did what was asked


def test_sigusr1_checkpoints_exits_resume_me_and_resumes_exactly(dataset, tmp_path) -> None:
    env = _clean_env()
    ref = subprocess.run(_cli(dataset, tmp_path / "reference"), env=env, capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr[-2000:]
    run = tmp_path / "run"
    proc = subprocess.Popen(_cli(dataset, run), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run / "checkpoint_last.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGUSR1)  # what `#SBATCH --signal=USR1@120` sends before the time limit
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_RESUME, err[-2000:]
    summary = json.loads(out)
    assert summary["stopped"] == "SIGUSR1" and 4 <= summary["steps"] < 16
    state = torch.load(run / "checkpoint_last.pt", weights_only=True)
    assert state["step"] == summary["steps"] == len(_losses(run))  # a fresh checkpoint at the last step
    done = subprocess.run(_cli(dataset, run, "--resume"), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _losses(run) == _losses(tmp_path / "reference")
    assert json.loads(done.stdout)["weights_checksum"] == json.loads(ref.stdout)["weights_checksum"]


if __name__ == "__main__":
    _slurm_worker(*sys.argv[1:4])
