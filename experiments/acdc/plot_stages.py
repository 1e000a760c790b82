"""Validation Dice of both ACDC models over both training stages, against cumulative wall-clock minutes.

Reads the metrics.csv files that sync_results.sh copies (stage 1: experiments/acdc/{lightmedseg,unet},
stage 2: experiments/acdc/stage2/{lightmedseg,unet}) and writes docs/img/acdc_stages.png.
    .venv/bin/python experiments/acdc/plot_stages.py
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lightmedseg.training.logs import read_csv  # noqa: E402

HERE = Path(__file__).resolve().parent
OUT = HERE.parents[1] / "docs" / "img" / "acdc_stages.png"


def val_points(run: Path, minutes0: float) -> tuple[list[float], list[float], float]:
    """(minutes, mean val Dice) of the rows with a validation, and the run's last minute."""
    minutes, dice, clock = [], [], minutes0
    for row in read_csv(run / "metrics.csv"):
        clock += float(row["epoch_seconds"]) / 60.0
        if not math.isnan(float(row["val_dice"])):
            minutes.append(clock)
            dice.append(100.0 * float(row["val_dice"]))
    return minutes, dice, clock


def main() -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, colour in (("lightmedseg", "tab:blue"), ("unet", "tab:orange")):
        label = "LightMedSeg (0.26M)" if name == "lightmedseg" else "MONAI UNet (4.8M)"
        x1, y1, end1 = val_points(HERE / name, 0.0)
        ax.plot(x1, y1, "o-", color=colour, label=f"{label}, stage 1")
        stage2 = HERE / "stage2" / name
        if (stage2 / "metrics.csv").is_file():
            x2, y2, _ = val_points(stage2, end1)
            ax.plot(x2, y2, "s--", color=colour, label=f"{label}, stage 2 (--init-weights, new schedule)")
    ax.set(xlabel="training minutes (one CPU thread each, epoch time without validation)",
           ylabel="validation Dice % (trainer, 10 patients)", title="ACDC, nnFormer validation patients",
           ylim=(0, 100))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=90)
    print(OUT)


if __name__ == "__main__":
    main()
