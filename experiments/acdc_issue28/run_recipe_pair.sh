#!/usr/bin/env bash
# Issue 28, item 2: recipe against recipe, each paired with `narrow` of run_capacity_pair.sh (the `acdc` network,
# AdamW 1e-3 + one warm-up epoch + cosine, uniform class weights; same seed 0, data, augmentations and budget of
# 4000 steps of batch 2, validation every 250 steps with snapshots). The budget is counted in steps, so machine
# load changes the hours, not the curve. One variable changes per run:
#   sgd   nnU-Net's optimiser: SGD, Nesterov momentum 0.99, lr 1e-2, weight decay 3e-5, poly decay (0.9), no warm-up
#   rv2   the end-systolic RV emphasised: loss.class_emphasis [1, 2, 1, 1] (RV's w_c doubled in every term)
#   halfres  the network in the other reading of Section 3.6 (`acdc_halfres`: last decoder stage at the stem's
#         resolution, then the head and a final transposed conv; model.final_transposed_conv) - issue 25's lever 2
#   aniso in-plane 1 x 3 x 3 kernels on the two finest levels (`acdc_aniso`, model.kernel_sizes; nnU-Net's rule for
#         thick slices)
#   ema   the weights' moving average validated and saved (train.ema_decay 0.999, warmed up: training/ema.py)
#   unet  item 3's first peer: MONAI's UNet with the same strides (model.architecture unet, 4.81M parameters; no
#         deep supervision, which MONAI's UNet lacks), the same recipe and 4000-step budget as `narrow`
#   bash experiments/acdc_issue28/run_recipe_pair.sh            # starts or resumes both (one thread each)
#   RUNS="sgd" bash experiments/acdc_issue28/run_recipe_pair.sh # or a chosen subset
# Each run stops cleanly at MINUTES (or on SIGUSR1 / SIGTERM) with checkpoint_last.pt; rerun to resume.
set -euo pipefail
source "$(dirname "$0")/pair_recipe.sh"  # the paired recipe and run()
for name in ${RUNS:-sgd rv2}; do
  case $name in
    sgd) run sgd --set train.optimizer.name=sgd --set train.optimizer.lr=1.0e-2 --set train.optimizer.weight_decay=3.0e-5 \
           --set train.scheduler.name=poly --set train.scheduler.warmup_epochs=0 ;;
    rv2) run rv2 --set 'train.loss.class_emphasis=[1,2,1,1]' ;;
    halfres) run halfres --set model.final_transposed_conv=true ;;
    aniso) run aniso --set 'model.kernel_sizes=[[1,3,3],[1,3,3],[3,3,3],[3,3,3],[3,3,3]]' ;;
    ema) run ema --set train.ema_decay=0.999 ;;
    unet) run unet --set model.architecture=unet --set model.deep_supervision=0 ;;
    *) echo "unknown run $name (sgd, rv2, halfres, aniso, ema, unet)" >&2; exit 2 ;;
  esac
done
wait
