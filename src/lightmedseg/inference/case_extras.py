"""What ``predict --statistics`` and ``--preview`` add to each case: volumes gathered per case (then one
report for the run) and a preview PNG beside each label map. Kept out of :mod:`.pipeline` so that stays
about finding, predicting and writing cases.

Both options are checked when :class:`CaseExtras` is made, before the first case is predicted: a bad
``--cardiac-phases`` or a missing matplotlib is reported at once, not after an hour of prediction.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import numpy as np

from lightmedseg.inference.predictor import PredictionError

if TYPE_CHECKING:
    from lightmedseg.data.io import ImageGeometry
    from lightmedseg.inference.inputs import CaseInput

PREVIEW_SUFFIX = ".preview.png"  # {case}.preview.png beside {case}.nii.gz


def preview_path(target: Path) -> Path:
    """Where a case's preview goes: beside its label map, ``{case}.preview.png``."""
    from lightmedseg.data.readers import strip_ending

    return target.with_name((strip_ending(target.name) or target.stem) + PREVIEW_SUFFIX)


class CaseExtras:
    """Per-case statistics and previews of one ``predict`` run (each off unless asked)."""

    def __init__(self, names: Mapping[int, str], statistics: bool = False,
                 cardiac_phases: Sequence[str] | str | os.PathLike | None = None, preview: bool = False) -> None:
        from lightmedseg.inference.statistics import CARDIAC_LABELS, StatisticsError, is_cardiac, parse_phases

        self.names = dict(names)
        self.statistics = bool(statistics) or cardiac_phases is not None
        try:
            self.phases = parse_phases(cardiac_phases)
        except StatisticsError as exc:
            raise PredictionError(str(exc)) from None
        if self.phases and not is_cardiac(self.names.values()):
            raise PredictionError(f"--cardiac-phases: the model's labels {sorted(self.names.values())} lack "
                                  f"{list(CARDIAC_LABELS)}; cardiac function needs a cardiac model such as acdc")
        self.preview = bool(preview)
        if self.preview:
            try:
                import matplotlib  # noqa: F401  (lightmedseg.viz draws with it)
            except ImportError as exc:
                from lightmedseg.extras import missing_extra

                raise PredictionError(f"--preview {missing_extra(exc) or 'needs matplotlib'}") from None
        self.cases: dict[str, dict] = {}
        self.files: dict[str, list[Path]] = {}

    def add(self, case: "CaseInput", target: Path, image: np.ndarray, labels: np.ndarray,
            geometry: "ImageGeometry", report) -> None:
        """Record a predicted case's volumes; write its preview."""
        if self.statistics:
            from lightmedseg.inference.statistics import case_statistics

            self.cases[case.case_id] = case_statistics(labels, geometry.spacing, self.names)
            self.files[case.case_id] = list(case.files)
        if self.preview:
            from lightmedseg.viz.preview import save_preview

            report.previews.append(save_preview(image, labels, preview_path(target), names=self.names,
                                                case_id=case.case_id, spacing=geometry.spacing))

    def add_existing(self, case: "CaseInput", target: Path) -> None:
        """A case skipped as already predicted still counts in the statistics: read its label map back."""
        if not self.statistics:
            return
        from lightmedseg.data.readers import read_label_file
        from lightmedseg.inference.statistics import case_statistics

        labels, geometry = read_label_file(target)
        self.cases[case.case_id] = case_statistics(labels, geometry.spacing, self.names)
        self.files[case.case_id] = list(case.files)

    def finish(self, folder: Path, prefix: str, log: Callable[[str], None]) -> list[Path]:
        """Write ``statistics.json``/``.csv`` (with ``prefix``) in ``folder``; one log line per paired patient."""
        if not self.statistics or not self.cases:
            return []
        from lightmedseg.inference.statistics import StatisticsError, find_info_cfgs, statistics_report, write_statistics

        try:
            report = statistics_report(self.cases, self.names, self.phases, find_info_cfgs(self.files))
        except StatisticsError as exc:
            raise PredictionError(str(exc)) from None
        for patient, c in (report.get("cardiac") or {}).items():
            ef = [c[k]["EF_percent"] for k in ("LV", "RV")]
            log(f"{patient}: ED {c['ED']}, ES {c['ES']} ({c['pairing']}): LV EDV {c['LV']['EDV_ml']:.1f} ml, "
                f"ESV {c['LV']['ESV_ml']:.1f} ml, EF {_pct(ef[0])}; RV EF {_pct(ef[1])}; "
                f"myocardial mass {c['Myo']['mass_ED_g']:.1f} g")
        if report.get("unpaired_cases"):
            log(f"statistics: no ED/ES pair for {len(report['unpaired_cases'])} case(s) "
                f"({', '.join(report['unpaired_cases'][:4])}{'...' if len(report['unpaired_cases']) > 4 else ''}): "
                "volumes only (pair them with --cardiac-phases)")
        paths = write_statistics(folder, report, prefix=prefix)
        log(f"statistics: wrote {paths[0]} and {paths[1].name}")
        return paths


def _pct(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.1f} %"


__all__ = ["CaseExtras", "preview_path", "PREVIEW_SUFFIX"]
