"""Clinical numbers from label maps: per-label volumes, and cardiac function from an ED/ES pair.

Written by ``lightmedseg predict --statistics`` as ``statistics.json`` and ``statistics.csv`` in the output
folder; the same functions serve the Python API (``segment(..., statistics=True)``, :func:`label_volumes`,
:func:`cardiac_function`). Pure numpy: no torch, so a report can be rebuilt from label files alone
(:func:`folder_statistics`).

Volumes: voxel count x voxel volume (the product of the spacing, mm^3 / 1000 = ml).

Cardiac function, for a model whose labels include ``RV``, ``Myo`` and ``LV`` (the ``acdc`` card), per patient
given its end-diastolic (ED) and end-systolic (ES) frames:

* LV and RV: EDV = cavity volume at ED, ESV = at ES, stroke volume SV = EDV - ESV, ejection fraction
  EF = 100 x SV / EDV (%);
* myocardial mass = Myo volume at ED x :data:`MYOCARDIUM_DENSITY` (1.05 g/ml).

Pairing the frames of a patient (:func:`pair_phases`), first rule that applies:

1. explicit: ``--cardiac-phases ED=CASE ES=CASE`` (one patient) or ``--cardiac-phases FILE.csv`` with columns
   ``patient,ED,ES`` (case IDs);
2. names that say the phase: ``{patient}_ED`` / ``{patient}_ES``;
3. ACDC's ``Info.cfg`` (``ED: 1`` / ``ES: 12``) beside the frames ``{patient}_frameNN`` (the original ACDC
   layout, ``patientNNN/Info.cfg``);
4. ACDC names ``{patient}_frameNN`` with exactly two frames: the frame with the larger LV volume is ED
   (the heart is fullest at end-diastole; in ACDC, ``frame01`` is ED).

Cases of a patient that no rule pairs get volumes only; the report lists them.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from lightmedseg.data.acdc_info import INFO_CFG, phase_frames
from lightmedseg.data.errors import DataError

MYOCARDIUM_DENSITY = 1.05  # g/ml, the usual value in cardiac MRI (e.g. the ACDC challenge's mass definition)
CARDIAC_LABELS: tuple[str, ...] = ("RV", "Myo", "LV")
STATISTICS_JSON = "statistics.json"
STATISTICS_CSV = "statistics.csv"
CSV_FIELDS = ("subject", "kind", "label", "quantity", "value", "unit")
FRAME_NAME = re.compile(r"^(?P<patient>.+?)_frame(?P<frame>\d+)$")
PHASE_NAME = re.compile(r"^(?P<patient>.+?)_(?P<phase>ED|ES)$", re.IGNORECASE)


class StatisticsError(ValueError):
    """Statistics that cannot be computed as asked (an unknown case in --cardiac-phases, a bad phase file)."""


@dataclass(frozen=True)
class PhasePair:
    """The end-diastolic and end-systolic case of one patient, and the rule that paired them."""

    patient: str
    ed: str
    es: str
    rule: str


def voxel_volume_ml(spacing: Sequence[float]) -> float:
    """Volume of one voxel in ml (spacing in mm)."""
    return float(np.prod([float(s) for s in spacing])) / 1000.0


def label_volumes(labels: np.ndarray, spacing: Sequence[float], names: Mapping[int, str]) -> dict[str, dict]:
    """``{name: {"value", "voxels", "volume_ml"}}`` for every foreground label of ``names`` (absent ones: 0)."""
    return _volumes(_counts(labels), spacing, names)


def _counts(labels: np.ndarray) -> np.ndarray:
    flat = np.asarray(labels).ravel()
    if flat.size and flat.min() < 0:
        raise StatisticsError(f"label map holds negative values ({int(flat.min())}); expected label values >= 0")
    return np.bincount(flat.astype(np.int64), minlength=1)


def _volumes(counts: np.ndarray, spacing: Sequence[float], names: Mapping[int, str]) -> dict[str, dict]:
    unit = voxel_volume_ml(spacing)
    out = {}
    for value, name in names.items():
        if int(value) != 0:
            n = int(counts[int(value)]) if 0 <= int(value) < len(counts) else 0
            out[str(name)] = {"value": int(value), "voxels": n, "volume_ml": n * unit}
    return out


def case_statistics(labels: np.ndarray, spacing: Sequence[float], names: Mapping[int, str]) -> dict:
    """One case's entry of the report: spacing, voxel volume and :func:`label_volumes`."""
    return _case_entry(_counts(labels), spacing, names)


def _case_entry(counts: np.ndarray, spacing: Sequence[float], names: Mapping[int, str]) -> dict:
    return {"spacing_mm": [float(x) for x in spacing], "voxel_volume_ml": voxel_volume_ml(spacing),
            "labels": _volumes(counts, spacing, names)}


def is_cardiac(names: Iterable[str]) -> bool:
    """True when the label names include RV, Myo and LV (cardiac function can be reported)."""
    return set(CARDIAC_LABELS) <= {str(n) for n in names}


def _ratio(num: float, den: float) -> float:
    return 100.0 * num / den if den > 0 else math.nan


def cardiac_function(ed: Mapping[str, Mapping], es: Mapping[str, Mapping]) -> dict:
    """LV/RV EDV, ESV, SV (ml), EF (%) and myocardial mass at ED (g) from two :func:`label_volumes` results."""
    out: dict = {}
    for cavity in ("LV", "RV"):
        edv, esv = float(ed[cavity]["volume_ml"]), float(es[cavity]["volume_ml"])
        out[cavity] = {"EDV_ml": edv, "ESV_ml": esv, "SV_ml": edv - esv, "EF_percent": _ratio(edv - esv, edv)}
    out["Myo"] = {"mass_ED_g": float(ed["Myo"]["volume_ml"]) * MYOCARDIUM_DENSITY,
                  "mass_ES_g": float(es["Myo"]["volume_ml"]) * MYOCARDIUM_DENSITY}
    return out


def parse_phases(spec: Sequence[str] | str | os.PathLike | None) -> dict[str, tuple[str, str]]:
    """``--cardiac-phases``: ``["ED=CASE", "ES=CASE"]`` (one patient) or a CSV file with columns
    ``patient,ED,ES``, as ``{patient: (ed_case, es_case)}``; ``None`` -> ``{}``."""
    if spec is None:
        return {}
    items = [str(spec)] if isinstance(spec, (str, os.PathLike)) else [str(s) for s in spec]
    if len(items) == 1 and "=" not in items[0]:
        path = Path(items[0])
        if not path.is_file():
            raise StatisticsError(f"--cardiac-phases {path}: file not found; give a CSV (patient,ED,ES) or ED=CASE ES=CASE")
        try:
            rows = list(csv.DictReader(io.StringIO(path.read_text())))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise StatisticsError(f"{path}: cannot read it as a CSV with the columns patient,ED,ES ({type(exc).__name__})") from None
        if not rows or not {"patient", "ED", "ES"} <= set(rows[0]):
            raise StatisticsError(f"{path}: expected a CSV with the columns patient,ED,ES (case IDs), one row per patient")
        return {r["patient"].strip(): (r["ED"].strip(), r["ES"].strip()) for r in rows}
    pairs = dict(item.split("=", 1) for item in items if "=" in item)
    if set(pairs) != {"ED", "ES"} or len(items) != 2:
        raise StatisticsError(f"--cardiac-phases {' '.join(items)}: expected ED=CASE ES=CASE or a CSV file (patient,ED,ES)")
    ed, es = pairs["ED"].strip(), pairs["ES"].strip()
    named = [FRAME_NAME.match(c) or PHASE_NAME.match(c) for c in (ed, es)]
    if all(named) and named[0]["patient"] == named[1]["patient"]:
        patient = named[0]["patient"]
    else:
        patient = os.path.commonprefix([ed, es]).rstrip("0123456789").rstrip("_-") or ed
    return {patient: (ed, es)}


def pair_phases(
    volumes: Mapping[str, Mapping[str, Mapping]],
    explicit: Mapping[str, tuple[str, str]] | None = None,
    info: Mapping[str, Mapping[str, int]] | None = None,
) -> tuple[list[PhasePair], list[str]]:
    """Pair each patient's ED and ES case (rules in the module docstring); returns the pairs and the cases
    left unpaired. ``volumes``: case ID -> :func:`label_volumes`; ``info``: patient -> Info.cfg frames."""
    pairs: list[PhasePair] = []
    used: set[str] = set()
    for patient, (ed, es) in (explicit or {}).items():
        for case in (ed, es):
            if case not in volumes:
                raise StatisticsError(f"--cardiac-phases: case {case!r} (patient {patient}) is not among the "
                                      f"predicted cases {sorted(volumes)[:6]}{'...' if len(volumes) > 6 else ''}")
        pairs.append(PhasePair(patient, ed, es, "explicit (--cardiac-phases)"))
        used |= {ed, es}
    named: dict[str, dict[str, str]] = {}
    frames: dict[str, dict[int, str]] = {}
    for case in sorted(set(volumes) - used):
        if m := PHASE_NAME.match(case):
            named.setdefault(m["patient"], {})[m["phase"].upper()] = case
        elif m := FRAME_NAME.match(case):
            frames.setdefault(m["patient"], {})[int(m["frame"])] = case
    for patient, phases in sorted(named.items()):
        if set(phases) == {"ED", "ES"}:
            pairs.append(PhasePair(patient, phases["ED"], phases["ES"], "names (_ED / _ES)"))
            used |= set(phases.values())
    for patient, by_frame in sorted(frames.items()):
        cfg = (info or {}).get(patient)
        if cfg and cfg["ED"] in by_frame and cfg["ES"] in by_frame:
            pairs.append(PhasePair(patient, by_frame[cfg["ED"]], by_frame[cfg["ES"]], INFO_CFG))
        elif len(by_frame) == 2:
            a, b = (by_frame[f] for f in sorted(by_frame))
            ed, es = (a, b) if volumes[a]["LV"]["volume_ml"] >= volumes[b]["LV"]["volume_ml"] else (b, a)
            pairs.append(PhasePair(patient, ed, es, "names (_frameNN): ED = larger LV volume"))
        else:
            continue
        used |= {pairs[-1].ed, pairs[-1].es}
    return pairs, sorted(set(volumes) - used)


def find_info_cfgs(case_files: Mapping[str, Sequence[str | os.PathLike]]) -> dict[str, dict[str, int]]:
    """Patient -> ``{"ED", "ES"}`` frames from an ``Info.cfg`` in the folder of a ``{patient}_frameNN`` case's file."""
    info: dict[str, dict[str, int]] = {}
    for case, files in case_files.items():
        m = FRAME_NAME.match(case)
        if not m or m["patient"] in info or not files:
            continue
        cfg = Path(files[0]).parent / INFO_CFG
        if cfg.is_file():
            try:
                info[m["patient"]] = phase_frames(cfg)
            except DataError as exc:
                raise StatisticsError(str(exc)) from None
    return info


def statistics_report(
    cases: Mapping[str, Mapping],
    names: Mapping[int, str],
    phases: Sequence[str] | str | os.PathLike | Mapping[str, tuple[str, str]] | None = None,
    info: Mapping[str, Mapping[str, int]] | None = None,
) -> dict:
    """The whole report: per-case volumes (``cases``: case ID -> :func:`case_statistics`), and for a cardiac
    label set, cardiac function per paired patient."""
    report: dict = {"units": {"volume": "ml", "EF": "%", "mass": "g"}, "cases": dict(sorted(cases.items()))}
    if not is_cardiac(names.values()):
        if phases:
            raise StatisticsError(f"--cardiac-phases: the model's labels {sorted(names.values())} lack {list(CARDIAC_LABELS)}")
        return report
    explicit = phases if isinstance(phases, Mapping) else parse_phases(phases)
    volumes = {case: entry["labels"] for case, entry in cases.items()}
    pairs, unpaired = pair_phases(volumes, explicit, info)
    report["cardiac"] = {
        p.patient: {"ED": p.ed, "ES": p.es, "pairing": p.rule, **cardiac_function(volumes[p.ed], volumes[p.es])}
        for p in pairs
    }
    report["myocardium_density_g_per_ml"] = MYOCARDIUM_DENSITY
    report["unpaired_cases"] = unpaired
    return report


def _finite(value: float) -> float | None:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def report_rows(report: Mapping) -> list[dict]:
    """The report as long-format CSV rows (:data:`CSV_FIELDS`): per case and label voxels and volume, then
    per patient LV/RV EDV, ESV, SV, EF and the myocardial mass."""
    rows = []
    for case, entry in report["cases"].items():
        for name, v in entry["labels"].items():
            rows.append({"subject": case, "kind": "case", "label": name, "quantity": "voxels", "value": v["voxels"], "unit": "voxels"})
            rows.append({"subject": case, "kind": "case", "label": name, "quantity": "volume", "value": v["volume_ml"], "unit": "ml"})
    for patient, entry in (report.get("cardiac") or {}).items():
        for label in ("LV", "RV", "Myo"):
            for key, value in entry[label].items():
                quantity, unit = key.rsplit("_", 1)
                rows.append({"subject": patient, "kind": f"patient (ED {entry['ED']}, ES {entry['ES']})",
                             "label": label, "quantity": quantity, "value": value, "unit": unit.replace("percent", "%")})
    return rows


def _plain(value):
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return _finite(value)


def write_statistics(folder: str | os.PathLike, report: Mapping, prefix: str = "") -> list[Path]:
    """Write ``{prefix}statistics.json`` and ``{prefix}statistics.csv`` in ``folder``, atomically (NaN -> null / empty)."""
    from lightmedseg.io_utils import write_json_atomic, write_text_atomic

    folder = Path(folder)
    json_path, csv_path = folder / f"{prefix}{STATISTICS_JSON}", folder / f"{prefix}{STATISTICS_CSV}"
    write_json_atomic(json_path, _plain(report))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in report_rows(report):
        value = row["value"]
        writer.writerow({**row, "value": "" if _finite(value) is None else (f"{value:.6g}" if isinstance(value, float) else value)})
    write_text_atomic(csv_path, buf.getvalue())
    return [json_path, csv_path]


def folder_statistics(
    folder: str | os.PathLike,
    names: Mapping[int, str] | None = None,
    phases: Sequence[str] | str | os.PathLike | Mapping[str, tuple[str, str]] | None = None,
) -> dict:
    """:func:`statistics_report` of the label maps in ``folder`` (any format predict writes); names from
    ``names``, else the folder's ``labels.json``, else the values found."""
    from lightmedseg.data.labels import LABELS_JSON
    from lightmedseg.data.readers import label_case_id, read_label_file
    from lightmedseg.io_utils import read_json_object

    folder = Path(folder)
    files = {cid: f for f in sorted(folder.iterdir()) if f.is_file() and (cid := label_case_id(f.name))}
    if not files:
        raise StatisticsError(f"{folder}: no label maps found")
    if names is None and (folder / LABELS_JSON).is_file():
        names = {int(k): str(v) for k, v in read_json_object(folder / LABELS_JSON, "value -> name pairs", StatisticsError).items()}
    counted = {}
    for cid, f in files.items():
        labels, geometry = read_label_file(f)
        counted[cid] = (_counts(labels), geometry.spacing)
    if names is None:  # no labels.json: one label per value found
        names = {v: str(v) for v in sorted({int(i) for c, _ in counted.values() for i in np.flatnonzero(c)})}
    cases = {cid: _case_entry(counts, sp, names) for cid, (counts, sp) in counted.items()}
    return statistics_report(cases, names, phases, find_info_cfgs({c: [f] for c, f in files.items()}))


__all__ = [
    "MYOCARDIUM_DENSITY", "CARDIAC_LABELS", "STATISTICS_JSON", "STATISTICS_CSV", "StatisticsError", "PhasePair",
    "voxel_volume_ml", "label_volumes", "case_statistics", "is_cardiac", "cardiac_function",
    "parse_phases", "pair_phases", "find_info_cfgs", "statistics_report", "report_rows", "write_statistics",
    "folder_statistics",
]
