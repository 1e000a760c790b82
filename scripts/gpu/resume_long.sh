#!/usr/bin/env bash
# Continue the long ACDC run of acdc_experiments.sh on a lent GPU for LONG_MIN minutes (its run folder,
# without the best-model files, in .gpu/long; the 8-bit data pack in .gpu/acdc.tar.xz; wheels in .whl/).
#   device run: LONG_MIN=1.5 bash scripts/gpu/resume_long.sh     (carry: .gpu, .whl)
set -uo pipefail
cd "$(dirname "$0")/../.."
LONG_MIN=${LONG_MIN:-1.5}
date -u +"start %T"
source scripts/gpu/device_env.sh   # OUT, PY, WORK, DATA; wheels and src/ on the path
cp -r .gpu/long "$WORK/runs/long"
date -u +"data ready %T"
OMP_NUM_THREADS=4 $PY -m lightmedseg.cli.main train --resume --reference --data "$DATA" --out "$WORK/runs/long" \
  --no-progress --max-minutes "$LONG_MIN" --set train.num_workers=6 > "$WORK/long.log" 2>&1
echo "train exit $?"; tail -4 "$WORK/long.log"; cat "$WORK/runs/long/metrics.csv"
tar -czf "$OUT/long.tgz" -C "$WORK" runs/long long.log
date -u +"end %T"
