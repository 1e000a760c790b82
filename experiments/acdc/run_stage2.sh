#!/usr/bin/env bash
# ACDC stage 2: both models of run.sh continue from their stage-1 final weights (`--init-weights`) with a
# fresh AdamW state and a new warm-up + cosine schedule (peak lr 1e-3, the same recipe), for another
# MINUTES of wall time on one CPU thread each, side by side on the same 2-core machine. Total budget per
# model: stage 1 (110 min) + stage 2. Rerunning resumes both stage-2 runs; the stage-1 runs must be in
# runs/ (run.sh leaves them there). Each schedule is sized to the steps its model reaches in MINUTES.
#   MINUTES=135 bash experiments/acdc/run_stage2.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
MINUTES=${MINUTES:-135}
DATA=${DATA:-/work/data/acdc}
[ -f "$DATA/dataset.json" ] || .venv/bin/lightmedseg convert acdc-h5 ../shared/data/acdc-wsl4mis "$DATA"
ARGS=(--preset acdc --data "$DATA" --split acdc_nnformer --max-minutes "$MINUTES" --no-progress --resume
  --set train.batch_size=2 --set train.iterations_per_epoch=50 --set train.scheduler.warmup_epochs=1
  --set train.scheduler.eta_min=1.0e-6 --set data.cache=memory --set train.num_workers=0
  --set data.augment.rotate=false --set train.amp=none
  --set train.optimizer.lr=1.0e-3 --set train.loss.class_weighting=none --set data.augment.noise=false)
mkdir -p runs
OMP_NUM_THREADS=1 .venv/bin/lightmedseg train "${ARGS[@]}" --out runs/acdc_lightmedseg_s2 --set train.fast=true \
  --init-weights runs/acdc_lightmedseg/checkpoint_last.pt \
  --set train.epochs=62 --set train.scheduler.t_max_epochs=62 --set train.val_every=5 >> runs/acdc_lightmedseg_s2.log 2>&1 &
OMP_NUM_THREADS=1 .venv/bin/lightmedseg train "${ARGS[@]}" --out runs/acdc_unet_s2 --set model.architecture=unet \
  --init-weights runs/acdc_unet/checkpoint_last.pt \
  --set train.epochs=128 --set train.scheduler.t_max_epochs=128 --set train.val_every=10 >> runs/acdc_unet_s2.log 2>&1 &
wait
for run in acdc_lightmedseg_s2 acdc_unet_s2; do
  .venv/bin/python benchmarks/evaluate_run.py -m runs/$run --data "$DATA" --split acdc_nnformer \
    --subset validation --out runs/$run/eval --method "$run"
done
STAGE=2 bash experiments/acdc/sync_results.sh
