#!/usr/bin/env bash
# The shipped-model candidate of issue 17 on a lent GPU, in chunks that add up over sessions: the `acdc`
# preset's network (strides, initialisation, encoder GN, router pooling, deep supervision) with all seven
# augmentations, to the paper's schedule (300 epochs over the 140 training volumes = 21 x 250 steps of
# batch 8), AdamW 1e-3, warm-up + cosine. Starts the run when .gpu/full is absent, resumes it otherwise; each
# call trains for FULL_MIN minutes and packs the run folder into $OUT/full.tgz.
#   device run: FULL_MIN=8 bash scripts/gpu/acdc_full.sh        (carry: .gpu, .whl)
#   PRESET=acdc_halfres picks the network (default acdc; issue 28's chosen configuration once the paired run decides)
#   then here:  rm -rf .gpu/full && tar -xzf FILES_AT/full.tgz -C .gpu --strip-components=1 runs/full
#   locally (CPU, a few steps, checks the script): SMOKE=1 OUT=/tmp/out bash scripts/gpu/acdc_full.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
FULL_MIN=${FULL_MIN:-8}
PRESET=${PRESET:-acdc}
date -u +"start %T"
source scripts/gpu/device_env.sh   # OUT, PY, WORK, DATA; wheels and src/ on the path
AUG='data.augment={flip: true, rotate: {prob: 0.3, degrees: 30}, scale: true, noise: true, gamma: true, brightness: true, blur: true}'
if [ -n "${SMOKE:-}" ]; then
  SCHEDULE=(--set train.batch_size=2 --set train.iterations_per_epoch=2 --set train.epochs=2
    --set train.scheduler.t_max_epochs=2 --set train.val_every=1 --set train.val_max_cases=1 --set train.num_workers=0)
else
  SCHEDULE=(--set train.batch_size=8 --set train.iterations_per_epoch=250 --set train.epochs=21
    --set train.scheduler.t_max_epochs=21 --set train.val_every=1 --set train.num_workers=6)
fi
if [ -d .gpu/full ]; then
  cp -r .gpu/full "$WORK/runs/full"
  ARGS=(--resume)
else
  ARGS=(--preset "$PRESET" --split acdc_nnformer --set "$AUG" --set train.optimizer.lr=1.0e-3
    --set train.loss.class_weighting=none --set data.cache=memory --set train.seed=0
    --set train.scheduler.warmup_epochs=1 --set train.scheduler.eta_min=1.0e-6 --set train.tensorboard=false
    "${SCHEDULE[@]}")
fi
date -u +"data ready %T"
OMP_NUM_THREADS=4 $PY -m lightmedseg train "${ARGS[@]}" --reference --data "$DATA" --out "$WORK/runs/full" \
  --no-progress --max-minutes "$FULL_MIN" > "$WORK/full.log" 2>&1
echo "train exit $? (75: stopped on time, resume with the same command)"; tail -4 "$WORK/full.log"
cat "$WORK/runs/full/metrics.csv"
tar -czf "$OUT/full.tgz" -C "$WORK" runs/full full.log
date -u +"end %T"
