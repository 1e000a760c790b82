#!/usr/bin/env bash
# ACDC, nnFormer split (70 train / 10 validation patients of ../shared/data/acdc-wsl4mis), LightMedSeg and a
# MONAI UNet with the same recipe and budget, one CPU thread each, side by side. Rerunning resumes both runs
# from their last checkpoints (the runs live in runs/, outside git; the LightMedSeg checkpoint is also kept
# in experiments/acdc/lightmedseg/ so a fresh clone can resume it).
#   MINUTES=95 bash experiments/acdc/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
MINUTES=${MINUTES:-95}
DATA=${DATA:-/work/data/acdc}
[ -f "$DATA/dataset.json" ] || .venv/bin/lightmedseg convert acdc-h5 ../shared/data/acdc-wsl4mis "$DATA"
ARGS=(--preset acdc --data "$DATA" --split acdc_nnformer --max-minutes "$MINUTES" --no-progress --resume
  --set train.batch_size=2 --set train.iterations_per_epoch=50 --set train.epochs=40 --set train.val_every=4
  --set train.optimizer.lr=2.0e-3 --set train.scheduler.warmup_epochs=1 --set train.scheduler.t_max_epochs=40
  --set train.scheduler.eta_min=1.0e-6 --set data.cache=memory --set train.num_workers=0
  --set data.augment.rotate=false --set train.amp=none)
mkdir -p runs
if [ ! -f runs/acdc_lightmedseg/checkpoint_last.pt ] && [ -f experiments/acdc/lightmedseg/checkpoint_last.pt ]; then
  mkdir -p runs/acdc_lightmedseg && cp experiments/acdc/lightmedseg/{checkpoint_last.pt,config.yaml,split.json,metrics.csv,steps.csv} runs/acdc_lightmedseg/
fi
OMP_NUM_THREADS=1 .venv/bin/lightmedseg train "${ARGS[@]}" --out runs/acdc_lightmedseg --set train.fast=true >> runs/acdc_lightmedseg.log 2>&1 &
OMP_NUM_THREADS=1 .venv/bin/lightmedseg train "${ARGS[@]}" --out runs/acdc_unet --set model.architecture=unet >> runs/acdc_unet.log 2>&1 &
wait
for run in acdc_lightmedseg acdc_unet; do
  .venv/bin/python benchmarks/evaluate_run.py -m runs/$run --data "$DATA" --split acdc_nnformer \
    --subset validation --out runs/$run/eval --method "$run"
done
