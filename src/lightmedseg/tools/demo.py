"""The embedded end-to-end demo: synthetic data -> training -> prediction -> evaluation -> report.

Everything runs through the same public functions as the CLI (``synth``, ``train``, ``predict``,
``evaluate``, ``plot``, ``profile``), so the demo is also a smoke test of the whole pipeline. The report
says whether the model learned: it compares the test Dice with the Dice a chance segmenter would get
(a random mask with the true prevalence of each region scores its prevalence in expectation).

The training schedule is sized to the time budget: the demo first times :data:`PROBE_STEPS` optimiser steps
(a throw-away run), then plans as many steps as fit the rest of the budget (:func:`plan_steps`) and shrinks
the epochs, warm-up and cosine length together (:func:`sized_schedule`), so the learning rate completes its
decay instead of being cut off high when the budget runs out.
"""

from __future__ import annotations

import copy
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from lightmedseg.config import TrainConfig, load_config, typed_config, typed_section
from lightmedseg.io_utils import write_json_atomic, write_text_atomic


PROBE_STEPS = 4  # optimiser steps timed before the schedule is sized (the first includes warm-up costs: conservative)
BUDGET_SHARE = 0.8  # of the remaining budget planned for steps; the rest pays validation and checkpoints
MIN_STEPS = 10  # never plan fewer (a schedule this short still shows learning on the phantoms)
CROP_MARGIN_MM = 10.0  # the case figures are cropped to the foreground with this margin


def plan_steps(budget_s: float, step_s: float, schedule_steps: int, share: float = BUDGET_SHARE,
               min_steps: int = MIN_STEPS) -> int:
    """Optimiser steps to plan: the full schedule when it fits ``share`` of ``budget_s`` at ``step_s`` seconds a
    step, else as many as fit (at least ``min_steps``, at most the schedule)."""
    if step_s <= 0 or not math.isfinite(step_s):
        return schedule_steps
    fit = int(share * max(budget_s, 0.0) // step_s)
    return max(1, min(schedule_steps, max(min_steps, fit)))


def sized_schedule(train_cfg: Mapping | TrainConfig, steps: int) -> Mapping:
    """``train_cfg`` with epochs, warm-up and cosine length shrunk to at most ``steps`` optimiser steps (about
    ``steps / iterations_per_epoch`` epochs, each shortened to fill the steps; the warm-up keeps its share of
    the schedule), and the cosine ending exactly at the last step, so the learning rate decays to ``eta_min``.
    Returned unchanged when the schedule already has at most ``steps`` steps."""
    out = copy.deepcopy(typed_section("train", train_cfg, TrainConfig))
    iters, epochs = out.iterations_per_epoch, out.epochs
    if epochs * iters <= steps:
        return train_cfg if isinstance(train_cfg, Mapping) else out.to_dict()
    new_epochs = max(1, min(epochs, round(steps / iters)))  # epochs of about the preset's length
    new_iters = max(1, steps // new_epochs)  # ... filled so that no more than `steps` are planned
    warm_fraction = out.scheduler.warmup_epochs / max(epochs, 1)
    warmup = round(warm_fraction * new_epochs * new_iters) / new_iters  # in (new) epochs, whole steps
    out.epochs, out.iterations_per_epoch = new_epochs, new_iters
    out.scheduler.warmup_epochs = warmup
    out.scheduler.t_max_epochs = max(new_epochs - warmup, 1.0 / new_iters)
    out.val_every = max(1, min(out.val_every, new_epochs))
    return out.to_dict()


def measure_step_seconds(config: dict, data_dir: Path, probe_dir: Path, steps: int = PROBE_STEPS) -> float:
    """Seconds per optimiser step, from a throw-away run of ``steps`` steps (its epoch time, which excludes
    start-up); the probe folder is removed afterwards."""
    from lightmedseg.training.logs import METRICS_CSV, read_csv
    from lightmedseg.training.trainer import train

    probe = copy.deepcopy(config)
    probe["train"]["validate_on_stop"] = False
    try:
        train(probe, data_dir, probe_dir, max_steps=steps, progress=False)
        rows = read_csv(probe_dir / METRICS_CSV)
        return float(rows[-1]["epoch_seconds"]) / steps
    finally:
        shutil.rmtree(probe_dir, ignore_errors=True)


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


def results_table(summary: dict, chance: dict[str, float]) -> list[str]:
    """The results as Markdown table lines: test Dice, chance Dice and HD95 per region (report and console)."""
    rows = ["| region | test Dice (%) | chance Dice (%) | HD95 (mm) |", "| --- | ---: | ---: | ---: |"]
    for name, stats in summary["metrics"]["regions"].items():
        d, h = stats["dice"]["mean"], stats["hd95"]["mean"]
        rows.append(f"| {name} | {100 * d:.1f} | {100 * chance.get(name, math.nan):.1f} | "
                    f"{'n/a' if h is None or math.isnan(h) else f'{h:.1f}'} |")
    return rows


def _report_markdown(summary: dict, chance: dict[str, float], train: dict, elapsed: dict[str, float],
                     settings: DemoSettings, figures: list[str]) -> str:
    rows = results_table(summary, chance)
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
    from lightmedseg.write_rule import check_output_folder

    out = Path(settings.out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out}: exists and is not empty; choose another --out or remove it")
    check_output_folder(out, "demo folder")  # not inside a dataset: its predictions would be refused there, late
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
    planned = typed_config(config).train
    schedule = planned.epochs * planned.iterations_per_epoch
    if settings.max_steps is not None:
        steps = min(settings.max_steps, schedule)
    else:
        step_s = measure_step_seconds(config, train_dir, out / "probe")
        steps = plan_steps(60.0 * settings.minutes - (time.perf_counter() - t), step_s, schedule)
        log(f"      {step_s:.2f} s per step measured on {PROBE_STEPS} steps: "
            + (f"the full schedule of {schedule} steps fits" if steps >= schedule else
               f"schedule sized to {steps} of {schedule} steps so the learning rate completes its decay"))
    config["train"] = sized_schedule(config["train"], steps)
    minutes_left = settings.minutes - (time.perf_counter() - t) / 60.0
    summary_train = train(config, train_dir, out / "run", max_minutes=max(minutes_left, 0.1),
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
                             pred_file=pred_dir / first.name, case_id=case, crop_margin_mm=CROP_MARGIN_MM)
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
    log("")
    log(f"Results on {settings.test_cases} unseen test cases after {summary_train.get('steps', '?')} training steps "
        f"({elapsed['total'] / 60:.1f} minutes in all):")
    for line in results_table(summary, chance):
        log(line)
    log(f"Average test Dice {100 * metrics['average_dice']:.1f}%: "
        + ("the model learned." if learned_verdict(summary, chance) else "not clearly above chance; train longer (--minutes)."))
    return report_dir
