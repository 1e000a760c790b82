"""PNG training curves (loss terms, learning rate, validation Dice) from a run folder's CSV logs.

Called automatically after each validation and by ``lightmedseg plot RUN_DIR``; reads only
``steps.csv`` and ``metrics.csv``, so it works on a run that is still going or was killed.
"""

from __future__ import annotations

import math
from pathlib import Path

from lightmedseg.io_utils import atomic_path
from lightmedseg.training.logs import METRICS_CSV, STEPS_CSV, read_csv

CURVES_PNG = "curves.png"


def _floats(rows: list[dict[str, str]], key: str) -> list[float]:
    out = []
    for r in rows:
        try:
            out.append(float(r.get(key, "") or "nan"))
        except ValueError:
            out.append(math.nan)
    return out


def _smooth(values: list[float], window: int) -> list[float]:
    """Trailing moving average (per-step losses are noisy with random patches)."""
    out, acc = [], []
    for v in values:
        acc.append(v)
        if len(acc) > window:
            acc.pop(0)
        out.append(sum(acc) / len(acc))
    return out


def plot_curves(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Draw loss / lr / validation Dice curves of ``run_dir`` into ``curves.png`` (or ``out``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    steps = read_csv(run_dir / STEPS_CSV)
    epochs = read_csv(run_dir / METRICS_CSV)
    if not steps and not epochs:
        raise ValueError(f"{run_dir}: no {STEPS_CSV} or {METRICS_CSV} to plot (is this a training run folder?)")
    out = Path(out) if out is not None else run_dir / CURVES_PNG
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    x = _floats(steps, "step")
    window = max(1, len(steps) // 50)
    ax = axes[0]
    for key, style in (("loss", "-"), ("dice", "--"), ("ce", "--"), ("boundary", "--")):
        ax.plot(x, _smooth(_floats(steps, key), window), style, label=key if key == "loss" else f"{key} term")
    ax.set(title=f"training loss (moving average of {window} steps)", xlabel="step", ylabel="loss")
    ax.legend()
    ax = axes[1]
    ax.plot(x, _floats(steps, "lr"))
    ax.set(title="learning rate", xlabel="step", ylabel="lr", yscale="log")
    ax = axes[2]
    val_keys = [k for k in (epochs[0].keys() if epochs else []) if k.startswith("val_dice")]
    ex = _floats(epochs, "epoch")
    for key in val_keys:
        ys = _floats(epochs, key)
        pts = [(a, b) for a, b in zip(ex, ys) if not math.isnan(b)]
        if pts:
            ax.plot(*zip(*pts), "o-", lw=2.5 if key == "val_dice" else 1.0,
                    label="mean" if key == "val_dice" else key.removeprefix("val_dice_"))
    ax.set(title="validation Dice", xlabel="epoch", ylabel="Dice", ylim=(0, 1))
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    fig.tight_layout()
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return out
