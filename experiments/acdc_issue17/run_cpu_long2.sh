#!/usr/bin/env bash
# The second long ACDC run (issue 17, from session 6): one continuous schedule instead of more short stages.
# Why: every 1,500-2,000-step fine-tune stage since session 4 ended on the same plateau (validation ~76,
# training-patient fit ~86; docs/results.md, "Where the errors come from"), each restarting its warm-up.
# This run brings the lineage's total to the paper's budget (300 epochs x 140 volumes = 42,000 samples):
# about 16,000 samples are behind the start weights, so 6,500 steps of global batch 4 (26,000 samples),
# warm-up 1 epoch, cosine over 65 epochs of 100 steps to 1e-6, AdamW peak 3e-4, the seven augmentations
# with stage 4's full-circle rotation, validation every 500 steps (sharded over the ranks). Both cores:
# torchrun, two 1-thread ranks of batch 2 (the samples-per-second choice: each rank runs as fast as a lone
# 1-thread job). About 3 s per step on the 2-core AMD EPYC (measured in session 6): 5.4 hours, so it spans
# sessions; it resumes from runs/acdc_long2/checkpoint_last.pt. Since session 8 (step 3378) it keeps every
# validated model in runs/acdc_long2/snapshots/ (train.snapshots), so the shipped one can be selected with
# predict's defaults (rot90 TTA, post-processing), which the trainer's validation leaves out for time.
#   INIT=<start weights> bash experiments/acdc_issue17/run_cpu_long2.sh
# Stop it cleanly with SIGTERM to torchrun, or let MINUTES stop it: a checkpoint at the current step, and
# (since session 7) the workers exit 0 with a "stopped by ... at step N" line on stderr (before, one
# rank's exit 75 made torchrun report FAILED and stop the other). Commit the run folder (checkpoint_last.pt, metrics, curves, logs) and start it again next
# session with the same command.
set -euo pipefail
source "$(dirname "$0")/env.sh"
RUN=${RUN:-runs/acdc_long2}
INIT=${INIT:-src/lightmedseg/pretrained/acdc_v4/model_best.safetensors}  # stage 4: shipped as acdc until session 9
RESUME=(); [ -f "$RUN/checkpoint_last.pt" ] && RESUME=(--resume)
AUGMENT="{flip: true, rotate: ${ROTATE:-{prob: 0.5, degrees: 180\}}, scale: true, noise: true, gamma: true, brightness: true, blur: true}"
OMP_NUM_THREADS=1 $PY -m torch.distributed.run --standalone --nproc_per_node 2 -m lightmedseg train \
  --preset acdc --set model.router_downsample=interpolate --set model.encoder_norm=false \
  --data "$DATA" --split acdc_nnformer --out "$RUN" "${RESUME[@]}" --init-weights "$INIT" --no-progress \
  --max-minutes "${MINUTES:-150}" --set "data.augment=$AUGMENT" \
  --set train.optimizer.lr=3.0e-4 --set train.loss.class_weighting=none \
  --set data.cache=memory --set train.num_workers=0 --set train.seed=4 --set train.amp=none \
  --set train.scheduler.warmup_epochs=1 --set train.scheduler.eta_min=1.0e-6 --set train.tensorboard=false \
  --set train.batch_size=4 --set train.iterations_per_epoch=100 --set train.epochs=65 \
  --set train.scheduler.t_max_epochs=65 --set train.val_every=5 --set train.snapshots=true
