#!/usr/bin/env bash
# Issue 28, item 3: nnU-Net v2's costs on this CPU, with its own planning, preprocessing, trainer and inference,
# on our ACDC conversion and our split (fold 0 = our 70 training / 10 validation patients).
#
#   bash experiments/acdc_issue28/nnunet/run_costs.sh [STEP ...]      # STEP: install raw plan train predict cli (default: all but install)
#
# Everything nnU-Net writes lives under $NNUNET_ROOT (default /work/nnunet), outside the repository; logs and the
# JSON results go to $NNUNET_ROOT/logs. One thread for torch and no data-augmentation workers (the machine is
# shared with two training jobs): OMP_NUM_THREADS=1, nnUNet_n_proc_DA=0 (1 while planning: its planner calls
# torch.set_num_threads(nnUNet_n_proc_DA), which refuses 0), -np 1 / -npfp 1 / -npp 1 / -nps 1.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${NNUNET_VENV:-/work/venv-nnunet}"
PY="$VENV/bin/python"
DATA="${DATA:-/work/data/acdc}"
export NNUNET_ROOT="${NNUNET_ROOT:-/work/nnunet}"
export nnUNet_raw="$NNUNET_ROOT/raw" nnUNet_preprocessed="$NNUNET_ROOT/preprocessed" nnUNet_results="$NNUNET_ROOT/results"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nnUNet_n_proc_DA=0 nnUNet_def_n_proc=1 NNUNET_TORCH_THREADS=1
DATASET=Dataset027_ACDC
MODEL="$nnUNet_results/$DATASET/nnUNetTrainer__nnUNetPlans__3d_fullres"
CASES="${CASES:-patient089_frame01 patient090_frame04}"   # two of our validation volumes
LOGS="$NNUNET_ROOT/logs"
mkdir -p "$LOGS"
STEPS=("$@"); [ ${#STEPS[@]} -eq 0 ] && STEPS=(raw plan train predict cli)

for step in "${STEPS[@]}"; do
  case "$step" in
    install)  # its own venv; the CPU torch first, then nnunetv2 held to that torch (no CUDA wheels)
      python3.11 -m venv "$VENV"
      "$VENV/bin/pip" install torch==2.13.0
      "$VENV/bin/pip" install nnunetv2 torch==2.13.0
      "$VENV/bin/pip" list 2>/dev/null | grep -iE '^(torch|nnunetv2|nvidia)' ;;
    raw)
      "$PY" "$HERE/make_raw.py" --data "$DATA" --root "$NNUNET_ROOT" ;;
    plan)
      ( time nnUNet_n_proc_DA=1 "$VENV/bin/nnUNetv2_plan_and_preprocess" -d 27 -c 3d_fullres -np 1 -npfp 1 \
          --verify_dataset_integrity ) > "$LOGS/plan_and_preprocess.log" 2>&1
      tail -4 "$LOGS/plan_and_preprocess.log" ;;
    train)    # nnU-Net's trainer, timed per iteration (one iteration is minutes here); saves the barely
              # trained network as checkpoint_untrained.pth so that inference can be timed
      "$PY" "$HERE/time_train_iterations.py" --threads 1 --warmup 1 --iterations "${ITERATIONS:-3}" \
          --val-iterations "${VAL_ITERATIONS:-1}" --save-checkpoint checkpoint_untrained.pth \
          > "$LOGS/time_train.json" 2> "$LOGS/time_train.log"
      cat "$LOGS/time_train.json" ;;
    predict)  # seconds per volume, with nnU-Net's default mirroring TTA and with it disabled
      imgs=(); for c in $CASES; do imgs+=("$nnUNet_raw/$DATASET/imagesTr/${c}_0000.nii.gz"); done
      "$PY" "$HERE/time_predict.py" --model "$MODEL" --checkpoint checkpoint_untrained.pth --threads 1 \
          --images "${imgs[@]}" > "$LOGS/time_predict.json" 2> "$LOGS/time_predict.log"
      cat "$LOGS/time_predict.json" ;;
    cli)      # the same through nnUNetv2_predict itself (wall time of the whole command, start-up included)
      in="$NNUNET_ROOT/predict_in"; rm -rf "$in" "$NNUNET_ROOT"/predict_out_*; mkdir -p "$in"
      for c in $CASES; do ln -s "$nnUNet_raw/$DATASET/imagesTr/${c}_0000.nii.gz" "$in/"; done
      for tta in "" "--disable_tta"; do
        name=tta; [ -n "$tta" ] && name=no_tta
        /usr/bin/time -f "nnUNetv2_predict $tta: %e s wall for $(echo $CASES | wc -w) volumes" \
          "$PY" "$HERE/one_thread.py" predict -i "$in" -o "$NNUNET_ROOT/predict_out_$name" -d 27 -c 3d_fullres \
          -f 0 -chk checkpoint_untrained.pth -device cpu -npp 1 -nps 1 $tta > "$LOGS/cli_predict_$name.log" 2>&1
        tail -1 "$LOGS/cli_predict_$name.log"
      done ;;
    *) echo "unknown step: $step (install raw plan train predict cli)" >&2; exit 2 ;;
  esac
done
