"""Validation during training: the predictor's sliding window on whole validation cases, Dice per class and region.

One validation path: the windows, padding and blending are :class:`lightmedseg.inference.predictor.Predictor`'s
(without TTA), and Dice is :func:`lightmedseg.evaluation.metrics.dice_score` in ``nnformer`` mode (a structure
absent from both the reference and the prediction counts as Dice 1, as in nnFormer's scripts), so a model's
validation Dice is what ``lightmedseg predict`` + ``lightmedseg evaluate --mode nnformer`` give on the same
case (on the preprocessed grid: voxels cropped away are background in both). The score used to pick the best
checkpoint is ``val_dice``, the mean over regions (WT/TC/ET, RV/Myo/LV, or one per class).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from lightmedseg.config import Config, typed_config
from lightmedseg.data.cases import load_preprocessed_case
from lightmedseg.evaluation.metrics import dice_score
from lightmedseg.inference.predictor import Predictor
from lightmedseg.training.runtime import autocast


def _labels_regions(config: Mapping | Config) -> tuple[dict[str, int], dict[str, list[int]]]:
    """The dataset's labels and regions that training recorded in the config (both required here)."""
    cfg = typed_config(config)
    if cfg.labels is None or cfg.regions is None:
        raise ValueError("config has no labels/regions: validation needs a config set up for a dataset "
                         "(lightmedseg.training.setup.config_for_dataset)")
    return cfg.labels, cfg.regions


def metric_names(config: Mapping | Config) -> list[str]:
    """Column names of the validation metrics: ``val_dice``, ``val_dice_<class>``..., ``val_dice_<region>``..."""
    labels, regions = _labels_regions(config)
    names = ["val_dice"]
    by_value = {v: n for n, v in labels.items()}
    names += [f"val_dice_{by_value[v]}" for v in sorted(labels.values()) if v != 0]
    names += [f"val_dice_{r}" for r in regions if f"val_dice_{r}" not in names]
    return names


def case_dice(pred_idx: torch.Tensor, ref_idx: torch.Tensor, config: Mapping | Config) -> dict[str, float]:
    """Dice per foreground class and per region for one case (class-index maps)."""
    labels, regions = _labels_regions(config)
    values = sorted(labels.values())
    by_value = {v: n for n, v in labels.items()}
    out: dict[str, float] = {}
    for i, v in enumerate(values):
        if v != 0:
            out[f"val_dice_{by_value[v]}"] = dice_score(pred_idx == i, ref_idx == i, mode="nnformer")
    for region, members in regions.items():
        idx = torch.tensor([values.index(v) for v in members])
        out[f"val_dice_{region}"] = dice_score(torch.isin(pred_idx, idx), torch.isin(ref_idx, idx), mode="nnformer")
    return out


def validation_predictor(forward: Callable[[torch.Tensor], torch.Tensor], config: Mapping | Config,
                         device: torch.device, autocast_dtype: torch.dtype | None) -> Predictor:
    """The predictor validation uses: the model's window (``infer.roi_size``, or the deprecated
    ``train.val_roi_size``), overlap and blending, no TTA, ``forward`` under the run's autocast."""
    cfg = typed_config(config)
    if cfg.train.val_roi_size:
        cfg = copy.deepcopy(cfg)
        cfg.infer.roi_size = list(cfg.train.val_roi_size)

    def window(x: torch.Tensor) -> torch.Tensor:
        with autocast(device, autocast_dtype):
            return forward(x)

    return Predictor(cfg.to_dict(), window, device=device, tta=False)


@torch.no_grad()
def validate_cases(forward: Callable[[torch.Tensor], torch.Tensor], data_dir: str | Path,
                   case_ids: Sequence[str], config: Mapping | Config, device: torch.device,
                   autocast_dtype: torch.dtype | None) -> list[dict[str, float]]:
    """Per-case validation metrics (:func:`case_dice`) of ``case_ids``, in their order (one rank's share)."""
    config = typed_config(config)
    predictor = validation_predictor(forward, config, device, autocast_dtype)
    per_case: list[dict[str, float]] = []
    for case_id in case_ids:
        case = load_preprocessed_case(data_dir, case_id, config)
        pred = predictor.predict_logits(case["image"]).float().argmax(0).cpu()
        per_case.append(case_dice(pred, torch.as_tensor(case["label"]), config))
    return per_case


def summarize_cases(per_case: Sequence[dict[str, float]], config: Mapping | Config) -> dict[str, float]:
    """Mean of per-case metrics; ``val_dice`` = mean over the regions (NaN without cases)."""
    names = metric_names(config)
    result = {n: float(np.mean([c[n] for c in per_case])) if per_case else math.nan for n in names[1:]}
    regions = [f"val_dice_{r}" for r in _labels_regions(config)[1]]
    result["val_dice"] = float(np.mean([result[r] for r in regions])) if per_case else math.nan
    return result


def validate(predictor: Callable[[torch.Tensor], torch.Tensor], data_dir: str | Path, case_ids: Sequence[str],
             config: Mapping | Config, device: torch.device, autocast_dtype: torch.dtype | None) -> dict[str, float]:
    """Mean validation metrics over ``case_ids`` (``predictor`` is the model in eval mode), in one process."""
    return summarize_cases(validate_cases(predictor, data_dir, case_ids, config, device, autocast_dtype), config)
