#!/usr/bin/env bash
# Issue 28, item 1: does the paper's capacity (about 0.48M parameters) learn past the plateau of the 0.26M
# network? A paired pair from scratch, side by side, one thread each (same seed, data, recipe, budget and
# machine load): the `acdc` preset's network (encoder widths 8-16-32-64, 0.26M) against the same network
# at 1.5x width (12-24-48-96, 0.52M, the `acdc_wide` preset; docs/architecture.md, "The total").
# Recipe: the shipped model's augmentations (acdc_finetune: full-circle rotation, scale, gamma, ...),
# AdamW 1e-3 from scratch (the paired experiments' calibration), one warm-up epoch, cosine to 1e-6 over
# 4000 steps of batch 2, uniform class weights, validation every 250 steps, every validated model kept
# (snapshots) so each check can also be scored with the card's defaults (select_snapshot.py).
#   bash experiments/acdc_issue28/run_capacity_pair.sh     # starts or resumes both; MINUTES caps one call
#   RUNS="wide" bash experiments/acdc_issue28/run_capacity_pair.sh   # or one of them
#   RUNS="narrow_s1 wide_s1" bash ...   # the same pair with train.seed=1 (issue 28's second seed)
#   RUNS="standard" bash ...   # the paper's larger Table 2 variant: dense 3^3 convs instead of GhostConv3D
#   RUNS="standard_paper" bash ...   # the same at the paper's 0.66M: Eqs. 7 and 19 dense as well (model.dense_local_convs)
# Each run stops cleanly at MINUTES (or on SIGUSR1 / SIGTERM) with checkpoint_last.pt; rerun to resume.
set -euo pipefail
source "$(dirname "$0")/pair_recipe.sh"  # the paired recipe and run()
for name in ${RUNS:-narrow wide}; do
  case $name in
    narrow) run narrow ;;
    wide) run wide --set 'model.encoder_channels=[12,24,48,96]' ;;
    narrow_s1) run narrow_s1 --set train.seed=1 ;;  # the second seed of the final comparison
    wide_s1) run wide_s1 --set 'model.encoder_channels=[12,24,48,96]' --set train.seed=1 ;;
    standard) run standard --set model.conv=standard ;;  # session 18: capacity where the UNet has it
    standard_paper) run standard_paper --set model.conv=standard --set model.dense_local_convs=true ;;  # 0.66M, the paper's count
    *) echo "unknown run $name (narrow, wide, narrow_s1, wide_s1, standard, standard_paper)" >&2; exit 2 ;;
  esac
done
wait
