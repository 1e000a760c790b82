#!/usr/bin/env bash
# Issue 25: the shipped `acdc` model in the faster reading of Section 3.6 (model.final_transposed_conv,
# docs/architecture.md reading 1), fine-tuned from the shipped weights instead of trained from scratch.
# --init-weights maps the default reading onto it (lightmedseg.model.readings: the last stage's ConvT -> the
# mean of its taps, final_up -> nearest upsampling of the logits): 76.16 validation Dice with the card's
# defaults before any step, against the shipped 84.79.
# The shipped network (router interpolation, no encoder norm, as the `acdc` card says). Recipe: the shipped model's last stage (experiments/acdc_issue17/run_cpu_long2.sh: AdamW 3e-4, one warm-up
# epoch, cosine to 1e-6, the seven augmentations with full-circle rotation, uniform class weights), batch 2 on
# one thread, 2000 steps (16 epochs of 125), seed 5, validation every 250 steps with snapshots.
# Selection, fixed before the run's scores were seen: the snapshots of steps 1000-2000 and the uniform average of the
# best of them with the last (lightmedseg average) are scored with the card's defaults on the 20 validation volumes
# (experiments/acdc_issue28/score_with_card.sh); the highest ships as `acdc` if it is within 0.1 of the shipped
# 84.79 (issue 25: "unchanged within 0.1, or better"), otherwise the shipped model stays.
#   bash experiments/issue25_halfres/run_warm_start.sh        # starts or resumes runs/issue25_warm (background)
# Stops cleanly at MINUTES (or on SIGUSR1 / SIGTERM) with checkpoint_last.pt; rerun to resume.
set -euo pipefail
source "$(dirname "$0")/recipe.sh"  # RECIPE, DATA, PY
RUN=${RUN:-runs/issue25_warm}
RESUME=(); [ -f "$RUN/checkpoint_last.pt" ] && RESUME=(--resume)
mkdir -p "$(dirname "$RUN")"
OMP_NUM_THREADS=1 $PY -m lightmedseg train "${RECIPE[@]}" --out "$RUN" "${RESUME[@]}" --init-weights acdc \
  --max-minutes "${MINUTES:-150}" --set train.optimizer.lr=3.0e-4 --set train.seed=5 \
  --set train.batch_size=2 --set train.epochs=16 --set train.scheduler.t_max_epochs=16 \
  > "$RUN.log" 2>&1 &
echo "$!" > "$RUN.pid"
