#!/usr/bin/env bash
# Issue 17, item 6: LightMedSeg (the acdc preset) against MONAI's UNet with the same strides, data, recipe and
# wall-clock, side by side on this CPU, one thread each. Each schedule is sized to the steps its network
# makes in the budget (seconds per step from benchmarks/bench_train_step.py, passed as S_LMS and S_UNET).
#   S_LMS=2.9 S_UNET=1.6 MINUTES=35 bash experiments/acdc_issue17/run_cpu_race.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-/work/data/acdc}; MINUTES=${MINUTES:-35}
[ -f "$DATA/dataset.json" ] || .venv/bin/lightmedseg convert acdc-h5 ../shared/data/acdc-wsl4mis "$DATA"
epochs() { python3 -c "print(max(2, int(0.85 * $MINUTES * 60 / ($1 * 50))))"; }
COMMON=(--data "$DATA" --split acdc_nnformer --no-progress --max-minutes "$MINUTES"
  --set train.optimizer.lr=1.0e-3 --set train.loss.class_weighting=none --set data.augment.rotate=false
  --set data.augment.noise=false --set data.cache=memory --set train.num_workers=0 --set train.seed=0
  --set train.scheduler.warmup_epochs=1 --set train.scheduler.eta_min=1.0e-6 --set train.tensorboard=false
  --set train.batch_size=2 --set train.iterations_per_epoch=50 --set train.val_every=5)
mkdir -p runs
E1=$(epochs "${S_LMS:?}"); E2=$(epochs "${S_UNET:?}")
OMP_NUM_THREADS=1 .venv/bin/lightmedseg train --preset acdc "${COMMON[@]}" --out runs/race_lightmedseg \
  --set train.epochs="$E1" --set train.scheduler.t_max_epochs="$E1" > runs/race_lightmedseg.log 2>&1 &
OMP_NUM_THREADS=1 .venv/bin/lightmedseg train --preset acdc --set model.architecture=unet \
  --set model.deep_supervision=0 "${COMMON[@]}" --out runs/race_unet \
  --set train.epochs="$E2" --set train.scheduler.t_max_epochs="$E2" > runs/race_unet.log 2>&1 &
wait
