#!/usr/bin/env bash
# One prepared run for a lent GPU machine (issue 17): the paired ACDC experiments and a long run, side by
# side on one GPU, then everything small enough to come back packed into $OUT.
#
# Run from the repository root on the device, with the 8-bit ACDC pack in .gpu/ (scripts/gpu/pack_dataset.py)
# and wheels for monai and nibabel in .whl/ (the device image lacks them):
#   device run: bash scripts/gpu/acdc_experiments.sh     (carry: .gpu, .whl)
# Locally (CPU, a few steps, to check the script): SMOKE=1 OUT=/tmp/out bash scripts/gpu/acdc_experiments.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:?set OUT}
PAIRED_MIN=${PAIRED_MIN:-6.0}     # wall-clock cap of each paired run (they stop earlier at their step budget)
LONG_MIN=${LONG_MIN:-7.3}         # wall-clock of the long run
PY=${PY:-python3}
WORK=${WORK:-/tmp/lms}
mkdir -p "$WORK" "$OUT"
exec > >(tee "$OUT/driver.log") 2>&1
date -u +"start %FT%TZ"
source scripts/gpu/device_env.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
$PY -c "import torch, monai; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'monai', monai.__version__)"
date -u +"data ready %T"

# Which training forward is faster here: the fast graph (CPU-tuned) or the reference module.
if [ -n "${SMOKE:-}" ]; then CHOICE=fast; else
  timeout 120 $PY scripts/gpu/probe_speed.py 2 8 | tee "$OUT/probe_speed.jsonl"
  CHOICE=$(tail -1 "$OUT/probe_speed.jsonl" | $PY -c "import json,sys; print(json.load(sys.stdin)['choice'])" || echo reference)
fi
PATH_FLAG=(); [ "$CHOICE" = reference ] && PATH_FLAG=(--reference)
echo "training path: $CHOICE"

# The calibration recipe of experiments/acdc/common.sh (uniform class weights, AdamW 1e-3, flips only),
# bf16 autocast on the GPU. Paired runs: 1500 steps of batch 2, validation every 250 steps, seed 0.
COMMON=(--data "$DATA" --split acdc_nnformer --no-progress "${PATH_FLAG[@]}"
  --set train.optimizer.lr=1.0e-3 --set train.loss.class_weighting=none --set data.augment.rotate=false
  --set data.augment.noise=false --set data.cache=memory --set train.num_workers=1 --set train.seed=0
  --set train.scheduler.warmup_epochs=1 --set train.scheduler.eta_min=1.0e-6 --set train.tensorboard=false)
if [ -n "${SMOKE:-}" ]; then
  PAIRED=(--set train.batch_size=2 --set train.iterations_per_epoch=2 --set train.epochs=2
    --set train.scheduler.t_max_epochs=2 --set train.val_every=1 --set train.val_max_cases=1)
  LONG=(--set train.batch_size=2 --set train.iterations_per_epoch=2 --set train.epochs=3
    --set train.scheduler.t_max_epochs=3 --set train.val_every=1 --set train.val_max_cases=1)
else
  PAIRED=(--set train.batch_size=2 --set train.iterations_per_epoch=125 --set train.epochs=12
    --set train.scheduler.t_max_epochs=12 --set train.val_every=2)
  # The paper's schedule: 300 epochs over the 140 training volumes = 42,000 samples = 21 x 250 x 8.
  LONG=(--set train.batch_size=8 --set train.iterations_per_epoch=250 --set train.epochs=21
    --set train.scheduler.t_max_epochs=21 --set train.val_every=1)
fi
INIT=(--set model.upsample_init=fan_in --set model.spb_zero_init=true --set model.film_identity_init=true)
NODS=(--set model.deep_supervision=0)
declare -A RUNS=(
  [p0_paper]="--preset acdc_paper"
  [p1_init]="--preset acdc_paper ${INIT[*]}"
  [p2_geometry]="--preset acdc --set model.upsample_init=torch --set model.spb_zero_init=false --set model.film_identity_init=false ${NODS[*]}"
  [p3_init_geometry]="--preset acdc ${NODS[*]}"
  [p4_ds]="--preset acdc"
  [p5_pool]="--preset acdc ${NODS[*]} --set model.router_downsample=pool"
  [p6_norm]="--preset acdc ${NODS[*]} --set model.encoder_norm=true"
  [p7_all]="--preset acdc --set model.router_downsample=pool --set model.encoder_norm=true"
  [p8_unet]="--preset acdc --set model.architecture=unet ${NODS[*]}"
)
if [ -n "${ONLY:-}" ]; then for name in "${!RUNS[@]}"; do [[ " $ONLY " == *" $name "* ]] || unset "RUNS[$name]"; done; fi
pids=()
for name in "${!RUNS[@]}"; do
  # shellcheck disable=SC2086
  OMP_NUM_THREADS=1 $PY -m lightmedseg.cli.main train ${RUNS[$name]} "${COMMON[@]}" "${PAIRED[@]}" \
    --out "$WORK/runs/$name" --max-minutes "$PAIRED_MIN" > "$WORK/$name.log" 2>&1 &
  pids+=($!)
done
OMP_NUM_THREADS=2 $PY -m lightmedseg.cli.main train --preset acdc "${COMMON[@]}" "${LONG[@]}" \
  --set train.num_workers=3 --out "$WORK/runs/long" --max-minutes "$LONG_MIN" > "$WORK/long.log" 2>&1 &
pids+=($!)
while sleep 30; do
  alive=0; for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
  line=$(date -u +%T); for d in "$WORK"/runs/*; do [ -f "$d/steps.csv" ] && line+=" $(basename "$d"):$(tail -1 "$d/steps.csv" | cut -d, -f1)"; done
  echo "$line alive=$alive"; [ "$alive" = 0 ] && break
done
date -u +"runs done %T"
for name in "${!RUNS[@]}" long; do echo "== $name"; tail -3 "$WORK/$name.log"; cat "$WORK/runs/$name/metrics.csv" 2>/dev/null; done
# Pack: the long run with its resumable checkpoint; the paired runs with logs and best weights (no optimiser).
tar -czf "$OUT/long.tgz" -C "$WORK" runs/long long.log
paired=(); for name in "${!RUNS[@]}"; do [ "$name" != p8_unet ] && paired+=("runs/$name" "$name.log"); done
tar -czf "$OUT/paired.tgz" -C "$WORK" --exclude='checkpoint_*.pt' --exclude='model_last.safetensors' \
  --exclude='events.*' "${paired[@]}"
[ -d "$WORK/runs/p8_unet" ] && tar -czf "$OUT/unet.tgz" -C "$WORK" --exclude='checkpoint_*.pt' --exclude='*.safetensors' \
  --exclude='model_last.safetensors' --exclude='events.*' runs/p8_unet p8_unet.log
ls -la "$OUT"
date -u +"end %T"
