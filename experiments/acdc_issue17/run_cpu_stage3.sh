#!/usr/bin/env bash
# Stage 3 of the ACDC model (issue 17): from acdc_v2 (stage 2, 74.4 validation Dice; now shipped as acdc) with
# nnU-Net-like augmentation (flip, in-plane rotation and scaling, noise, gamma, brightness, blur), which
# stages 1-2 did not use (flip only). Peak lr 5e-4, cosine to 1e-6 over 2000 steps of batch 2, 1 thread,
# validation every 400 steps. Same network as the shipped model.
#   bash experiments/acdc_issue17/run_cpu_stage3.sh      (resumes when runs/acdc_stage3 exists)
# AUGMENT and RUN change the augmentations and the run folder (run_cpu_stage3_flip.sh, the paired control).
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-/work/data/acdc}
PY=${PY:-.venv/bin/python}
[ -f "$DATA/dataset.json" ] || $PY -m lightmedseg convert acdc-h5 ../shared/data/acdc-wsl4mis "$DATA"
RUN=${RUN:-runs/acdc_stage3}
AUGMENT=${AUGMENT:-"{flip: true, rotate: {prob: 0.3, degrees: 30}, scale: true, noise: true, gamma: true, brightness: true, blur: true}"}
RESUME=(); [ -f "$RUN/checkpoint_last.pt" ] && RESUME=(--resume)
OMP_NUM_THREADS=${THREADS:-1} $PY -m lightmedseg train --preset acdc --set model.router_downsample=interpolate \
  --set model.encoder_norm=false --data "$DATA" --split acdc_nnformer --out "$RUN" "${RESUME[@]}" \
  --init-weights src/lightmedseg/pretrained/acdc_v2/model_best.safetensors --no-progress --max-minutes "${MINUTES:-130}" \
  --set "data.augment=$AUGMENT" \
  --set train.optimizer.lr=5.0e-4 --set train.loss.class_weighting=none \
  --set data.cache=memory --set train.num_workers=0 --set train.seed=2 \
  --set train.scheduler.warmup_epochs=1 --set train.scheduler.eta_min=1.0e-6 --set train.tensorboard=false \
  --set train.batch_size=2 --set train.iterations_per_epoch=100 --set train.epochs=20 \
  --set train.scheduler.t_max_epochs=20 --set train.val_every=4
