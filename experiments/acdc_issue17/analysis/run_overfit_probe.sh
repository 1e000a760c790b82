#!/usr/bin/env bash
# Capacity probe (issue 17, session 6): can the shipped network fit a few training volumes much better than
# the ~85 Dice it scores on its own training patients? Fine-tunes the shipped `acdc` model on 4 training
# volumes (patients 001 and 085, both frames), no augmentation, AdamW 5e-4, for 250+ steps of batch 2 on
# 1 thread, then predicts those 4 volumes before and after (post-processing off).
#   bash experiments/acdc_issue17/analysis/run_overfit_probe.sh   (about 15 minutes on an idle core)
set -euo pipefail
cd "$(dirname "$0")/../../.."
DATA=${DATA:-/work/data/acdc}
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/overfit_probe}
STEPS=${STEPS:-250}
mkdir -p "$OUT/images" "$OUT/labels"
for c in patient001_frame01 patient001_frame12 patient085_frame01 patient085_frame09; do
  ln -sf "$DATA/imagesTr/${c}_0000.nii.gz" "$OUT/images/"; ln -sf "$DATA/labelsTr/$c.nii.gz" "$OUT/labels/"
done
OMP_NUM_THREADS=1 $PY -m lightmedseg train --preset acdc --set model.router_downsample=interpolate \
  --set model.encoder_norm=false --data "$DATA" --split experiments/acdc_issue17/analysis/overfit_split.json \
  --out "$OUT/run" --init-weights src/lightmedseg/pretrained/acdc/model_best.safetensors --no-progress \
  --max-steps "$STEPS" --set "data.augment={}" --set train.optimizer.lr=5.0e-4 \
  --set train.loss.class_weighting=none --set data.cache=memory --set train.num_workers=0 --set train.seed=3 \
  --set train.scheduler.warmup_epochs=0.2 --set train.scheduler.eta_min=1.0e-5 --set train.tensorboard=false \
  --set train.batch_size=2 --set train.iterations_per_epoch=100 --set train.epochs=5 \
  --set train.scheduler.t_max_epochs=5 --set train.val_every=5
for m in acdc "$OUT/run"; do
  tag=$(basename "$m")
  OMP_NUM_THREADS=1 $PY -m lightmedseg predict -m "$m" -i "$OUT/images" -o "$OUT/pred_$tag" --no-keep-largest \
    --backend torch -q --overwrite
  echo "== $m on its 4 fitting volumes"
  # was postprocess/search_postprocess.py's "none" row (nnformer-mode Dice, no post-processing); now the product's evaluate
  $PY -m lightmedseg evaluate --pred "$OUT/pred_$tag" --ref "$OUT/labels" --labels "$DATA/dataset.json" \
    --mode nnformer --out "$OUT/eval_$tag" -q
done
