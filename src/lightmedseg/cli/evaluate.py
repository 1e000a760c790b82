"""``lightmedseg evaluate``: Dice / HD95 per class and region of a prediction folder against references."""

from __future__ import annotations

import argparse
import math

from lightmedseg.cli import path_arg


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lightmedseg.evaluation.metrics import MODES

    parser.add_argument("--pred", required=True, type=path_arg, help="folder of predicted label maps {case}.nii.gz, .nii, .nrrd, .seg.nrrd, .mha or .mhd (what predict writes); "
                        "its labels.json (written by predict) names the classes when no dataset.json is found")
    parser.add_argument("--ref", required=True, type=path_arg, help="folder of reference label maps {case}.ext (the same formats)")
    parser.add_argument(
        "--labels", type=path_arg, default=None,
        help="dataset.json (or its folder) declaring labels and regions, or predict's labels.json; default: "
        "REF/dataset.json or REF/../dataset.json if present, else PRED/labels.json or REF/labels.json, else one "
        "region per label value found",
    )
    parser.add_argument(
        "--mode", choices=MODES, default="strict",
        help="strict: HD95 in mm, both-empty -> NaN, one-empty -> Dice 0 / HD95 = image diagonal; "
        "nnformer: reproduces the nnFormer/UNETR++ scripts (both-empty Dice 1, HD95 0 if either empty, voxels)",
    )
    parser.add_argument("-o", "--output", "--out", dest="out", type=path_arg, default=None, help="output folder (default: the --pred folder)")
    parser.add_argument("--method", default="LightMedSeg", help="row label in the Markdown table")
    parser.add_argument("--allow-missing", action="store_true",
                        help="evaluate the matched cases even if some references have no prediction (listed)")
    parser.add_argument("--no-geometry-check", action="store_true",
                        help="do not require prediction and reference affines to agree (shapes must still agree)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from lightmedseg.evaluation.evaluate import check_folders, evaluate_folders
    from lightmedseg.evaluation.report import write_reports
    from lightmedseg.io_utils import check_writable

    from lightmedseg.write_rule import check_output_folder

    out = args.out or args.pred
    check_folders(args.pred, args.ref, out)
    check_writable(out, "report folder")
    rows, summary = evaluate_folders(
        args.pred, args.ref, labels=args.labels, mode=args.mode, allow_missing=args.allow_missing,
        check_affine=not args.no_geometry_check, progress=not args.quiet,
    )
    check_output_folder(out, "evaluation report folder")  # the write rule: never into a dataset
    paths = write_reports(rows, summary, out, method=args.method)
    m = summary["metrics"]
    unit = summary["hd95_unit"]
    print(f"{summary['num_cases']} cases, mode {args.mode}")
    for name, v in m["regions"].items():
        d, h = v["dice"], v["hd95"]
        nan = f" ({d['n_nan']} both-empty excluded)" if d["n_nan"] else ""
        print(f"  {name:>10}: Dice {d['mean'] * 100:6.2f} %  HD95 {h['mean']:7.2f} {unit}{nan}")
    avg = m["average_dice"]
    print(f"  {'average':>10}: Dice {avg * 100 if not math.isnan(avg) else math.nan:6.2f} %  HD95 {m['average_hd95']:7.2f} {unit}")
    for p in paths.values():
        print(f"wrote {p}")
    if summary["missing_predictions"]:
        print(f"WARNING: {len(summary['missing_predictions'])} case(s) had no prediction and were NOT evaluated")
    return 0
