"""``lightmedseg predict``: segment NIfTI volumes with a trained model (sliding window, optional mirroring)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lightmedseg.inference.backends import BACKENDS, PRECISIONS

    parser.add_argument("-i", "--input", required=True, type=Path,
                        help="a case file, a folder of {case}_{XXXX}.nii.gz files, or a dataset folder (uses imagesTs)")
    parser.add_argument("-o", "--output", required=True, type=Path,
                        help="output folder ({case}.nii.gz per case), or a .nii.gz file name for a single case")
    parser.add_argument("-m", "--model", required=True,
                        help="run folder, .safetensors/.pt model file, shipped model name, an exported .onnx file or OpenVINO IR .xml")
    tta = parser.add_mutually_exclusive_group()
    tta.add_argument("--tta", dest="tta", action="store_true", default=None, help="mirroring test-time augmentation (8 passes)")
    tta.add_argument("--no-tta", dest="tta", action="store_false", help="no test-time augmentation")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--probabilities", action="store_true",
                        help="also write softmax probabilities to OUTPUT/probabilities/{case}.nii.gz (4D, float32)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs instead of skipping them")
    parser.add_argument("--reference", action="store_true",
                        help="use the plain PyTorch forward (not the fast path, when one is installed)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="OpenVINO / fast path arithmetic: auto = bf16 on CPUs with native bf16 (AVX512-BF16/AMX), "
                             "fp32 elsewhere; fp32 = exact (logits within ~1e-4 of --reference)")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="auto: OpenVINO on the CPU when installed (IR converted once and cached), the PyTorch "
                             "fast path on a GPU or without OpenVINO; onnxruntime for .onnx files, openvino for .xml")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from lightmedseg.inference.pipeline import predict

    report = predict(
        args.input, args.output, args.model, device=args.device, tta=args.tta, probabilities=args.probabilities,
        overwrite=args.overwrite, reference=args.reference, backend=args.backend,
        precision=args.precision, progress=not args.quiet,
    )
    print(f"wrote {len(report.written)} label map(s) to {args.output}"
          + (f", skipped {len(report.skipped)} existing" if report.skipped else "")
          + (f", {len(report.probabilities)} probability map(s)" if report.probabilities else ""))
    return 0
