#!/usr/bin/env bash
# Copy what the ACDC runs have produced so far (config, logs, curves, evaluations; LightMedSeg's small
# checkpoints too) from runs/ into experiments/acdc/ so they can be committed while training goes on.
# The UNet's checkpoint (58 MB) stays in runs/.
set -euo pipefail
cd "$(dirname "$0")/../.."
# STAGE=2 copies the stage-2 runs (run_stage2.sh) into experiments/acdc/stage2/.
if [ "${STAGE:-1}" = 2 ]; then PAIRS="acdc_lightmedseg_s2:stage2/lightmedseg acdc_unet_s2:stage2/unet"
else PAIRS="acdc_lightmedseg:lightmedseg acdc_unet:unet"; fi
for pair in $PAIRS; do
  run=runs/${pair%%:*}; dest=experiments/acdc/${pair##*:}
  [ -d "$run" ] || continue
  mkdir -p "$dest"
  for f in config.yaml split.json metrics.csv steps.csv curves.png train.log; do
    [ -f "$run/$f" ] && cp "$run/$f" "$dest/$f"
  done
  [ -f "runs/${pair%%:*}.log" ] && tail -n 200 "runs/${pair%%:*}.log" > "$dest/stdout_tail.log"
  if [ "$(basename "$dest")" = lightmedseg ] && [ -f "$run/checkpoint_last.pt" ]; then
    cp "$run/checkpoint_last.pt" "$dest/checkpoint_last.pt"
  fi
  [ -d "$run/eval" ] && rm -rf "$dest/eval" && mkdir -p "$dest/eval" && \
    cp -r "$run/eval/eval_strict" "$run/eval/eval_nnformer" "$dest/eval/" 2>/dev/null || true
done
echo "synced runs/acdc_* into experiments/acdc/"
