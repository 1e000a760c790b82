#!/usr/bin/env bash
# Stage 2 of the shipped ACDC model (issue 17): an annealing schedule on the CPU from the best weights of the
# GPU long run (scripts/gpu/acdc_experiments.sh + resume_long.sh; its run folder is experiments/acdc_issue17/long).
# Same recipe as the paired runs, peak lr 5e-4, 1500 steps of batch 2, cosine to 1e-6, 2 threads.
#   bash experiments/acdc_issue17/run_cpu_stage2.sh      (resumes when runs/acdc_stage2 exists)
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-/work/data/acdc}
[ -f "$DATA/dataset.json" ] || .venv/bin/lightmedseg convert acdc-h5 ../shared/data/acdc-wsl4mis "$DATA"
RESUME=(); [ -f runs/acdc_stage2/checkpoint_last.pt ] && RESUME=(--resume)
OMP_NUM_THREADS=2 .venv/bin/lightmedseg train --preset acdc --set model.router_downsample=interpolate \
  --set model.encoder_norm=false --data "$DATA" --split acdc_nnformer --out runs/acdc_stage2 "${RESUME[@]}" \
  --init-weights experiments/acdc_issue17/long/model_best.safetensors --no-progress --max-minutes "${MINUTES:-88}" \
  --set train.optimizer.lr=5.0e-4 --set train.loss.class_weighting=none --set data.augment.rotate=false \
  --set data.augment.noise=false --set data.cache=memory --set train.num_workers=0 --set train.seed=1 \
  --set train.scheduler.warmup_epochs=1 --set train.scheduler.eta_min=1.0e-6 --set train.tensorboard=false \
  --set train.batch_size=2 --set train.iterations_per_epoch=100 --set train.epochs=15 \
  --set train.scheduler.t_max_epochs=15 --set train.val_every=4
