#!/usr/bin/env bash
# Crop-size pair (issue 17, session 6): does a 16 x 128 x 128 training crop learn as much per CPU-minute as
# 16 x 160 x 160? It costs 0.64x the step time (docs/results.md, "Where the errors come from"), so for the
# same wall-clock it takes about 1.5x the steps: 900 steps of batch 2 against 600, each with its own full
# cosine schedule, the same start weights (INIT), seed, data and augmentation, 1 thread each, side by side.
# Validation every 300 steps, each with its own window (= its crop).
#   INIT=... bash experiments/acdc_issue17/run_cpu_crop_pair.sh 160    (runs/acdc_crop160)
#   INIT=... bash experiments/acdc_issue17/run_cpu_crop_pair.sh 128    (runs/acdc_crop128)
set -euo pipefail
here="$(dirname "$0")"
case "${1:-}" in
  160) RUN=${RUN:-runs/acdc_crop160} PATCH="[16, 160, 160]" EPOCHS=6 VAL_EVERY=3 exec bash "$here/finetune.sh" ;;
  128) RUN=${RUN:-runs/acdc_crop128} PATCH="[16, 128, 128]" EPOCHS=9 VAL_EVERY=3 exec bash "$here/finetune.sh" ;;
  *) echo "usage: $0 160|128" >&2; exit 2 ;;
esac
