"""``lightmedseg profile``: parameters, multiply-adds, peak memory and latency next to the paper's figures."""

from __future__ import annotations

import argparse

from lightmedseg.io_utils import write_json_atomic


def add_arguments(p: argparse.ArgumentParser) -> None:
    from lightmedseg.tools.profiling import MEASURES

    p.add_argument("--preset", default="brats", help="preset name or YAML path (default: brats)")
    p.add_argument("--variant", default=None, help="network variant: ghost, standard, k16, k32, no_lspm, ...")
    p.add_argument("--shape", type=int, nargs=5, default=[1, 4, 128, 128, 128], metavar=("B", "C", "D", "H", "W"),
                   help="input shape (default 1 4 128 128 128, the paper's Table 3)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--runs", type=int, default=3, help="warm runs for the latency median")
    p.add_argument("--only", nargs="+", choices=MEASURES,
                   default=list(MEASURES), help="measure only these")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. model.num_anchors=16")
    p.add_argument("--json", dest="json_out", default=None, help="also write the report as JSON here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")


def run(args: argparse.Namespace) -> int:
    import torch

    from lightmedseg.tools.profiling import format_report, profile

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but no CUDA device is available")
    if args.json_out:  # checked before the (long) measurement
        from lightmedseg.write_rule import check_output_file

        check_output_file(args.json_out, args.overwrite, "profile report")
    report = profile(
        preset=args.preset, variant=args.variant, shape=args.shape, device=args.device,
        runs=args.runs, overrides=args.overrides, measure=args.only,
    )
    print(format_report(report))
    if args.json_out:
        write_json_atomic(args.json_out, report)
        print(f"\nwrote {args.json_out}")
    return 0
