"""The embedded end-to-end demo: synthetic data -> training -> prediction -> evaluation -> report.

Everything runs through the same public functions as the CLI (``synth``, ``train``, ``predict``,
``evaluate``, ``plot``, ``profile``), so the demo is also a smoke test of the whole pipeline. The report
says whether the model learned: it compares the test Dice with the Dice a chance segmenter would get
(a random mask with the true prevalence of each region scores its prevalence in expectation).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from lightmedseg.config import load_config
from lightmedseg.io_utils import write_json_atomic, write_text_atomic


@dataclass
class DemoSettings:
    """Knobs of the demo; the defaults finish in well under 15 minutes on a 2-core CPU."""

    out_dir: Path
    train_cases: int = 10
    test_cases: int = 3
    shape: Sequence[int] = (64, 64, 64)
    minutes: float = 6.0
    max_steps: int | None = None
    seed: int = 0
    overrides: Sequence[str] = field(default_factory=tuple)
    progress: bool = True


def chance_dice(ref_dir: Path, regions: dict[str, list[int]]) -> dict[str, float]:
    """Expected Dice of a random segmenter that marks each voxel with the region's true prevalence p (= p)."""
    from lightmedseg.data.io import read_label

    totals = {name: 0 for name in regions}
    voxels = 0
    for path in sorted(ref_dir.glob("*.nii.gz")):
        label = read_label(path)[0]
        voxels += label.size
        for name, values in regions.items():
            totals[name] += int(np.isin(label, values).sum())
    return {name: totals[name] / voxels for name in regions}


def learned_verdict(summary: dict, chance: dict[str, float]) -> bool:
    """True when every region's mean test Dice is >= 0.5 and >= 3x its chance level."""
    regions = summary["metrics"]["regions"]
    return all(
        (d := stats["dice"]["mean"]) >= 0.5 and d >= 3 * chance.get(name, 1.0) for name, stats in regions.items()
    )


def _report_markdown(summary: dict, chance: dict[str, float], train: dict, elapsed: dict[str, float],
                     settings: DemoSettings, figures: list[str]) -> str:
    regions = summary["metrics"]["regions"]
    rows = ["| region | test Dice (%) | chance Dice (%) | HD95 (mm) |", "| --- | ---: | ---: | ---: |"]
    for name, stats in regions.items():
        d, h = stats["dice"]["mean"], stats["hd95"]["mean"]
        rows.append(f"| {name} | {100 * d:.1f} | {100 * chance.get(name, math.nan):.1f} | "
                    f"{'n/a' if h is None or math.isnan(h) else f'{h:.1f}'} |")
    learned = learned_verdict(summary, chance)
    verdict = ("The model learned: every region's test Dice is at least 50% and at least three times its chance level."
               if learned else "Warning: at least one region is not clearly above chance; train longer (--minutes).")
    figs = "\n".join(f"![{Path(f).stem}]({Path(f).relative_to(settings.out_dir / 'report')})" for f in figures)
    timing = ", ".join(f"{k} {v:.0f} s" for k, v in elapsed.items())
    return f"""# LightMedSeg demo report

Synthetic 4-modality brain-tumour phantoms (`lightmedseg synth`), {settings.train_cases} training cases
of {'x'.join(map(str, settings.shape))} voxels, {settings.test_cases} unseen test cases; preset `demo`
(ghost variant, Eq. 22 loss, AdamW), {train.get('steps', '?')} optimiser steps in {elapsed.get('train', 0) / 60:.1f} minutes.

{chr(10).join(rows)}

Average test Dice {100 * summary['metrics']['average_dice']:.1f}% (strict mode; see docs/evaluation.md).
{verdict}

Timings: {timing}.

Files: `evaluation/` (per-case CSV, summary JSON, Markdown table), `curves.png` (training loss,
learning rate, validation Dice), `profile.json`, figures below (image | ground truth | prediction, and the
learned anchors with the texture map T).

{figs}
"""


def run_demo(settings: DemoSettings, log: Callable[[str], None] = print) -> Path:
    """Run the demo into ``settings.out_dir``; returns the report folder."""
    from lightmedseg.data.layout import load_dataset_json
    from lightmedseg.data.labels import regions as dataset_regions
    from lightmedseg.data.synth import make_synthetic_dataset
    from lightmedseg.evaluation.evaluate import evaluate_folders
    from lightmedseg.evaluation.report import write_reports
    from lightmedseg.inference.pipeline import predict
    from lightmedseg.tools.profiling import profile
    from lightmedseg.training.plots import plot_curves
    from lightmedseg.training.trainer import train
    from lightmedseg.viz.case_figures import save_case_figures

    out = Path(settings.out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out}: exists and is not empty; choose another --out or remove it")
    report_dir = out / "report"
    elapsed: dict[str, float] = {}
    t0 = time.perf_counter()

    log(f"[1/6] synthesising {settings.train_cases} training and {settings.test_cases} test phantoms")
    train_dir = make_synthetic_dataset(out / "data", settings.train_cases, settings.seed, tuple(settings.shape))
    test_dir = make_synthetic_dataset(out / "test", settings.test_cases, settings.seed + 10_000, tuple(settings.shape))
    elapsed["synth"] = time.perf_counter() - t0

    log(f"[2/6] training the 'demo' preset for up to {settings.minutes:g} minutes")
    config = load_config("demo", overrides=list(settings.overrides))
    t = time.perf_counter()
    summary_train = train(config, train_dir, out / "run", max_minutes=settings.minutes,
                          max_steps=settings.max_steps, progress=settings.progress)
    elapsed["train"] = time.perf_counter() - t

    log("[3/6] predicting the unseen test cases (sliding window)")
    t = time.perf_counter()
    pred_dir = out / "predictions"
    predict(test_dir / "imagesTr", pred_dir, out / "run", progress=settings.progress, log=log)
    elapsed["predict"] = time.perf_counter() - t

    log("[4/6] evaluating against the test labels")
    rows, summary = evaluate_folders(pred_dir, test_dir / "labelsTr", labels=test_dir / "dataset.json",
                                     mode="strict", progress=False)
    write_reports(rows, summary, report_dir / "evaluation", method="LightMedSeg (demo)")
    metrics = summary["metrics"]

    log("[5/6] figures: curves, overlays, anchors and texture map")
    figures = []
    plot_curves(out / "run", report_dir / "curves.png")
    figures.append(str(report_dir / "curves.png"))
    first = sorted((test_dir / "labelsTr").glob("*.nii.gz"))[0]
    case = first.name[: -len(".nii.gz")]
    images = sorted((test_dir / "imagesTr").glob(f"{case}_*.nii.gz"))
    figs = save_case_figures(out / "run", images, report_dir, label_file=first,
                             pred_file=pred_dir / first.name, case_id=case)
    figures += [str(p) for p in figs.values()]

    log("[6/6] profiling the model at the demo size")
    prof = profile(preset="demo", shape=(1, 4, *settings.shape), measure=("params", "macs", "latency"))
    write_json_atomic(report_dir / "profile.json", prof)

    chance = chance_dice(test_dir / "labelsTr", dataset_regions(load_dataset_json(test_dir)))
    elapsed["total"] = time.perf_counter() - t0
    write_json_atomic(report_dir / "demo_summary.json", {
        "test_dice": {k: v["dice"]["mean"] for k, v in metrics["regions"].items()},
        "chance_dice": chance, "average_dice": metrics["average_dice"], "train": summary_train,
        "learned": learned_verdict(summary, chance),
        "seconds": elapsed,
    })
    write_text_atomic(report_dir / "README.md",
                      _report_markdown(summary, chance, summary_train, elapsed, settings, figures))
    return report_dir
