"""Validation during training: sliding-window inference on whole validation cases, Dice per class and region.

Inference is MONAI's :func:`~monai.inferers.sliding_window_inference` (Gaussian blending), Dice is MONAI's
:func:`~monai.metrics.compute_dice` with ``ignore_empty=False`` (a structure absent from both the
reference and the prediction counts as Dice 1, as in nnFormer's scripts). The score used to pick the
best checkpoint is ``val_dice``, the mean over regions (WT/TC/ET, RV/Myo/LV, or one per class).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from monai.metrics import compute_dice

from lightmedseg.data.dataset import load_preprocessed_case
from lightmedseg.training.runtime import autocast


def metric_names(config: dict) -> list[str]:
    """Column names of the validation metrics: ``val_dice``, ``val_dice_<class>``..., ``val_dice_<region>``..."""
    names = ["val_dice"]
    values = sorted(config["labels"].values())
    by_value = {v: n for n, v in config["labels"].items()}
    names += [f"val_dice_{by_value[v]}" for v in values if v != 0]
    names += [f"val_dice_{r}" for r in config["regions"] if f"val_dice_{r}" not in names]
    return names


def _dice(pred: torch.Tensor, ref: torch.Tensor) -> float:
    return float(compute_dice(pred[None, None].float(), ref[None, None].float(), include_background=True,
                              ignore_empty=False).item())


def case_dice(pred_idx: torch.Tensor, ref_idx: torch.Tensor, config: dict) -> dict[str, float]:
    """Dice per foreground class and per region for one case (class-index maps)."""
    values = sorted(config["labels"].values())
    by_value = {v: n for n, v in config["labels"].items()}
    out: dict[str, float] = {}
    for i, v in enumerate(values):
        if v != 0:
            out[f"val_dice_{by_value[v]}"] = _dice(pred_idx == i, ref_idx == i)
    for region, members in config["regions"].items():
        idx = torch.tensor([values.index(v) for v in members])
        out[f"val_dice_{region}"] = _dice(torch.isin(pred_idx, idx), torch.isin(ref_idx, idx))
    return out


@torch.no_grad()
def validate_cases(predictor: Callable[[torch.Tensor], torch.Tensor], data_dir: str | Path,
                   case_ids: Sequence[str], config: dict, device: torch.device,
                   autocast_dtype: torch.dtype | None) -> list[dict[str, float]]:
    """Per-case validation metrics (:func:`case_dice`) of ``case_ids``, in their order (one rank's share)."""
    infer = config.get("infer", {})
    roi = list(config["train"].get("val_roi_size") or config["data"]["patch_size"])
    per_case: list[dict[str, float]] = []
    for case_id in case_ids:
        case = load_preprocessed_case(data_dir, case_id, config)
        image = torch.as_tensor(np.ascontiguousarray(case["image"]))[None].to(device)
        with autocast(device, autocast_dtype):
            logits = sliding_window_inference(image, roi, int(infer.get("sw_batch_size", 1)), predictor,
                                              overlap=float(infer.get("overlap", 0.5)),
                                              mode=str(infer.get("mode", "gaussian")))
        pred = logits.float().argmax(1)[0].cpu()
        per_case.append(case_dice(pred, torch.as_tensor(case["label"]), config))
    return per_case


def summarize_cases(per_case: Sequence[dict[str, float]], config: dict) -> dict[str, float]:
    """Mean of per-case metrics; ``val_dice`` = mean over the regions (NaN without cases)."""
    names = metric_names(config)
    result = {n: float(np.mean([c[n] for c in per_case])) if per_case else math.nan for n in names[1:]}
    regions = [f"val_dice_{r}" for r in config["regions"]]
    result["val_dice"] = float(np.mean([result[r] for r in regions])) if per_case else math.nan
    return result


def validate(predictor: Callable[[torch.Tensor], torch.Tensor], data_dir: str | Path, case_ids: Sequence[str],
             config: dict, device: torch.device, autocast_dtype: torch.dtype | None) -> dict[str, float]:
    """Mean validation metrics over ``case_ids`` (``predictor`` is the model in eval mode), in one process."""
    return summarize_cases(validate_cases(predictor, data_dir, case_ids, config, device, autocast_dtype), config)
