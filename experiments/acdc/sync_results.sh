#!/usr/bin/env bash
# Copy what the ACDC runs have produced so far (config, logs, curves, evaluations; LightMedSeg's small
# checkpoints too) from runs/ into experiments/acdc/ so they can be committed while training goes on.
# The UNet's checkpoint (58 MB) stays in runs/.
set -euo pipefail
cd "$(dirname "$0")/../.."
for pair in acdc_lightmedseg:lightmedseg acdc_unet:unet; do
  run=runs/${pair%%:*}; dest=experiments/acdc/${pair##*:}
  [ -d "$run" ] || continue
  mkdir -p "$dest"
  for f in config.yaml split.json metrics.csv steps.csv curves.png train.log; do
    [ -f "$run/$f" ] && cp "$run/$f" "$dest/$f"
  done
  [ -f "runs/${pair%%:*}.log" ] && tail -n 200 "runs/${pair%%:*}.log" > "$dest/stdout_tail.log"
  if [ "${pair##*:}" = lightmedseg ]; then
    for f in checkpoint_last.pt; do [ -f "$run/$f" ] && cp "$run/$f" "$dest/$f"; done
  fi
  [ -d "$run/eval" ] && rm -rf "$dest/eval" && mkdir -p "$dest/eval" && \
    cp -r "$run/eval/eval_strict" "$run/eval/eval_nnformer" "$dest/eval/" 2>/dev/null || true
done
echo "synced runs/acdc_* into experiments/acdc/"
