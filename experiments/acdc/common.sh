# Shared by run.sh and run_stage2.sh (sourced, after `cd` to the repository root and MINUTES is set):
# the dataset, converted on first use, and the recipe flags both ACDC stages give both networks.
DATA=${DATA:-/work/data/acdc}
[ -f "$DATA/dataset.json" ] || .venv/bin/lightmedseg convert acdc-h5 ../shared/data/acdc-wsl4mis "$DATA"
ARGS=(--preset acdc --data "$DATA" --split acdc_nnformer --max-minutes "$MINUTES" --no-progress --resume
  --set train.batch_size=2 --set train.iterations_per_epoch=50 --set train.scheduler.warmup_epochs=1
  --set train.scheduler.eta_min=1.0e-6 --set data.cache=memory --set train.num_workers=0
  --set data.augment.rotate=false --set train.amp=none
  --set train.optimizer.lr=1.0e-3 --set train.loss.class_weighting=none --set data.augment.noise=false)
mkdir -p runs

# evaluate_runs RUN...: `lightmedseg predict` defaults + `lightmedseg evaluate` on the 10 validation patients.
evaluate_runs() {
  for run in "$@"; do
    .venv/bin/python benchmarks/evaluate_run.py -m "runs/$run" --data "$DATA" --split acdc_nnformer \
      --subset validation --out "runs/$run/eval" --method "$run"
  done
}
