#!/usr/bin/env bash
# ACDC, nnFormer split (70 train / 10 validation patients of ../shared/data/acdc-wsl4mis): LightMedSeg and a
# MONAI UNet trained side by side with the same data, recipe and budget (MINUTES of wall time on one CPU
# thread each, at the same time on the same 2-core machine), then both evaluated on the 10 validation
# patients with the default predict path. Each LR schedule is sized to the steps its model reaches in the
# budget (LightMedSeg ~2.2 s/step, the UNet about twice as fast on this machine), so both end annealed.
# Rerunning resumes both runs from their last checkpoints; the runs live in runs/ (outside git) and
# sync_results.sh copies logs, curves, evaluations and the small LightMedSeg checkpoint into this folder.
#   MINUTES=110 bash experiments/acdc/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
MINUTES=${MINUTES:-110}
source experiments/acdc/common.sh
if [ ! -f runs/acdc_lightmedseg/checkpoint_last.pt ] && [ -f experiments/acdc/lightmedseg/checkpoint_last.pt ]; then
  mkdir -p runs/acdc_lightmedseg && cp experiments/acdc/lightmedseg/{checkpoint_last.pt,config.yaml,split.json,metrics.csv,steps.csv} runs/acdc_lightmedseg/
fi
OMP_NUM_THREADS=1 .venv/bin/lightmedseg train "${ARGS[@]}" --out runs/acdc_lightmedseg --set train.fast=true \
  --set train.epochs=58 --set train.scheduler.t_max_epochs=58 --set train.val_every=5 >> runs/acdc_lightmedseg.log 2>&1 &
OMP_NUM_THREADS=1 .venv/bin/lightmedseg train "${ARGS[@]}" --out runs/acdc_unet --set model.architecture=unet \
  --set train.epochs=110 --set train.scheduler.t_max_epochs=110 --set train.val_every=10 >> runs/acdc_unet.log 2>&1 &
wait
evaluate_runs acdc_lightmedseg acdc_unet
bash experiments/acdc/sync_results.sh
