#!/usr/bin/env bash
# Paired control of run_cpu_stage3.sh (issue 17): identical (same start weights, seed, schedule, code) except
# data.augment = flips only, as stages 1-2 used. Compared with stage 3 at equal steps (validation every 400).
#   bash experiments/acdc_issue17/run_cpu_stage3_flip.sh      (resumes when runs/acdc_stage3_flip exists)
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-/work/data/acdc}
PY=${PY:-.venv/bin/python}
[ -f "$DATA/dataset.json" ] || $PY -m lightmedseg convert acdc-h5 ../shared/data/acdc-wsl4mis "$DATA"
RESUME=(); [ -f runs/acdc_stage3_flip/checkpoint_last.pt ] && RESUME=(--resume)
OMP_NUM_THREADS=${THREADS:-1} $PY -m lightmedseg train --preset acdc --set model.router_downsample=interpolate \
  --set model.encoder_norm=false --data "$DATA" --split acdc_nnformer --out runs/acdc_stage3_flip "${RESUME[@]}" \
  --init-weights src/lightmedseg/pretrained/acdc_v2/model_best.safetensors --no-progress --max-minutes "${MINUTES:-130}" \
  --set 'data.augment={flip: true}' \
  --set train.optimizer.lr=5.0e-4 --set train.loss.class_weighting=none \
  --set data.cache=memory --set train.num_workers=0 --set train.seed=2 \
  --set train.scheduler.warmup_epochs=1 --set train.scheduler.eta_min=1.0e-6 --set train.tensorboard=false \
  --set train.batch_size=2 --set train.iterations_per_epoch=100 --set train.epochs=20 \
  --set train.scheduler.t_max_epochs=20 --set train.val_every=4
