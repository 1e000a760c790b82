"""Evaluation stage: Dice / HD95 per class and region in two documented modes (see docs/evaluation.md)."""

from lightmedseg.evaluation.evaluate import EvaluationError, evaluate_folders
from lightmedseg.evaluation.metrics import MODES, dice_score, hd95, mask_metrics
from lightmedseg.evaluation.report import write_reports

__all__ = ["EvaluationError", "evaluate_folders", "write_reports", "MODES", "dice_score", "hd95", "mask_metrics"]
