#!/usr/bin/env bash
# Paired control of run_cpu_stage3.sh (issue 17): identical (same start weights, seed, schedule, code) except
# data.augment = flips only, as stages 1-2 used. Compared with stage 3 at equal steps (validation every 400).
#   bash experiments/acdc_issue17/run_cpu_stage3_flip.sh      (resumes when runs/acdc_stage3_flip exists)
AUGMENT="{flip: true}" RUN=runs/acdc_stage3_flip exec bash "$(dirname "$0")/run_cpu_stage3.sh"
