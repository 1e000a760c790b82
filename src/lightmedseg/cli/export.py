"""``lightmedseg export``: a trained model to ONNX or an OpenVINO IR (dynamic batch/spatial axes), optionally TorchScript.

The export carries the model's config and its card's prediction fields (TTA, post-processing, labels,
training geometry), so ``predict -m FILE`` predicts as ``-m MODEL`` does; the command says what it embedded.
"""

from __future__ import annotations

import argparse

from lightmedseg.cli import path_arg
from lightmedseg.inference.options import EXPORT_FORMATS, EXPORTERS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-m", "--model", required=True, help="run folder, .safetensors/.pt model file or shipped model name")
    parser.add_argument("-o", "--output", required=True, type=path_arg,
                        help="file to write: FILE.xml for an OpenVINO IR (weights in FILE.bin; plain install), or "
                             "FILE.onnx (needs the [export] extra); both carry the config and the model card")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default=None,
                        help="onnx or openvino (IR .xml/.bin with the config in its rt_info); default from the file name")
    parser.add_argument("--torchscript", action="store_true", help="also write a traced TorchScript file FILE.torchscript.pt")
    parser.add_argument(
        "--exporter", choices=EXPORTERS, default="auto",
        help="auto: torch.export-based (dynamo) exporter, falling back to the legacy tracer if it fails",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def run(args: argparse.Namespace) -> int:
    from lightmedseg.inference.cards import describe_card, ensemble_members
    from lightmedseg.inference.export import ORT_ATOL, export_model, format_for

    fmt = format_for(args.output, args.format)
    outputs = [args.output] + ([args.output.with_suffix(".bin")] if fmt == "openvino" else [])
    outputs += [args.output.with_suffix(".torchscript.pt")] if args.torchscript else []
    from lightmedseg.write_rule import check_output_file

    for out in outputs:  # the write rule: not into a dataset, not over a file it did not write without --overwrite
        check_output_file(out, args.overwrite, "export")
    members = ensemble_members(args.model)
    if members and len(members) > 1:
        print(f"note: {args.model}'s card names an ensemble of {len(members)} models; this exports the first "
              f"({members[0]}); export the others with -m {members[0].parent}/FILE")
    for r in export_model(args.model, args.output, torchscript=args.torchscript, exporter=args.exporter,
                          fmt=fmt):
        for note in r.notes:
            print(f"note: {note}")
        print(f"wrote {r.path} ({r.exporter}); max |logit difference| vs PyTorch {r.max_abs_diff:.2e} (tolerance {ORT_ATOL})")
        if r.path == args.output:  # TorchScript carries the config only
            print(f"embedded card: {describe_card(r.card)}")
    return 0
