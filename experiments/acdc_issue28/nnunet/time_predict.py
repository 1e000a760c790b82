"""Seconds per predicted volume for nnU-Net v2 on this CPU, with its default test-time mirroring and without
(issue 28, item 3). Uses nnU-Net's own predictor (``nnUNetPredictor``, what ``nnUNetv2_predict`` runs):
preprocessing, sliding window (step 0.5, Gaussian weighting) and resampling to the input geometry, timed per
volume after the image is read; prints one JSON object.

    nnUNet_results=... OMP_NUM_THREADS=1 /work/venv-nnunet/bin/python experiments/acdc_issue28/nnunet/time_predict.py \
        --model /work/nnunet/results/Dataset027_ACDC/nnUNetTrainer__nnUNetPlans__3d_fullres \
        --checkpoint checkpoint_untrained.pth --images IMG1_0000.nii.gz IMG2_0000.nii.gz --threads 1

The weights do not change the cost (same network, same windows), so an untrained checkpoint times inference
before nnU-Net has been trained. Runs in nnU-Net's own virtual environment.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import time
from pathlib import Path

import torch

MODES = {"mirroring (default TTA)": True, "disable_tta": False}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="the trainer/plans/configuration folder")
    parser.add_argument("--checkpoint", default="checkpoint_final.pth")
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--images", type=Path, nargs="+", required=True, help="one channel-0 NIfTI per volume")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    missing = [str(p) for p in args.images if not p.is_file()]
    if missing:
        parser.error(f"missing image files: {missing}")

    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    torch.set_num_threads(args.threads)
    volumes = [(p.name, *SimpleITKIO().read_images([str(p)])) for p in args.images]
    result: dict = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "threads": torch.get_num_threads(), "torch": torch.__version__, "modes": {}}
    for mode, mirroring in MODES.items():
        predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirroring,
                                    perform_everything_on_device=False, device=torch.device("cpu"),
                                    verbose=False, verbose_preprocessing=False, allow_tqdm=False)
        predictor.initialize_from_trained_model_folder(str(args.model), use_folds=(args.fold,),
                                                       checkpoint_name=args.checkpoint)
        torch.set_num_threads(args.threads)
        seconds = {}
        for name, image, props in volumes:
            t0 = time.perf_counter()
            seg = predictor.predict_single_npy_array(image, props, None, None, False)
            seconds[name] = round(time.perf_counter() - t0, 2)
            shape = list(image.shape[1:])
        result["modes"][mode] = {"s_per_volume": seconds, "median_s": round(statistics.median(seconds.values()), 2),
                                 "mirror_axes": list(predictor.allowed_mirroring_axes or []) if mirroring else []}
        result["last_volume_shape_zyx"] = shape
        result["last_prediction_labels"] = sorted(int(v) for v in set(seg.ravel().tolist()))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
