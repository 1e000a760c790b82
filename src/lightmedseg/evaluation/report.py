"""Write evaluation results: per-case CSV, summary JSON and a Markdown table shaped like the paper's.

Tables 1 (BraTS: Avg, Whole Tumor, Enhancing Tumor, Tumor Core) and 2 (ACDC: Avg, RV, Myo, LV) report
Dice in percent; we add a second row group with HD95. All files are written atomically.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

from lightmedseg.io_utils import write_json_atomic, write_text_atomic

CSV_COLUMNS = ("case", "kind", "name", "values", "dice", "hd95", "pred_voxels", "ref_voxels")
# Paper column titles and order (Table 1: WT, ET, TC; Table 2: RV, Myo, LV).
DISPLAY_NAMES = {"WT": "Whole Tumor", "ET": "Enhancing Tumor", "TC": "Tumor Core"}
PAPER_ORDER = ("WT", "ET", "TC", "RV", "Myo", "LV")


def _nan_to_none(obj):
    """JSON has no NaN: write null instead (and say so in the summary)."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return obj


def per_case_csv(rows: list[dict]) -> str:
    """CSV text of the per-case rows (NaN written as ``nan``)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k]) for k in CSV_COLUMNS})
    return buf.getvalue()


def _ordered_regions(names: list[str]) -> list[str]:
    known = [n for n in PAPER_ORDER if n in names]
    return known + [n for n in names if n not in known]


def _fmt(x: float, scale: float, digits: int) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x * scale:.{digits}f}"


def markdown_table(summary: dict, method: str = "LightMedSeg") -> str:
    """Markdown: Dice (%) table in the paper's layout, HD95 table, and notes on mode and unmatched cases."""
    m = summary["metrics"]
    regions = _ordered_regions(list(m["regions"]))
    head = ["Method", "Cases", "Avg %"] + [DISPLAY_NAMES.get(r, r) for r in regions]
    unit = summary["hd95_unit"]
    lines = [
        f"Dice (%), mode `{summary['mode']}`",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] * len(head)) + "|",
        "| " + " | ".join([method, str(summary["num_cases"]), _fmt(m["average_dice"], 100, 2)]
                         + [_fmt(m["regions"][r]["dice"]["mean"], 100, 2) for r in regions]) + " |",
        "",
        f"HD95 ({unit}), mode `{summary['mode']}`",
        "",
        "| " + " | ".join(["Method", "Cases", "Avg"] + [DISPLAY_NAMES.get(r, r) for r in regions]) + " |",
        "|" + "|".join(["---"] * len(head)) + "|",
        "| " + " | ".join([method, str(summary["num_cases"]), _fmt(m["average_hd95"], 1, 2)]
                         + [_fmt(m["regions"][r]["hd95"]["mean"], 1, 2) for r in regions]) + " |",
        "",
        "Regions: " + ", ".join(r + " = {" + ", ".join(map(str, summary["regions"][r])) + "}" for r in regions) + ".",
        f"Empty masks: {summary['empty_mask_rules']}.",
    ]
    nan_counts = {r: m["regions"][r]["dice"]["n_nan"] for r in regions if m["regions"][r]["dice"]["n_nan"]}
    if nan_counts:
        lines.append(f"Cases excluded as both-empty (NaN): {nan_counts}.")
    if summary["missing_predictions"]:
        lines.append(f"**Missing predictions (not evaluated): {summary['missing_predictions']}**")
    if summary["extra_predictions"]:
        lines.append(f"**Predictions without reference (ignored): {summary['extra_predictions']}**")
    return "\n".join(lines) + "\n"


def output_paths(out_dir: str | os.PathLike, mode: str) -> dict[str, Path]:
    """File names of the three outputs for ``mode`` (so both modes can share a folder)."""
    out = Path(out_dir)
    return {
        "csv": out / f"metrics_{mode}_per_case.csv",
        "json": out / f"summary_{mode}.json",
        "markdown": out / f"table_{mode}.md",
    }


def write_reports(rows: list[dict], summary: dict, out_dir: str | os.PathLike, method: str = "LightMedSeg") -> dict[str, Path]:
    """Write the per-case CSV, the summary JSON (NaN -> null) and the Markdown table atomically."""
    paths = output_paths(out_dir, summary["mode"])
    write_text_atomic(paths["csv"], per_case_csv(rows))
    write_json_atomic(paths["json"], _nan_to_none({**summary, "note": "null = NaN (no finite value)"}))
    write_text_atomic(paths["markdown"], markdown_table(summary, method))
    return paths
