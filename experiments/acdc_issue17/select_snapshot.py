#!/usr/bin/env python
"""Score candidate ACDC models with the shipped card's predict defaults, to choose which one ships.

The trainer validates without TTA and post-processing (8x cheaper); the shipped model is used with
both (rot90 TTA, largest RV/Myo component, LV touching Myo). This scores each candidate the way it would
be used: the candidate is linked into its own folder beside a copy of the card (``card.json``), then
``benchmarks/evaluate_run.py`` predicts with the card's defaults and evaluates (strict mode).
Validation volumes only (the issue: select on validation, never on test).

  python experiments/acdc_issue17/select_snapshot.py --out /work/select \
      runs/acdc_long2/snapshots/model_step*.safetensors runs/acdc_long2/model_best.safetensors

Prints one row per candidate and writes OUT/selection.csv; a candidate already scored in OUT is not
predicted again. About 5 minutes per candidate on the 2-core AMD EPYC with nothing else running.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CARD = ROOT / "src/lightmedseg/pretrained/acdc/card.json"
SPLIT = ROOT / "src/lightmedseg/splits/acdc_nnformer.json"
CLASSES = ("RV", "Myo", "LV")


def score(model: Path, out: Path, data: Path, card: Path) -> dict[str, float]:
    """Mean Dice (percent) per class and overall, and mean HD95 (mm), of ``model`` with ``card``'s defaults."""
    name = model.parent.parent.name + "_" + model.stem if model.parent.name == "snapshots" else model.stem
    work = out / name
    summary = work / "eval" / "eval_strict" / "summary_strict.json"
    if not summary.is_file():
        folder = work / "model"
        folder.mkdir(parents=True, exist_ok=True)
        fields = json.loads(card.read_text())
        fields.pop("ensemble", None)  # the candidate alone, with the card's TTA and post-processing
        (folder / "card.json").write_text(json.dumps(fields, indent=2))
        link = folder / model.name
        link.unlink(missing_ok=True)
        link.symlink_to(model.resolve())
        subprocess.run([sys.executable, str(ROOT / "benchmarks/evaluate_run.py"), "-m", str(link), "--data", str(data),
                        "--split", str(SPLIT), "--subset", "validation", "--out", str(work / "eval")], check=True)
    metrics = json.loads(summary.read_text())["metrics"]["classes"]
    row = {c: 100 * metrics[c]["dice"]["mean"] for c in CLASSES}
    row["mean"] = sum(row[c] for c in CLASSES) / len(CLASSES)
    row["hd95_mm"] = sum(metrics[c]["hd95"]["mean"] for c in CLASSES) / len(CLASSES)
    return {"model": str(model), **{k: round(v, 2) for k, v in row.items()}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", type=Path, help="model files (snapshots, model_best.safetensors, ...)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--data", type=Path, default=Path("/work/data/acdc"), help="converted ACDC (lightmedseg convert)")
    p.add_argument("--card", type=Path, default=CARD, help="the card whose predict defaults are used")
    args = p.parse_args()
    rows = [score(m, args.out, args.data, args.card) for m in args.models]
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "selection.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for r in rows:
        print(f"{r['mean']:6.2f}  RV {r['RV']:6.2f}  Myo {r['Myo']:6.2f}  LV {r['LV']:6.2f}  HD95 {r['hd95_mm']:5.2f} mm  {r['model']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
