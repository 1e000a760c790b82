#!/usr/bin/env bash
# BraTS 2015 sample (../shared/data/brats2015-sample: 2 training, 2 validation cases, T1c + FLAIR only, 5 labels).
# 64^3 patches on one CPU thread at low priority; rerunning resumes from the last checkpoint.
#   MINUTES=95 bash experiments/brats2015_sample/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
MINUTES=${MINUTES:-95}
DATA=${DATA:-/work/data/brats2015}
[ -f "$DATA/dataset.json" ] || .venv/bin/lightmedseg convert brats ../shared/data/brats2015-sample "$DATA"
mkdir -p runs
if [ ! -f runs/brats2015_lightmedseg/checkpoint_last.pt ] && [ -f experiments/brats2015_sample/lightmedseg/checkpoint_last.pt ]; then
  mkdir -p runs/brats2015_lightmedseg && cp experiments/brats2015_sample/lightmedseg/{checkpoint_last.pt,config.yaml,split.json,metrics.csv,steps.csv} runs/brats2015_lightmedseg/
fi
OMP_NUM_THREADS=1 nice -n 5 .venv/bin/lightmedseg train --preset brats --data "$DATA" --split brats2015_sample \
  --out runs/brats2015_lightmedseg --max-minutes "$MINUTES" --no-progress --resume \
  --set model.in_channels=2 --set model.num_classes=5 --set 'data.patch_size=[64,64,64]' --set 'infer.roi_size=[64,64,64]' --set data.foreground_oversample=0.5 \
  --set train.batch_size=2 --set train.iterations_per_epoch=50 --set train.epochs=30 --set train.val_every=5 \
  --set train.optimizer.lr=2.0e-3 --set train.scheduler.warmup_epochs=1 --set train.scheduler.t_max_epochs=30 \
  --set train.scheduler.eta_min=1.0e-6 --set data.cache=memory --set train.num_workers=0 \
  --set data.augment.rotate=false --set train.fast=true --set train.amp=none >> runs/brats2015_lightmedseg.log 2>&1
.venv/bin/python benchmarks/evaluate_run.py -m runs/brats2015_lightmedseg --data "$DATA" --split brats2015_sample \
  --subset validation --out runs/brats2015_lightmedseg/eval --method "LightMedSeg (2 modalities)"
