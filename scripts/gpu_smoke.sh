#!/usr/bin/env bash
# GPU smoke test: what the CPU test suite cannot show. Run on a machine with an NVIDIA GPU and a
# CUDA build of PyTorch already installed, from the repository root or anywhere:
#
#     bash scripts/gpu_smoke.sh [OUT_DIR]        # OUT_DIR default: $OUT, else ./gpu_smoke_out
#
# Stages (each under a time limit; the script goes on after a failure and exits 1 if any failed):
#   setup     pip install --no-deps -e . and any missing pure-python dependency (WHEELS=dir: offline)
#   amp       CUDA training a few steps on synthetic data with bf16 autocast, then fp16 + GradScaler
#   resume    SIGUSR1 during GPU training -> checkpoint + exit 75; --resume -> exit 0
#   ddp       NCCL DistributedDataParallel: with >= 2 GPUs the trainer itself as 2 processes, started by
#             torchrun and by SLURM-style variables; with 1 GPU a 1-process NCCL group around DDP
#             (NCCL refuses two ranks on one GPU)
#   numbers   the paper's 128^3 setting: training s/step, predict s/case (with and without TTA),
#             profile (params, MACs, peak memory, latency) -> OUT_DIR/summary.md for docs/benchmarks.md
# Needs about 3-5 minutes on one modern GPU. Nothing in the package depends on having a GPU.
# SMOKE_DEVICE=cpu SMOKE_SIZE=32 SMOKE_SKIP_INSTALL=1 runs the same script logic on a CPU (no fp16, no
# NCCL, no pip install): a dry run of the script itself, to check it without a GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT_DIR=${1:-${OUT:-$ROOT/gpu_smoke_out}}
PY=${PYTHON:-python3}
DEV=${SMOKE_DEVICE:-cuda}
BIG=${SMOKE_SIZE:-128}
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/lightmedseg-gpu-smoke.XXXXXX")
LOG=$OUT_DIR/gpu_smoke.log
SUMMARY=$OUT_DIR/summary.md
export PYTHONPATH=$ROOT/src${PYTHONPATH:+:$PYTHONPATH}   # works even if the editable install fails
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
LMS=("$PY" -m lightmedseg.cli.main)
RESULTS=()
FAILED=0
: > "$LOG"
echo "# GPU smoke test ($(date -u '+%Y-%m-%d %H:%M UTC'))" > "$SUMMARY"

log() { echo "$*" | tee -a "$LOG"; }
note() { echo "$*" >> "$SUMMARY"; }
# stage NAME LIMIT_S CMD...: run CMD (a function too) with a time limit, output to the log, record PASS/FAIL.
stage() {
    local name=$1 limit=$2; shift 2
    local t0=$(date +%s.%N) rc
    log "== $name: $*"
    set -m  # own process groups, so the watchdog can stop a stage with all its children
    ( "$@" ) >> "$LOG" 2>&1 &
    local pid=$!
    ( sleep "$limit"; echo "time limit ${limit} s" >> "$LOG"; kill -TERM -- -"$pid"; sleep 20; kill -KILL -- -"$pid" ) \
        > /dev/null 2>&1 &
    local watchdog=$!
    set +m
    wait "$pid"
    rc=$?
    kill -- -"$watchdog" > /dev/null 2>&1
    wait "$watchdog" 2> /dev/null
    local dt=$(elapsed "$t0")
    if [ $rc -eq 0 ]; then RESULTS+=("PASS $name (${dt%.*} s)"); else RESULTS+=("FAIL $name (rc $rc)"); FAILED=1; fi
    log "-- $name: rc $rc, ${dt} s"
    return $rc
}
elapsed() { awk -v a="$(date +%s.%N)" -v b="$1" 'BEGIN { printf "%.1f", a - b }'; }

# ---------------------------------------------------------------------------------------------- setup
"$PY" - <<'EOF' 2>&1 | tee -a "$LOG"
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
for i in range(torch.cuda.device_count()):
    print(f"  cuda:{i}", torch.cuda.get_device_name(i), f"{torch.cuda.get_device_properties(i).total_memory / 2**30:.0f} GiB")
EOF
if [ "$DEV" = cuda ] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    log "FAIL: no CUDA device visible to PyTorch; this script is for a GPU machine"
    exit 3
fi
NGPU=$("$PY" -c "import torch; print(torch.cuda.device_count())")
GPU_NAME=$("$PY" -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none (cpu dry run)')")
note "GPU: ${NGPU} x ${GPU_NAME}; $("$PY" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda)")"

install_deps() {
    [ -n "${SMOKE_SKIP_INSTALL:-}" ] || "$PY" -m pip install -q --no-deps --no-build-isolation -e "$ROOT" || "$PY" -m pip install -q --no-deps -e "$ROOT" \
        || log "(editable install failed; running from $ROOT/src via PYTHONPATH)"
    # import name -> pip name of the dependencies the train/predict/profile paths import
    local missing
    missing=$("$PY" - <<'EOF'
import importlib.util
need = {"numpy": "numpy", "scipy": "scipy", "monai": "monai", "nibabel": "nibabel", "SimpleITK": "SimpleITK",
        "yaml": "pyyaml", "safetensors": "safetensors", "tqdm": "tqdm", "matplotlib": "matplotlib",
        "einops": "einops", "psutil": "psutil", "h5py": "h5py", "fvcore": "fvcore", "thop": "thop"}
print(" ".join(p for m, p in need.items() if importlib.util.find_spec(m) is None))
EOF
)
    if [ -n "$missing" ]; then
        log "installing missing dependencies: $missing"
        # shellcheck disable=SC2086
        "$PY" -m pip install -q ${WHEELS:+--no-index --find-links "$WHEELS"} $missing \
            || log "(some dependencies could not be installed: the stages that need them fail)"
    fi
    "$PY" -c "import lightmedseg.training.trainer, lightmedseg.inference.pipeline, lightmedseg.data.synth; print('lightmedseg imports')"
}
stage setup 600 install_deps || { log "cannot import lightmedseg; stopping"; printf '%s\n' "${RESULTS[@]}" | tee -a "$LOG"; exit 1; }

stage synth 300 "${LMS[@]}" synth "$WORK/synth64" --cases 6 --shape 64 64 64
stage synth128 300 "${LMS[@]}" synth "$WORK/synth128" --cases 3 --shape $BIG $BIG $BIG

TINY=(--preset demo --data "$WORK/synth64" --no-progress --set train.device=$DEV --set train.tensorboard=false
      --set train.num_workers=2 --set train.iterations_per_epoch=5 --set train.epochs=2 --set train.val_every=1
      --set train.val_max_cases=2)

# ------------------------------------------------------------------------------------------------ amp
check_amp() {  # check_amp AMP: train 10 steps, the summary must name the AMP and have finite loss / Dice
    local amp=$1 run=$WORK/amp_$1
    "${LMS[@]}" train "${TINY[@]}" --out "$run" --set "train.amp=$amp" > "$run.json" || return 1
    "$PY" - "$run.json" "$amp" <<'EOF'
import json, math, sys
s = json.loads(open(sys.argv[1]).read())
print(s)
assert s["amp"] == sys.argv[2] and s["steps"] == 10 and s["stopped"] == "completed", s
assert math.isfinite(s["last_loss"]) and s["best_metric"] is not None and 0 <= s["best_metric"] <= 1, s
EOF
}
stage amp_bf16 300 check_amp bf16
[ "$DEV" = cuda ] && stage amp_fp16 300 check_amp fp16

# --------------------------------------------------------------------------------------------- resume
check_sigusr1() {  # SIGUSR1 mid-run -> 75 with a checkpoint; --resume -> 0
    local run=$WORK/sigusr1 rc
    "${LMS[@]}" train "${TINY[@]}" --out "$run" --set train.epochs=50 --set train.val_every=100 > "$run.json" &
    local pid=$!
    for _ in $(seq 1 600); do [ -f "$run/checkpoint_last.pt" ] && break; sleep 0.2; done
    kill -USR1 $pid
    wait $pid; rc=$?
    echo "exit status after SIGUSR1: $rc (want 75)"
    [ $rc -eq 75 ] && grep -q '"stopped": "SIGUSR1"' "$run.json" || return 1
    "${LMS[@]}" train --data "$WORK/synth64" --out "$run" --resume --no-progress --max-steps 12 > "$run.resume.json"
}
stage sigusr1_resume 300 check_sigusr1

# ------------------------------------------------------------------------------------------------ ddp
PORT=$((20000 + RANDOM % 20000))
if [ "$DEV" != cuda ]; then
    log "(cpu dry run: no NCCL stage)"
elif [ "$NGPU" -ge 2 ]; then
    check_torchrun() {
        "$PY" -m torch.distributed.run --standalone --nproc_per_node 2 -m lightmedseg.cli.main train "${TINY[@]}" \
            --out "$WORK/ddp_torchrun" --set train.batch_size=4 --set train.amp=bf16 > "$WORK/ddp_torchrun.json" || return 1
        grep -q '"world_size": 2' "$WORK/ddp_torchrun.json"
    }
    check_slurm_vars() {  # what srun does: one process per GPU, SLURM variables only, NCCL
        local pids=() rc=0
        for r in 0 1; do
            env -u RANK -u WORLD_SIZE -u LOCAL_RANK SLURM_PROCID=$r SLURM_NTASKS=2 SLURM_LOCALID=$r \
                MASTER_ADDR=127.0.0.1 MASTER_PORT=$PORT "${LMS[@]}" train "${TINY[@]}" --out "$WORK/ddp_slurm" \
                --set train.batch_size=4 --set train.amp=bf16 > "$WORK/ddp_slurm_$r.json" &
            pids+=($!)
        done
        for p in "${pids[@]}"; do wait "$p" || rc=1; done
        [ $rc -eq 0 ] && grep -q '"world_size": 2' "$WORK/ddp_slurm_0.json"
    }
    stage ddp_nccl_torchrun 300 check_torchrun
    stage ddp_nccl_slurm_vars 300 check_slurm_vars
else
    check_nccl_one_gpu() {
        MASTER_ADDR=127.0.0.1 MASTER_PORT=$PORT "$PY" - <<'EOF'
import datetime, torch, torch.distributed as dist, torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from lightmedseg.model.factory import build_model
from lightmedseg.config import load_config
torch.cuda.set_device(0)
dist.init_process_group("nccl", init_method="env://", rank=0, world_size=1, timeout=datetime.timedelta(minutes=2))
dev = torch.device("cuda", 0)
model = build_model(load_config("demo")).to(dev)
ddp = DDP(model, device_ids=[0])
opt = torch.optim.AdamW(model.parameters(), 1e-3)
x, y = torch.randn(2, 4, 32, 32, 32, device=dev), torch.randint(0, 4, (2, 32, 32, 32), device=dev)
losses = []
for _ in range(4):
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = ddp(x)
    out = out[0] if isinstance(out, (list, tuple)) else out
    loss = F.cross_entropy(out.float(), y)
    opt.zero_grad(); loss.backward(); opt.step(); losses.append(loss.item())
t = torch.full((1,), 3.0, device=dev); dist.all_reduce(t)
assert t.item() == 3.0 and all(map(torch.isfinite, map(torch.tensor, losses))), losses
print("NCCL world 1, DDP bf16 losses", losses)
dist.destroy_process_group()
EOF
    }
    stage ddp_nccl_one_gpu 300 check_nccl_one_gpu
    log "(one GPU: the 2-process NCCL trainer runs need >= 2 GPUs; NCCL refuses two ranks on one device)"
fi

# -------------------------------------------------------------------------------------------- numbers
BRATS=(--preset brats --data "$WORK/synth128" --no-progress --set train.device=$DEV --set train.tensorboard=false
       --set train.num_workers=4 --set train.batch_size=2 --set train.iterations_per_epoch=12 --set train.epochs=1
       --set train.val_max_cases=1 --set data.cache=memory --set "data.patch_size=[$BIG,$BIG,$BIG]"
       --set "infer.roi_size=[$BIG,$BIG,$BIG]")
numbers_train() {  # the fast path first; the reference forward if the fast path fails on this GPU
    "${LMS[@]}" train "${BRATS[@]}" --out "$WORK/brats128" > "$WORK/brats128.json" || {
        log "(fast path failed: retrying with --reference)"; rm -rf "$WORK/brats128"
        "${LMS[@]}" train "${BRATS[@]}" --out "$WORK/brats128" --reference > "$WORK/brats128.json"; } || return 1
    "$PY" - "$WORK/brats128" "$BIG" >> "$SUMMARY" <<'EOF'
import csv, json, sys
from pathlib import Path
run = Path(sys.argv[1])
row = list(csv.DictReader(open(run / "metrics.csv")))[-1]
s = json.loads((run.parent / "brats128.json").read_text())
secs = float(row["epoch_seconds"])
print(f"- training, brats preset (ghost), 12 steps, patch {sys.argv[2]}^3, batch 2, AMP {s['amp']}: "
      f"{secs / 12:.3f} s/step over 12 steps (first step's warm-up included), epoch {secs:.1f} s")
EOF
}
numbers_predict() {
    local t0 dt
    for tta in --no-tta --tta; do
        t0=$(date +%s.%N)
        "${LMS[@]}" predict -i "$WORK/synth128/imagesTr" -o "$WORK/pred$tta" -m "$WORK/brats128" --device $DEV \
            "$tta" --quiet || return 1
        dt=$(elapsed "$t0")
        note "- predict $tta on $DEV, 3 cases of 4 x $BIG^3 (sliding window $BIG^3, overlap 0.5; process start included): $dt s total"
    done
    # --num-parts: two parts write disjoint halves
    "${LMS[@]}" predict -i "$WORK/synth128/imagesTr" -o "$WORK/parts" -m "$WORK/brats128" --device $DEV --quiet \
        --num-parts 2 --part-id 1 && [ "$(ls "$WORK/parts" | grep -c nii.gz)" -eq 1 ]
}
numbers_profile() {
    local v
    for v in ghost standard; do
        "${LMS[@]}" profile --device $DEV --variant $v --runs 10 --shape 1 4 $BIG $BIG $BIG \
            --json "$OUT_DIR/profile_${DEV}_$v.json" \
            || "${LMS[@]}" profile --device $DEV --variant $v --runs 10 --shape 1 4 $BIG $BIG $BIG \
                --only params memory latency --json "$OUT_DIR/profile_${DEV}_$v.json" || return 1
        "$PY" - "$OUT_DIR/profile_${DEV}_$v.json" "$v (1 x 4 x $BIG^3, $DEV)" >> "$SUMMARY" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
params = r.get("params", {}).get("total") or sum(v for k, v in r.get("params", {}).items() if "." not in k)
macs = {k: v.get("total") if isinstance(v, dict) else v for k, v in r.get("macs", {}).items() if k != "paper_total"}
print(f"- profile {sys.argv[2]}: params {params}, MACs {macs}, peak memory {r.get('memory', {}).get('peak_mb')} MB "
      f"({r.get('memory', {}).get('method')}), latency median {r.get('latency', {}).get('median_ms')} ms "
      f"over {r.get('latency', {}).get('runs')} runs; {r.get('machine')}, torch {r.get('torch')}")
EOF
    done
}
note ""
note "## Numbers (for docs/benchmarks.md)"
stage numbers_train 400 numbers_train
stage numbers_predict 400 numbers_predict
stage numbers_profile 300 numbers_profile

# --------------------------------------------------------------------------------------------- report
cp "$WORK"/*.json "$OUT_DIR"/ 2>/dev/null
note ""
note "## Stages"
for r in "${RESULTS[@]}"; do note "- $r"; done
log ""
printf '%s\n' "${RESULTS[@]}" | tee -a "$LOG"
log "summary: $SUMMARY; log: $LOG; work folder: $WORK"
exit $FAILED
