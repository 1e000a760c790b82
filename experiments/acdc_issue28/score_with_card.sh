#!/usr/bin/env bash
# Issue 28: score a run's validated models with the shipped `acdc` card's defaults (rot90 TTA, keep the largest RV
# and Myo component, LV touching Myo) - the second curve beside the trainer's one pass, so a plateau shows in
# both. The card goes into a scoring folder with copies of the run's split and config, so the run folder is
# only read (it may still be training). Results: RUN/eval/card_defaults.csv (one row per model file).
#   [MAX_CASES=N] [THREADS=N] [OUT_CSV=FILE] bash experiments/acdc_issue28/score_with_card.sh RUN [MODEL ...]   # default: RUN/snapshots/*.safetensors
# Snapshots are weights and leave with the machine: score them in the session that made them.
set -euo pipefail
card=$(cd "$(dirname "$0")/../../src/lightmedseg/pretrained/acdc" && pwd)/card.json
source "$(dirname "$0")/../acdc_issue17/env.sh"  # DATA, PY
run=$(realpath "$1"); shift
models=("$@"); [ ${#models[@]} -gt 0 ] || models=("$run"/snapshots/*.safetensors)
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cp "$run/split.json" "$run/config.yaml" "$card" "$work/"
mkdir -p "$run/eval"
OMP_NUM_THREADS=${THREADS:-1} $PY -m lightmedseg score-checkpoints "$work" --data "$DATA" --models "${models[@]}" \
  -o "${OUT_CSV:-$run/eval/card_defaults.csv}" --overwrite ${MAX_CASES:+--max-cases "$MAX_CASES"}
