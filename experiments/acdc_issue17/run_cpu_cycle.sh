#!/usr/bin/env bash
# A second learning-rate cycle from the shipped model (issue 17, from session 9): warm restart to the long
# run's peak (3e-4) and cosine back to 1e-6 over 1500 steps, keeping every validated model (snapshots).
# Why: the shipped acdc is the weight average of two checkpoints of one cycle (step 500 near the peak, the
# end of the schedule); the average gained ~0.5 validation Dice only because its two members differ
# (docs/results.md, session 9). A new cycle gives new, different members to average with, as stochastic
# weight averaging with a cyclic schedule does, at no inference cost.
# The shipped network and recipe are the acdc_finetune preset; both cores: torchrun, two 1-thread ranks of
# batch 2 (global batch 4), about 3 s per step on the 2-core AMD EPYC, so about 75 minutes.
#   bash experiments/acdc_issue17/run_cpu_cycle.sh        # resumes from runs/acdc_cycle2/checkpoint_last.pt
# MINUTES caps the wall-clock of one call (a clean stop with a checkpoint; start it again to go on).
set -euo pipefail
source "$(dirname "$0")/env.sh"
RUN=${RUN:-runs/acdc_cycle2}
INIT=${INIT:-src/lightmedseg/pretrained/acdc/model_best.safetensors}
RESUME=(); [ -f "$RUN/checkpoint_last.pt" ] && RESUME=(--resume)
OMP_NUM_THREADS=1 $PY -m torch.distributed.run --standalone --nproc_per_node 2 -m lightmedseg train \
  --preset acdc_finetune --data "$DATA" --split acdc_nnformer --out "$RUN" "${RESUME[@]}" --init-weights "$INIT" \
  --no-progress --max-minutes "${MINUTES:-150}" \
  --set data.cache=memory --set train.num_workers=0 --set train.seed=5 --set train.amp=none --set train.tensorboard=false \
  --set train.epochs=15 --set train.scheduler.t_max_epochs=15 --set train.snapshots=true
