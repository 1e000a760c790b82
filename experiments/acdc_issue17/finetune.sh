#!/usr/bin/env bash
# One CPU fine-tuning run of the ACDC network (issue 17), shared by the stage-4 pair and the crop-size pair.
# Every setting is an environment variable with the stage-4 value as its default:
#   INIT       start weights (model file)          src/lightmedseg/pretrained/acdc_v3/model_best.safetensors
#   RUN        run folder (resumed when it holds checkpoint_last.pt)   runs/acdc_finetune
#   ROTATE     data.augment.rotate                 {prob: 0.5, degrees: 180}
#   PATCH      data.patch_size (and so the prediction window)          [16, 160, 160]
#   EPOCHS     epochs of 100 steps of batch 2 (the cosine spans them)  20
#   VAL_EVERY  validation every N epochs           4
#   LR, SEED, THREADS, MINUTES (--max-minutes of this invocation), DATA, PY
# acdc_v3 is stage 3 (shipped as acdc in session 5). The network is the shipped models' (the acdc preset
# without encoder GN and router pooling).
set -euo pipefail
source "$(dirname "$0")/env.sh"
INIT=${INIT:-src/lightmedseg/pretrained/acdc_v3/model_best.safetensors}
RUN=${RUN:-runs/acdc_finetune}
ROTATE=${ROTATE:-"{prob: 0.5, degrees: 180}"}
EPOCHS=${EPOCHS:-20}
AUGMENT="{flip: true, rotate: $ROTATE, scale: true, noise: true, gamma: true, brightness: true, blur: true}"
RESUME=(); [ -f "$RUN/checkpoint_last.pt" ] && RESUME=(--resume)
OMP_NUM_THREADS=${THREADS:-1} $PY -m lightmedseg train --preset acdc --set model.router_downsample=interpolate \
  --set model.encoder_norm=false --data "$DATA" --split acdc_nnformer --out "$RUN" "${RESUME[@]}" \
  --init-weights "$INIT" --no-progress --max-minutes "${MINUTES:-125}" \
  --set "data.augment=$AUGMENT" --set "data.patch_size=${PATCH:-[16, 160, 160]}" \
  --set train.optimizer.lr="${LR:-3.0e-4}" --set train.loss.class_weighting=none \
  --set data.cache=memory --set train.num_workers=0 --set train.seed="${SEED:-3}" \
  --set train.scheduler.warmup_epochs=1 --set train.scheduler.eta_min=1.0e-6 --set train.tensorboard=false \
  --set train.batch_size=2 --set train.iterations_per_epoch=100 --set train.epochs="$EPOCHS" \
  --set train.scheduler.t_max_epochs="$EPOCHS" --set train.val_every="${VAL_EVERY:-4}"
