# Shared by run_warm_start.sh and run_stage2.sh (sourced): the shipped `acdc` network in the faster reading of
# Section 3.6 (final_transposed_conv; router interpolation and no encoder norm, as the shipped model's config says)
# and the shipped model's last recipe (experiments/acdc_issue17/run_cpu_long2.sh: one warm-up epoch, cosine to 1e-6,
# the seven augmentations with full-circle rotation, uniform class weights), epochs of 125 steps, validation every
# 250 steps with snapshots. Each stage's script adds its learning rate, seed, batch and length, and its start.
source "$(dirname "${BASH_SOURCE[0]}")/../acdc_issue17/env.sh"  # DATA, PY; cd to the repository root
RECIPE=(--preset acdc --set model.final_transposed_conv=true
  --set model.router_downsample=interpolate --set model.encoder_norm=false
  --data "$DATA" --split acdc_nnformer --no-progress --device cpu
  --set 'data.augment={flip: true, rotate: {prob: 0.5, degrees: 180}, scale: true, noise: true, gamma: true, brightness: true, blur: true}'
  --set train.loss.class_weighting=none --set data.cache=memory --set train.num_workers=0 --set train.amp=none
  --set train.scheduler.warmup_epochs=1 --set train.scheduler.eta_min=1.0e-6 --set train.tensorboard=false
  --set train.iterations_per_epoch=125 --set train.val_every=2 --set train.snapshots=true)
