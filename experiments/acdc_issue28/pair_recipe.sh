# Shared by run_capacity_pair.sh and run_recipe_pair.sh (sourced): the paired recipe every issue-28 run starts
# from and `run NAME [--set ...]`, which starts or resumes runs/issue28/NAME in the background, one thread.
# Recipe: the `acdc` preset's network, the shipped model's augmentations (full-circle rotation, scale, gamma,
# ...), AdamW 1e-3 from scratch, one warm-up epoch, cosine to 1e-6 over 4000 steps of batch 2, uniform class
# weights, seed 0, validation every 250 steps, every validated model kept (snapshots). A run's own --set
# arguments change one thing. Each run stops cleanly at MINUTES (or on SIGUSR1 / SIGTERM) with checkpoint_last.pt.
source "$(dirname "${BASH_SOURCE[0]}")/../acdc_issue17/env.sh"
OUT=${OUT:-runs/issue28}
mkdir -p "$OUT"
run() {  # name, extra --set ...
  local name=$1; shift
  local run="$OUT/$name" resume=()
  if [ ! -f "$run/checkpoint_last.pt" ] && compgen -G "$run/checkpoint_last.pt.part??" > /dev/null; then
    bash "$(dirname "${BASH_SOURCE[0]}")/checkpoint_parts.sh" join "$run"  # a checkpoint committed in parts
  fi
  [ -f "$run/checkpoint_last.pt" ] && resume=(--resume)
  OMP_NUM_THREADS=1 nice -n 5 $PY -m lightmedseg train --preset acdc --data "$DATA" --split acdc_nnformer \
    --out "$run" "${resume[@]}" --no-progress --max-minutes "${MINUTES:-600}" --device cpu \
    --set data.cache=memory --set train.num_workers=0 --set train.seed=0 --set train.amp=none \
    --set train.tensorboard=false --set train.snapshots=true \
    --set train.batch_size=2 --set train.iterations_per_epoch=125 --set train.epochs=32 --set train.val_every=2 \
    --set train.optimizer.lr=1.0e-3 --set train.scheduler.warmup_epochs=1 --set train.scheduler.t_max_epochs=32 \
    --set train.scheduler.eta_min=1.0e-6 --set train.loss.class_weighting=none \
    --set 'data.augment={flip: true, rotate: {prob: 0.5, degrees: 180}, scale: true, noise: true, gamma: true, brightness: true, blur: true}' \
    "$@" > "$OUT/$name.log" 2>&1 &
  echo "$!" > "$OUT/$name.pid"
}
