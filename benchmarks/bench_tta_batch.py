"""Seconds per ACDC volume when a window's test-time-augmentation views go to the engine 1, 2, 4 or 8 at a time,
stacked along the batch axis (issue 25, item 3: "batch the views into one engine call where that is faster").

The whole default ``lightmedseg predict`` path of one model (the backend ``load_backend`` picks, the card's rot90
TTA and post-processing) on the first ``--cases`` volumes of ``IMAGES``, every setting on one volume before the
next (interleaved, so load from elsewhere hits them alike), medians; and the share of voxels whose label agrees
with the one-view-per-call prediction (the engine may block a batch differently, so bf16 results can differ).

    .venv/bin/python benchmarks/bench_tta_batch.py IMAGES [--model acdc] [--cases 4]

The machine should be idle: the numbers are ratios between settings measured in the same process.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_per_volume import interleaved_medians  # noqa: E402
from lightmedseg.hardware import cpu_name  # noqa: E402

SETTINGS = (1, 2, 4, 8)  # views per engine call


class ViewsPerCall:
    """A Segmenter call with its predictor's ``views_per_call`` set first (one Segmenter serves every setting,
    so all share one loaded and compiled model)."""

    def __init__(self, segmenter, views_per_call: int) -> None:
        self.segmenter, self.views_per_call = segmenter, views_per_call

    def __call__(self, case: str):
        self.segmenter.predictor.views_per_call = self.views_per_call
        return self.segmenter(case)


def main() -> int:
    from lightmedseg.inference.segment import Segmenter

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", type=Path, help="folder of ACDC volumes ({case}_0000.nii.gz)")
    ap.add_argument("--model", default="acdc", help="model name or folder (default: the shipped acdc)")
    ap.add_argument("--cases", type=int, default=4)
    args = ap.parse_args()
    cases = [str(c) for c in sorted(args.images.glob("*_0000.nii.gz"))[:args.cases]]
    if not cases:
        ap.error(f"{args.images}: no *_0000.nii.gz volumes")
    seg = Segmenter(args.model, "cpu")
    print(f"{dt.date.today()}, {cpu_name()}, {torch.get_num_threads()} threads; {seg.description}")
    runners = {k: ViewsPerCall(seg, k) for k in SETTINGS}
    medians = interleaved_medians(runners, cases)
    agreement = {}
    for case in cases[:2]:
        ref = np.asanyarray(runners[1](case).dataobj)
        for k in SETTINGS[1:]:
            agreement.setdefault(k, []).append(float((np.asanyarray(runners[k](case).dataobj) == ref).mean()))
    print(f"\n`{args.model}`, whole default predict path, median s per volume over {len(cases)} volumes:\n")
    print("| views per engine call | s / volume | vs 1 view per call | label agreement with 1 per call |")
    print("|---:|---:|---:|---:|")
    for k, t in medians.items():
        agree = f"{100 * min(agreement[k]):.3f}%" if k in agreement else "-"
        print(f"| {k} | {t:.2f} | {t / medians[1]:.2f}x | {agree} |")
    print("\nRerun: .venv/bin/python benchmarks/bench_tta_batch.py IMAGES --cases", len(cases))
    return 0


if __name__ == "__main__":
    sys.exit(main())
