"""Table and curves of the paired ACDC experiments of issue 17 (validation Dice every 250 steps).

    .venv/bin/python experiments/acdc_issue17/plot_paired.py      # prints the markdown table, writes the figure
"""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).parent
RUNS = {  # folder: what differs from the paper-literal network (acdc_paper)
    "p0_paper": "paper-literal (acdc_paper): stride 2 everywhere, PyTorch init",
    "p1_init": "+ initialisation (fan-in ConvT, zero SPB, identity FiLM)",
    "p2_geometry": "+ anisotropic strides",
    "p3_init_geometry": "+ initialisation + anisotropic strides",
    "p4_ds": "+ init + strides + deep supervision",
    "p5_pool": "+ init + strides + router pooling",
    "p6_norm": "+ init + strides + encoder GN",
    "p7_all": "+ init + strides + deep supervision + pooling + encoder GN",
    "p8_unet": "MONAI UNet, same strides, data and recipe",
}


def validation_rows(run: Path) -> list[dict[str, float]]:
    rows = []
    with open(run / "metrics.csv") as fh:
        for r in csv.DictReader(fh):
            if r["val_dice"] not in ("", "nan"):
                rows.append({k: float(v) for k, v in r.items() if v not in ("",)})
    return rows


def main() -> None:
    folder = HERE / "gpu_paired"
    steps = (250, 500, 750)
    print("| run | " + " | ".join(f"step {s}" for s in steps) + " | last (step) | RV / Myo / LV at last |")
    print("|---|" + "---:|" * (len(steps) + 2))
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, label in RUNS.items():
        rows = validation_rows(folder / name)
        by_step = {int(r["step"]): r for r in rows}
        cells = [f"{100 * by_step[s]['val_dice']:.1f}" if s in by_step else "-" for s in steps]
        last = rows[-1]
        parts = "/".join(f"{100 * last[f'val_dice_{c}']:.1f}" for c in ("RV", "Myo", "LV"))
        print(f"| {name}: {label} | " + " | ".join(cells) + f" | {100 * last['val_dice']:.1f} ({int(last['step'])}) | {parts} |")
        ax.plot([r["step"] for r in rows], [100 * r["val_dice"] for r in rows], marker="o",
                linestyle="--" if name == "p8_unet" else "-", label=name)
    ax.set_xlabel("optimiser step (batch 2)")
    ax.set_ylabel("validation mean Dice (%), 10 patients")
    ax.set_title("ACDC paired runs (seed 0, same data and recipe, one H200 shared by all)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    out = HERE.parents[1] / "docs" / "img" / "acdc_paired.png"
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
