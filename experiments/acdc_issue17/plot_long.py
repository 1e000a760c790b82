"""Validation Dice of the shipped ACDC model's training: the GPU long run, then the CPU annealing stage.

    .venv/bin/python experiments/acdc_issue17/plot_long.py     # -> docs/img/acdc_long.png
"""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).parent


def checks(path: Path) -> list[tuple[int, float]]:
    with open(path) as fh:
        return [(int(r["step"]), 100 * float(r["val_dice"])) for r in csv.DictReader(fh) if r["val_dice"] not in ("", "nan")]


def main() -> None:
    long = checks(HERE / "long" / "metrics.csv")
    long.append((1421, 70.38))  # the GPU stage's last check (a partial epoch; its row is dropped on resume)
    stage2 = checks(HERE / "stage2" / "metrics.csv")
    samples_long = [(s * 8, d) for s, d in long]  # batch 8
    start = 1421 * 8
    samples_2 = [(start + s * 2, d) for s, d in stage2]  # batch 2, from the long run's step-1421 weights
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(*zip(*samples_long), marker="o", label="long run (GPU, batch 8, paper schedule, stopped at 1421/5250 steps)")
    ax.plot(*zip(*samples_2), marker="s", label="stage 2 (CPU, batch 2, cosine 5e-4 -> 1e-6 over 1500 steps)")
    ax.axhline(68.59, color="grey", linestyle=":", label="previous shipped model (acdc_v1), 68.6")
    ax.set_xlabel("training samples seen (crops of 16 x 160 x 160)")
    ax.set_ylabel("validation mean Dice (%), trainer's check")
    ax.set_title("ACDC: the shipped model's training (10 validation patients)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    out = HERE.parents[1] / "docs" / "img" / "acdc_long.png"
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
