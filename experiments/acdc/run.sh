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
DATA=${DATA:-/work/data/acdc}
[ -f "$DATA/dataset.json" ] || .venv/bin/lightmedseg convert acdc-h5 ../shared/data/acdc-wsl4mis "$DATA"
ARGS=(--preset acdc --data "$DATA" --split acdc_nnformer --max-minutes "$MINUTES" --no-progress --resume
  --set train.batch_size=2 --set train.iterations_per_epoch=50 --set train.scheduler.warmup_epochs=1
  --set train.scheduler.eta_min=1.0e-6 --set data.cache=memory --set train.num_workers=0
  --set data.augment.rotate=false --set train.amp=none
  --set train.optimizer.lr=1.0e-3 --set train.loss.class_weighting=none --set data.augment.noise=false)
mkdir -p runs
if [ ! -f runs/acdc_lightmedseg/checkpoint_last.pt ] && [ -f experiments/acdc/lightmedseg/checkpoint_last.pt ]; then
  mkdir -p runs/acdc_lightmedseg && cp experiments/acdc/lightmedseg/{checkpoint_last.pt,config.yaml,split.json,metrics.csv,steps.csv} runs/acdc_lightmedseg/
fi
OMP_NUM_THREADS=1 .venv/bin/lightmedseg train "${ARGS[@]}" --out runs/acdc_lightmedseg --set train.fast=true \
  --set train.epochs=58 --set train.scheduler.t_max_epochs=58 --set train.val_every=5 >> runs/acdc_lightmedseg.log 2>&1 &
OMP_NUM_THREADS=1 .venv/bin/lightmedseg train "${ARGS[@]}" --out runs/acdc_unet --set model.architecture=unet \
  --set train.epochs=110 --set train.scheduler.t_max_epochs=110 --set train.val_every=10 >> runs/acdc_unet.log 2>&1 &
wait
for run in acdc_lightmedseg acdc_unet; do
  .venv/bin/python benchmarks/evaluate_run.py -m runs/$run --data "$DATA" --split acdc_nnformer \
    --subset validation --out runs/$run/eval --method "$run"
done
bash experiments/acdc/sync_results.sh
