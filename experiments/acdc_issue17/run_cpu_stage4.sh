#!/usr/bin/env bash
# Stage 4 of the ACDC model (issue 17, session 6; now shipped as acdc): from acdc_v3 (stage 3, 76.4 validation
# Dice), 2000 steps of batch 2 on 1 thread, peak lr 3e-4, cosine to 1e-6, seed 3, validation every 400 steps,
# with in-plane rotation over the full circle (prob 0.5, +-180 degrees; nnU-Net's range for thick-slice data).
# Why: stage 3 mislabelled validation patient094's whole heart, and its pose looked unusual at first sight;
# the pose measurement that followed put it just beside the training range, so the rotation range was a
# candidate, not the explanation (docs/results.md, "Where the errors come from").
# Paired control: stage 3's rotation (prob 0.3, +-30 degrees), everything else equal:
#   bash experiments/acdc_issue17/run_cpu_stage4.sh                 (runs/acdc_stage4_rot)
#   bash experiments/acdc_issue17/run_cpu_stage4.sh control         (runs/acdc_stage4_ctl)
# Each resumes when its run folder holds checkpoint_last.pt.
set -euo pipefail
here="$(dirname "$0")"
if [ "${1:-}" = control ]; then
  RUN=${RUN:-runs/acdc_stage4_ctl} ROTATE="{prob: 0.3, degrees: 30}" exec bash "$here/finetune.sh"
fi
RUN=${RUN:-runs/acdc_stage4_rot} ROTATE="{prob: 0.5, degrees: 180}" exec bash "$here/finetune.sh"
