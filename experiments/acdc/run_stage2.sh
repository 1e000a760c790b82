#!/usr/bin/env bash
# ACDC stage 2: both models of run.sh continue from their stage-1 final weights (`--init-weights`) with a
# fresh AdamW state and a new warm-up + cosine schedule (peak lr 1e-3, the same recipe), for another
# MINUTES of wall time on one CPU thread each, side by side on the same 2-core machine. Total budget per
# model: stage 1 (110 min) + stage 2. Rerunning resumes both stage-2 runs. Stage 1's LightMedSeg weights
# are committed (experiments/acdc/lightmedseg/checkpoint_last.pt); the UNet's are not (19 MB), so its
# stage 2 needs the stage-1 UNet run in runs/acdc_unet (bash experiments/acdc/run.sh makes it).
# Each schedule is sized to the steps its model reached in MINUTES on this machine.
#   MINUTES=135 bash experiments/acdc/run_stage2.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
MINUTES=${MINUTES:-135}
source experiments/acdc/common.sh
LMS_STAGE1=runs/acdc_lightmedseg/checkpoint_last.pt
[ -f "$LMS_STAGE1" ] || LMS_STAGE1=experiments/acdc/lightmedseg/checkpoint_last.pt
OMP_NUM_THREADS=1 .venv/bin/lightmedseg train "${ARGS[@]}" --out runs/acdc_lightmedseg_s2 --set train.fast=true \
  --init-weights "$LMS_STAGE1" \
  --set train.epochs=62 --set train.scheduler.t_max_epochs=62 --set train.val_every=5 >> runs/acdc_lightmedseg_s2.log 2>&1 &
OMP_NUM_THREADS=1 .venv/bin/lightmedseg train "${ARGS[@]}" --out runs/acdc_unet_s2 --set model.architecture=unet \
  --init-weights runs/acdc_unet/checkpoint_last.pt \
  --set train.epochs=128 --set train.scheduler.t_max_epochs=128 --set train.val_every=10 >> runs/acdc_unet_s2.log 2>&1 &
wait
evaluate_runs acdc_lightmedseg_s2 acdc_unet_s2
STAGE=2 bash experiments/acdc/sync_results.sh
