"""From a trained run to a shippable model: nnU-Net's ``find_best_configuration``,
``determine_postprocessing`` and ``ensemble`` in this package's terms.

* :func:`score_checkpoints`: every model file of a run (``model_best``, ``model_last``, ``snapshots/*``)
  predicted on the run's validation cases (``split.json``) through :class:`~lightmedseg.inference.segment.Segmenter`,
  the code path of ``lightmedseg predict``, with the run card's TTA and post-processing when it has a card
  (else predict's defaults without one), and scored by :mod:`lightmedseg.evaluation` (strict mode).
* :func:`average_weights`: the uniform mean of several model files' weights (one run, one network config),
  one model at the cost of one (the shipped ``acdc`` is the average of its run's ``model_best`` and last).
* :func:`determine_defaults`: the test-time augmentation and the connected-component post-processing
  chosen on validation, written into the run's ``card.json`` so that ``predict -m RUN`` uses them.
* :func:`finalize`: the three in a row (``lightmedseg finalize``, ``lightmedseg train --finalize``); the
  chosen model becomes ``RUN/model.safetensors``, the file a run folder resolves to first.

Every choice is made on the validation split only; the tables land in ``RUN/finalize/``.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

from lightmedseg.checkpoint import FINAL_MODEL, CheckpointError, read_checkpoint, resolve_model_path, save_model
from lightmedseg.config import Config, typed_config
from lightmedseg.data.io import ImageGeometry, read_label
from lightmedseg.data.layout import case_files, load_dataset_json
from lightmedseg.data.readers import read_channels
from lightmedseg.evaluation.evaluate import LabelSpec, evaluate_pair, label_spec_from_dataset_json, summarize
from lightmedseg.inference.cards import CARD_NAME, load_card
from lightmedseg.inference.options import TTA_MODES, TTA_PASSES
from lightmedseg.inference.postprocess import keep_largest_component, postprocess_labels, remove_detached_components
from lightmedseg.io_utils import read_json_object, write_json_atomic, write_text_atomic
from lightmedseg.model.factory import build_model
from lightmedseg.training.checkpointing import RUN_SPLIT

FINALIZE_DIR = "finalize"  # RUN/finalize/: the tables and the averaged model
CHECKPOINTS_CSV = "checkpoints.csv"
DEFAULTS_CSV = "defaults.csv"
AVERAGE_NAME = "average_best_last.safetensors"
EVAL_MODE = "strict"
NO_TTA = "none"
TTA_CANDIDATES: tuple[str, ...] = (NO_TTA, *TTA_MODES)  # cheapest first: a tie keeps the cheaper mode


class FinalizeError(ValueError):
    """A run folder or dataset that cannot be scored (no split, no validation cases, no model files)."""


@dataclass
class ValidationSet:
    """The run's validation cases, read once: images, their geometry and the reference labels."""

    case_ids: list[str]
    images: list[np.ndarray]
    geometries: list[ImageGeometry]
    references: list[np.ndarray]
    spec: LabelSpec
    source: str


@dataclass
class Options:
    """How the models are run: the options of ``lightmedseg predict`` that are not chosen on validation."""

    device: str = "auto"
    backend: str = "auto"
    precision: str = "auto"
    log: Callable[[str], None] = field(default=lambda message: None)


def validation_set(run_dir: str | os.PathLike, data_dir: str | os.PathLike, max_cases: int | None = None) -> ValidationSet:
    """The validation cases named by ``RUN/split.json`` (the trainer's split), read from ``data_dir``."""
    run_dir, data_dir = Path(run_dir), Path(data_dir)
    split_file = run_dir / RUN_SPLIT
    if not split_file.is_file():
        raise FinalizeError(f"{run_dir}: no {RUN_SPLIT}; expected a run folder written by lightmedseg train")
    cases = read_json_object(split_file, "'train' and 'validation' case lists", error=FinalizeError).get("validation") or []
    if not cases:
        raise FinalizeError(f"{split_file}: no validation cases; choices are made on validation, never on training "
                            "or test cases - train with a split that has a validation subset")
    cases = list(cases)[:max_cases] if max_cases else list(cases)
    images, geometries, references = [], [], []
    for case in cases:
        image_files, label_file = case_files(data_dir, case)
        if label_file is None:
            raise FinalizeError(f"{data_dir}: validation case {case} of {split_file} has no label file in labelsTr")
        image, geometry = read_channels(image_files)
        images.append(image)
        geometries.append(geometry)
        references.append(read_label(label_file)[0])
    spec = label_spec_from_dataset_json(load_dataset_json(data_dir), str(data_dir / "dataset.json"))
    return ValidationSet(cases, images, geometries, references, spec, f"the {len(cases)} validation case(s) of the run's split.json")


def score_labels(predictions: Sequence[np.ndarray], cases: ValidationSet) -> dict[str, float]:
    """Mean Dice over regions (percent), Dice per region and mean HD95 (mm) of ``predictions``, one per case,
    by :func:`lightmedseg.evaluation.evaluate.evaluate_pair` and :func:`~lightmedseg.evaluation.evaluate.summarize`."""
    rows = []
    for case, pred, ref, geometry in zip(cases.case_ids, predictions, cases.references, cases.geometries):
        rows += evaluate_pair(case, pred, ref, geometry.spacing, cases.spec, EVAL_MODE)
    summary = summarize(rows, cases.spec, EVAL_MODE)
    out = {"mean_dice": 100 * summary["average_dice"]}
    out.update({f"dice_{name}": 100 * value["dice"]["mean"] for name, value in summary["regions"].items()})
    out["hd95_mm"] = summary["average_hd95"]
    return {k: round(float(v), 2) for k, v in out.items()}


def card_defaults(card: Mapping) -> dict:
    """A card's prediction choices as :class:`Segmenter` keywords; predict's defaults where it names none."""
    post = card.get("postprocess") or {}
    return {"tta": (card.get("predict") or {}).get("tta"), "keep_largest": post.get("keep_largest", False),
            "require_contact": post.get("require_contact", False)}


def predict_cases(model: str | os.PathLike, cases: ValidationSet, options: Options, **choices) -> list[np.ndarray]:
    """Label maps of ``model`` on every case through ``Segmenter`` (predict's path) with ``choices``
    (``tta``, ``keep_largest``, ``require_contact``; see :class:`~lightmedseg.inference.segment.Segmenter`)."""
    from lightmedseg.inference.segment import Segmenter

    segmenter = Segmenter(str(model), options.device, backend=options.backend, precision=options.precision,
                          ensemble=False, **choices)
    return [segmenter.predict(image, geometry)[0].labels for image, geometry in zip(cases.images, cases.geometries)]


def run_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """The model files the trainer wrote: ``model_best``, ``model_last`` and ``snapshots/*`` (by step)."""
    from lightmedseg.training.checkpointing import MODEL_BEST, MODEL_LAST, SNAPSHOTS

    run_dir = Path(run_dir)
    found = [run_dir / name for name in (MODEL_BEST, MODEL_LAST) if (run_dir / name).is_file()]
    found += sorted((run_dir / SNAPSHOTS).glob("*.safetensors"))
    if not found:
        raise FinalizeError(f"{run_dir}: no model files ({MODEL_BEST}, {MODEL_LAST} or {SNAPSHOTS}/*.safetensors)")
    return found


def write_table(path: str | os.PathLike, rows: Sequence[Mapping]) -> Path:
    """``rows`` as a CSV file (columns: the union of the rows' keys, in order of appearance), atomically."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, buffer.getvalue())
    return Path(path)


def score_checkpoints(run_dir: str | os.PathLike, data_dir: str | os.PathLike, models: Sequence[str | os.PathLike] | None = None,
                      options: Options | None = None, cases: ValidationSet | None = None,
                      out_csv: str | os.PathLike | None = None) -> list[dict]:
    """One row per model file (default :func:`run_checkpoints`): its validation scores with the run card's
    TTA and post-processing (predict's defaults when the run has no card); written to ``out_csv``
    (default ``RUN/finalize/checkpoints.csv``)."""
    run_dir, options = Path(run_dir), options or Options()
    cases = cases or validation_set(run_dir, data_dir)
    card = load_card(run_dir) if (run_dir / CARD_NAME).is_file() else {}
    choices = card_defaults(card)
    rows = []
    for model in (models or run_checkpoints(run_dir)):
        row = {"model": str(model), **score_labels(predict_cases(model, cases, options, **choices), cases)}
        options.log(f"{row['mean_dice']:6.2f}  {model}")
        rows.append(row)
    write_table(out_csv or run_dir / FINALIZE_DIR / CHECKPOINTS_CSV, rows)
    return rows


def average_weights(models: Sequence[str | os.PathLike], out: str | os.PathLike) -> Path:
    """Write the uniform mean of the floating-point weights of ``models`` (one network config; the first's
    config is stored, integer buffers are the first's) to ``out`` (.safetensors). The network has GroupNorm
    only, so there are no batch statistics to recompute (Izmailov et al. 2018 average SWA weights the same way)."""
    if len(models) < 2:
        raise FinalizeError(f"average: give at least two model files, got {len(models)}")
    paths = [resolve_model_path(m) for m in models]
    states, configs = zip(*[read_checkpoint(p)[:2] for p in paths])
    for path, config in zip(paths[1:], configs[1:]):
        if typed_config(config).model != typed_config(configs[0]).model:
            raise CheckpointError(f"{path}: its network config differs from {paths[0]}'s; average model files "
                                  "of one network (checkpoints of one run, or of runs started from the same config)")
    if any(set(s) != set(states[0]) for s in states[1:]):
        raise CheckpointError(f"{paths[0]}: the model files hold different weight names; expected one network")
    state = {key: (torch.stack([s[key].double() for s in states]).mean(0).to(first.dtype)
                   if first.is_floating_point() else first.clone()) for key, first in states[0].items()}
    model = build_model(configs[0])
    model.load_state_dict(state)
    return save_model(out, model, configs[0])


def _choose_postprocessing(raw: list[np.ndarray], cases: ValidationSet, values: dict[str, int]) -> tuple[list[int], dict[int, list[int]], list[dict]]:
    """nnU-Net's rule, per class: keep its largest component if that raises the mean Dice; then, on top of
    that, drop its components touching no voxel of another class (the best single anchor) if that raises it.
    Each operation changes only its own class's voxels, so the classes are decided one by one."""
    names = {v: n for n, v in values.items()}
    tried = [{"postprocess": "none", **score_labels(raw, cases)}]
    keep: list[int] = []
    for value in values.values():
        score = score_labels([keep_largest_component(r, [value]) for r in raw], cases)
        tried.append({"postprocess": f"largest {names[value]}", **score})
        if score["mean_dice"] > tried[0]["mean_dice"]:
            keep.append(value)
    kept = [postprocess_labels(r, keep, {}) for r in raw]
    base = score_labels(kept, cases)["mean_dice"] if keep else tried[0]["mean_dice"]
    kept_names = "+".join(names[v] for v in keep) or "none"
    contact: dict[int, list[int]] = {}
    for value in values.values():
        scored = []
        for anchor in (a for a in values.values() if a != value):
            score = score_labels([remove_detached_components(k, value, [anchor]) for k in kept], cases)
            tried.append({"postprocess": f"largest {kept_names}, {names[value]} touching {names[anchor]}", **score})
            scored.append((score["mean_dice"], anchor))
        if scored and max(scored)[0] > base:
            contact[value] = [max(scored)[1]]
    return keep, contact, tried


def determine_defaults(run_dir: str | os.PathLike, data_dir: str | os.PathLike, model: str | os.PathLike | None = None,
                       tta_modes: Iterable[str] = TTA_CANDIDATES, options: Options | None = None,
                       cases: ValidationSet | None = None) -> dict:
    """Choose the TTA mode and the post-processing of ``model`` (default: the file ``RUN`` resolves to) on
    the run's validation cases and write them into ``RUN/card.json`` (other card fields are kept), with the
    scores behind them; every variant tried goes to ``RUN/finalize/defaults.csv``. Returns the card.

    For each TTA mode the raw prediction is made once; post-processing variants are applied to it
    (:func:`_choose_postprocessing`). The mode with the best mean Dice after its post-processing wins; a tie
    keeps the cheaper mode (``none`` before 8-pass modes).
    """
    from lightmedseg.inference.segment import label_names
    from lightmedseg.inference.tta import check_window

    run_dir, options = Path(run_dir), options or Options()
    model_path = resolve_model_path(model if model is not None else run_dir)
    cases = cases or validation_set(run_dir, data_dir)
    config = read_checkpoint(model_path)[1]
    names = label_names(config)
    values = {name: value for value, name in names.items() if value != 0}
    window = typed_config(config).window
    rows, results = [], {}
    for mode in tta_modes:
        if mode not in TTA_CANDIDATES:
            raise FinalizeError(f"TTA mode {mode!r}: expected some of {list(TTA_CANDIDATES)}")
        if reason := check_window(None if mode == NO_TTA else mode, window):
            options.log(f"TTA {mode}: skipped ({reason})")
            continue
        raw = predict_cases(model_path, cases, options, tta=False if mode == NO_TTA else mode,
                            keep_largest=False, require_contact=False)
        keep, contact, tried = _choose_postprocessing(raw, cases, values)
        final = score_labels([postprocess_labels(r, keep, contact) for r in raw], cases)
        rows += [{"tta": mode, **row} for row in tried] + [{"tta": mode, "postprocess": "chosen", **final}]
        results[mode] = (keep, contact, final, rows[len(rows) - len(tried) - 1]["mean_dice"])
        options.log(f"TTA {mode}: {final['mean_dice']:.2f} with its chosen post-processing")
    if not results:
        raise FinalizeError(f"no TTA mode of {list(tta_modes)} can run on the window {list(window)}")
    mode = max(results, key=lambda m: (results[m][2]["mean_dice"], -TTA_CANDIDATES.index(m)))
    keep, contact, final, raw_score = results[mode]
    write_table(run_dir / FINALIZE_DIR / DEFAULTS_CSV, rows)
    card = write_card(run_dir, model_path, config, cases, mode, keep, contact, final, results, names)
    options.log(f"wrote {run_dir / CARD_NAME}: TTA {mode}, mean Dice {final['mean_dice']:.2f} (raw {raw_score:.2f})")
    resolved = resolve_model_path(run_dir)
    if resolved.resolve() != model_path.resolve():
        import warnings

        warnings.warn(f"{run_dir} resolves to {resolved.name}, not {model_path}: predict -m {run_dir} applies this card "
                      f"to {resolved.name}; save the chosen model as {run_dir / FINAL_MODEL} (lightmedseg finalize does)",
                      stacklevel=2)
    return card


def write_card(run_dir: Path, model_path: Path, config: Mapping | Config, cases: ValidationSet, mode: str, keep: list[int],
               contact: Mapping[int, list[int]], final: Mapping, results: Mapping, names: Mapping[int, str]) -> dict:
    """``RUN/card.json`` with the chosen defaults and their validation scores; fields it does not set
    (``task``, ``not_for``... written by hand) are kept from the existing card."""
    path = run_dir / CARD_NAME
    card = read_json_object(path, "the model card's fields") if path.is_file() else {}
    card.setdefault("name", run_dir.name)
    cfg = typed_config(config)
    for field_name, value in (("labels", cfg.labels), ("channels", cfg.channel_names), ("geometry", cfg.geometry)):
        if value is not None:
            card[field_name] = value
    post = ([f"largest {names[v]} component kept" for v in keep]
            + [f"{names[v]} components touching no {'/'.join(names[a] for a in anchors)} removed" for v, anchors in contact.items()])
    card["validation"] = {
        "cases": f"{cases.source}, predicted by lightmedseg predict's code path with this card's defaults "
                 f"(TTA {mode}; {'; '.join(post) or 'no post-processing'}), scored in {EVAL_MODE} mode",
        "model": model_path.name if model_path.parent.resolve() == run_dir.resolve() else str(model_path),
        "mean_dice": final["mean_dice"],
        "dice": {k[len("dice_"):]: v for k, v in final.items() if k.startswith("dice_")},
        "hd95_mm": final["hd95_mm"],
        "command": f"lightmedseg make-card {run_dir} --data DATA (per-variant scores: {FINALIZE_DIR}/{DEFAULTS_CSV})",
    }
    card["predict"] = {
        "tta": False if mode == NO_TTA else mode,
        "chosen_on": "the validation cases above: the best mean Dice after each mode's own post-processing "
                     f"(a tie keeps the cheaper mode; {', '.join(f'{m} {TTA_PASSES.get(m, 1)} pass(es)' for m in results)} per window)",
        "measured": {m: r[2]["mean_dice"] for m, r in results.items()},
    }
    card["postprocess"] = {
        "keep_largest": [names[v] for v in keep],
        "require_contact": {names[v]: [names[a] for a in anchors] for v, anchors in contact.items()},
        "chosen_on": "the validation cases above, per class: kept when it raises the mean Dice (nnU-Net's rule)",
    }
    write_json_atomic(path, card)
    return card


@dataclass
class FinalizeReport:
    """What :func:`finalize` chose and wrote."""

    checkpoints: list[dict]
    chosen: str
    model: Path
    card: dict


def finalize(run_dir: str | os.PathLike, data_dir: str | os.PathLike, options: Options | None = None,
             tta_modes: Iterable[str] = TTA_CANDIDATES, max_cases: int | None = None) -> FinalizeReport:
    """Score the run's model files and the average of ``model_best`` and ``model_last`` (the shipped
    ``acdc``'s rule), keep the best-scoring one as ``RUN/model.safetensors`` (what ``-m RUN`` loads), then
    choose its TTA and post-processing on validation and write ``RUN/card.json``."""
    from lightmedseg.training.checkpointing import MODEL_BEST, MODEL_LAST

    run_dir, options = Path(run_dir), options or Options()
    cases = validation_set(run_dir, data_dir, max_cases)
    models: list[Path] = run_checkpoints(run_dir)
    best, last = run_dir / MODEL_BEST, run_dir / MODEL_LAST
    if best.is_file() and last.is_file() and best.read_bytes() != last.read_bytes():
        models.append(average_weights([best, last], run_dir / FINALIZE_DIR / AVERAGE_NAME))
    rows = score_checkpoints(run_dir, data_dir, models, options, cases)
    chosen = max(range(len(rows)), key=lambda i: (rows[i]["mean_dice"], -i))  # a tie keeps the earlier file
    state, config, _ = read_checkpoint(models[chosen])
    model = build_model(config)
    model.load_state_dict(state)
    final = save_model(run_dir / FINAL_MODEL, model, config)
    options.log(f"chose {models[chosen]} ({rows[chosen]['mean_dice']:.2f}) -> {final}")
    card = determine_defaults(run_dir, data_dir, final, tta_modes, options, cases)
    card.setdefault("training", {})["selection"] = (
        f"{models[chosen].relative_to(run_dir)}: the best validation mean Dice of the run's model files and the "
        f"average of {MODEL_BEST} and {MODEL_LAST} ({FINALIZE_DIR}/{CHECKPOINTS_CSV}), by lightmedseg finalize")
    write_json_atomic(run_dir / CARD_NAME, card)
    return FinalizeReport(rows, str(models[chosen]), final, card)


__all__ = ["FinalizeError", "Options", "ValidationSet", "validation_set", "score_labels", "run_checkpoints",
           "score_checkpoints", "average_weights", "determine_defaults", "finalize", "FinalizeReport",
           "FINAL_MODEL", "FINALIZE_DIR", "TTA_CANDIDATES"]
