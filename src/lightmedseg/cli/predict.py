"""``lightmedseg predict``: segment volumes (NIfTI, NRRD, MetaImage, DICOM) with a trained model.

The same path as :func:`lightmedseg.segment` (both go through :class:`lightmedseg.inference.segment.Segmenter`).
"""

from __future__ import annotations

import argparse

from lightmedseg.cli import path_arg

from lightmedseg.inference.geometry import RESAMPLE_TOLERANCE, SPACING_WARN_FACTOR
from lightmedseg.inference.options import BACKENDS, DEVICES_HELP, OUTPUT_FORMATS, PRECISIONS, TTA_MODES, PredictOptions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--input", required=True, type=path_arg,
                        help="a case file (.nii.gz .nii .nrrd .nhdr .mha .mhd), a folder of {case}_{XXXX}.ext files, "
                             "a DICOM series folder, or a dataset folder (uses imagesTs)")
    parser.add_argument("-o", "--output", required=True, type=path_arg,
                        help="output folder ({case}.nii.gz per case, plus labels.json and a Slicer colour table "
                             "labels.ctbl), or a file name for a single case (its ending picks the format)")
    parser.add_argument("-m", "--model", required=True, action="append",
                        help="run folder, .safetensors/.pt model file, shipped model name, an exported .onnx file or OpenVINO IR .xml; "
                             "repeat (-m fold0 -m fold1 ...) to average the models' probabilities (ensemble); a folder "
                             "or shipped name whose card.json names an ensemble stands for all its members")
    parser.add_argument("--no-ensemble", dest="ensemble", action="store_false",
                        help="take only the first member of a model card's ensemble (1/N of the time)")
    tta = parser.add_mutually_exclusive_group()
    tta.add_argument("--tta", dest="tta", nargs="?", const=True, default=None, choices=TTA_MODES, metavar="MODE",
                     help="test-time augmentation, 8 passes per window: mirror (the 7 mirror images, as nnU-Net) or "
                          "rot90 (the in-plane rotations by 90 degrees, with and without a mirror image); without "
                          "MODE the model card's mode, else mirror; default: the model card's choice (shipped "
                          "acdc: rot90), else off")
    tta.add_argument("--no-tta", dest="tta", action="store_false", help="no test-time augmentation")
    parser.add_argument("--device", default="auto", help=f"{DEVICES_HELP}; default auto")
    parser.add_argument("--overlap", type=float, default=None,
                        help="sliding-window overlap in [0, 1) (default: the model's, 0.5 for shipped models)")
    parser.add_argument("--sw-batch-size", type=int, default=None,
                        help="windows evaluated at once (default: the model's, 1); more is faster on a GPU")
    resample = parser.add_mutually_exclusive_group()
    resample.add_argument("--resample", dest="resample", action="store_true", default=None,
                          help="always predict on the model's training spacing/orientation and resample back to the "
                               "input grid; default: only when the input's spacing differs from the training spacing "
                               f"by more than {RESAMPLE_TOLERANCE:.0%} along an axis (each case's decision is logged)")
    resample.add_argument("--no-resample", dest="resample", action="store_false",
                          help="predict on the input's own grid whatever its spacing (a warning when it differs by "
                               f"more than {SPACING_WARN_FACTOR}x)")
    largest = parser.add_mutually_exclusive_group()
    largest.add_argument("--keep-largest", nargs="*", metavar="LABEL", default=None,
                         help="keep only the largest connected component of the named foreground labels (names or "
                              "values), of every foreground label when none is named; default: the "
                              "model card's choice (shipped acdc: RV and Myo)")
    largest.add_argument("--no-keep-largest", dest="keep_largest", action="store_false",
                         help="no connected-component post-processing, whatever the model card says")
    contact = parser.add_mutually_exclusive_group()
    contact.add_argument("--require-contact", nargs="+", metavar="LABEL=ANCHOR[,ANCHOR]", default=None,
                         help="drop the connected components of LABEL that touch none of the ANCHOR labels (after "
                              "--keep-largest), e.g. LV=Myo: an LV cavity lies inside the myocardium; default: the "
                              "model card's choice (shipped acdc: LV=Myo)")
    contact.add_argument("--no-require-contact", dest="require_contact", action="store_false",
                         help="no contact rule, whatever the model card says")
    parser.add_argument("--output-format", choices=OUTPUT_FORMATS, default="nifti",
                        help="format of the files in an OUTPUT folder: nifti (.nii.gz, default) or input "
                             "(the input's own: .nrrd, .mha; DICOM input gives NIfTI)")
    parser.add_argument("--probabilities", action="store_true",
                        help="also write softmax probabilities to OUTPUT/probabilities/{case}.nii.gz (4D, float32)")
    parser.add_argument("--statistics", action="store_true",
                        help="write statistics.json and statistics.csv in OUTPUT: per case and label the voxel count and "
                             "volume (ml); for a cardiac model (labels RV, Myo, LV) per patient LV/RV EDV, ESV, stroke "
                             "volume, ejection fraction and myocardial mass (ED and ES frames paired by name: "
                             "{patient}_ED/_ES, ACDC Info.cfg, or {patient}_frameNN where ED has the larger LV)")
    parser.add_argument("--cardiac-phases", nargs="+", default=None, metavar="ED=CASE ES=CASE | FILE.csv",
                        help="pair end-diastole and end-systole explicitly (implies --statistics): ED=CASE ES=CASE for "
                             "one patient, or a CSV with the columns patient,ED,ES (case IDs)")
    parser.add_argument("--preview", action="store_true",
                        help="also write {case}.preview.png beside each label map: slices cropped to the segmented "
                             "region, labelled with the case and label names (needs matplotlib: pip install "
                             "'lightmedseg[train]')")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing outputs; without it, existing files in an OUTPUT folder are skipped "
                             "(an interrupted run resumes) and an existing OUTPUT file is an error")
    parser.add_argument("--reference", action="store_true",
                        help="use the plain PyTorch forward (not the fast path, when one is installed)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="OpenVINO / fast path arithmetic: auto = bf16 on CPUs with native bf16 (AVX512-BF16/AMX), "
                             "fp32 elsewhere; fp32 = exact (logits within ~1e-4 of --reference)")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="auto: OpenVINO on the CPU (converted from PyTorch once and cached), the PyTorch "
                             "fast path on a GPU (mps: the plain PyTorch forward); onnxruntime for .onnx files, "
                             "openvino for .xml")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--num-parts", type=int, default=1, metavar="N",
                        help="split the cases (sorted by ID) into N parts, for N array tasks or GPUs (default 1)")
    parser.add_argument("--part-id", type=int, default=0, metavar="K",
                        help="segment part K of --num-parts (0-based, e.g. $SLURM_ARRAY_TASK_ID)")
    defaults = PredictOptions()  # the prediction options' defaults live there, not in the arguments above
    parser.set_defaults(**{name: getattr(defaults, name) for name in PredictOptions.names()})


def _keep_largest(value: list[str] | bool | None) -> list[str] | bool | None:
    """``--keep-largest`` without labels means every foreground label."""
    return True if value == [] else value


def _require_contact(value: list[str] | bool | None) -> dict[str, list[str]] | bool | None:
    """``--require-contact LV=Myo RV=Myo,LV`` as ``{"LV": ["Myo"], "RV": ["Myo", "LV"]}``."""
    if not isinstance(value, list):
        return value
    rules: dict[str, list[str]] = {}
    for rule in value:
        label, sep, anchors = rule.partition("=")
        names = [a.strip() for a in anchors.split(",") if a.strip()]
        if not sep or not label.strip() or not names:
            raise ValueError(f"--require-contact {rule!r}: expected LABEL=ANCHOR[,ANCHOR...], e.g. LV=Myo")
        rules.setdefault(label.strip(), []).extend(names)
    return rules


def prediction_options(args: argparse.Namespace) -> PredictOptions:
    """The one :class:`PredictOptions` of the parsed arguments (``--keep-largest`` and ``--require-contact`` parsed)."""
    values = {name: getattr(args, name) for name in PredictOptions.names()}
    values.update(keep_largest=_keep_largest(args.keep_largest), require_contact=_require_contact(args.require_contact))
    return PredictOptions(**values)


def run(args: argparse.Namespace) -> int:
    from lightmedseg.inference.pipeline import predict

    model = args.model[0] if len(args.model) == 1 else args.model  # several -m: an ensemble
    report = predict(
        args.input, args.output, model, prediction_options(args), probabilities=args.probabilities,
        overwrite=args.overwrite, progress=not args.quiet, output_format=args.output_format,
        num_parts=args.num_parts, part_id=args.part_id, statistics=args.statistics,
        cardiac_phases=args.cardiac_phases, preview=args.preview,
    )
    print(f"wrote {len(report.written)} label map(s) to {args.output}"
          + (f", skipped {len(report.skipped)} existing" if report.skipped else "")
          + (f", {len(report.probabilities)} probability map(s)" if report.probabilities else "")
          + (f", {len(report.previews)} preview(s)" if report.previews else "")
          + (f", statistics in {report.statistics[0].name} / {report.statistics[1].name}" if report.statistics else ""))
    return 0
