"""Evaluate a folder of predicted label maps against a folder of reference label maps.

Label maps are read in every format ``predict`` reads or writes (``.nii.gz``/``.nii``, ``.nrrd``/``.seg.nrrd``,
``.mha``/``.mhd``; :func:`lightmedseg.data.readers.read_label_file`), and class names come from a dataset.json
or, without one, from the ``labels.json`` sidecar predict writes beside its outputs.
Cases are matched by case ID (file name without its image ending), never by sort order: a reference
without a prediction is an error (or, with ``allow_missing``, listed in the summary and printed as a
warning) and a prediction without a reference is listed and warned about. Metrics are computed per
foreground class and per evaluation region (BraTS WT/TC/ET, ACDC RV/Myo/LV, or one per class) with the
region definitions of :mod:`lightmedseg.data.labels`.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
from tqdm import tqdm

from lightmedseg.data import labels as L
from lightmedseg.data.io import AFFINE_TOLERANCE
from lightmedseg.data.readers import IMAGE_ENDINGS, label_case_id, read_label_file
from lightmedseg.evaluation.metrics import check_mode, mask_metrics
from lightmedseg.io_utils import is_inside, read_json_object


class EvaluationError(ValueError):
    """Inputs that cannot be evaluated (missing folders, unmatched cases, geometry mismatch)."""


@dataclass
class LabelSpec:
    """What to evaluate: foreground classes (name -> value) and regions (name -> list of values)."""

    classes: dict[str, int]
    regions: dict[str, list[int]]
    source: str = "labels found in the reference files"
    convention: str = "generic"


@dataclass
class CaseMatch:
    """Result of matching two folders by case ID."""

    pairs: list[tuple[str, Path, Path]]
    missing: list[str] = field(default_factory=list)  # references without prediction
    extra: list[str] = field(default_factory=list)  # predictions without reference


def case_id_of(path: Path) -> str | None:
    """Case ID of a label file (``case.nii.gz``, ``case.seg.nrrd``, ``case.mha`` -> ``case``), or None for a
    hidden file (atomic-write temporaries) or a file that is not an image."""
    return label_case_id(path.name)


def find_label_files(folder: str | os.PathLike, what: str) -> dict[str, Path]:
    """Map case ID -> label file for every label map (any format predict writes) directly inside ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EvaluationError(f"{folder}: {what} folder not found")
    found: dict[str, Path] = {}
    for f in sorted(folder.iterdir()):
        cid = case_id_of(f) if f.is_file() else None
        if cid is None:
            continue
        if cid in found:
            raise EvaluationError(f"{folder}: case {cid!r} appears twice ({found[cid].name} and {f.name})")
        found[cid] = f
    if not found:
        raise EvaluationError(f"{folder}: no {what} label files ({' '.join('*' + e for e in IMAGE_ENDINGS)}) found")
    return found


def match_cases(pred: Mapping[str, Path], ref: Mapping[str, Path]) -> CaseMatch:
    """Pair predictions and references by case ID; list the unmatched ones on either side."""
    common = sorted(set(pred) & set(ref))
    return CaseMatch(
        pairs=[(c, pred[c], ref[c]) for c in common],
        missing=sorted(set(ref) - set(pred)),
        extra=sorted(set(pred) - set(ref)),
    )


def _read_json(path: Path) -> dict:
    return read_json_object(path, "a 'labels' mapping", EvaluationError)


def label_spec_from_dataset_json(dataset_json: Mapping, source: str = "dataset.json") -> LabelSpec:
    """Classes and regions declared by a dataset.json (regions from :func:`lightmedseg.data.labels.regions`)."""
    try:
        values = L.label_values(dataset_json)
        regs = L.regions(dataset_json)
        conv = L.convention(dataset_json)
    except ValueError as exc:
        raise EvaluationError(f"{source}: {exc}") from None
    names = {v: n for n, v in dataset_json["labels"].items()}
    return LabelSpec({names[v]: v for v in values if v != 0}, regs, source, conv)


def label_spec_from_values(values: Iterable[int]) -> LabelSpec:
    """Fallback without dataset.json: one class and one region per foreground value found."""
    fg = sorted({int(v) for v in values if int(v) != 0})
    return LabelSpec({str(v): v for v in fg}, {str(v): [v] for v in fg})


def resolve_label_spec(labels: str | os.PathLike | None, ref_dir: Path, pred_dir: Path | None = None) -> LabelSpec | None:
    """The dataset.json (or predict's ``labels.json``) given, else a dataset.json beside/above the reference
    folder, else the ``labels.json`` sidecar of the prediction (then reference) folder, else None (values found)."""
    from lightmedseg.evaluation.sidecar import find_sidecar, is_sidecar, read_sidecar

    if labels is not None:
        path = Path(labels)
        if path.is_dir():
            path = path / "dataset.json"
        if not path.is_file():
            raise EvaluationError(f"{path}: dataset JSON not found")
        data = _read_json(path)
        if is_sidecar(data):
            return label_spec_from_dataset_json(read_sidecar(path, EvaluationError), str(path))
        return label_spec_from_dataset_json(data, str(path))
    for candidate in (ref_dir / "dataset.json", ref_dir.parent / "dataset.json"):
        if candidate.is_file():
            return label_spec_from_dataset_json(_read_json(candidate), str(candidate))
    sidecar = find_sidecar(*(d for d in (pred_dir, ref_dir) if d is not None))
    if sidecar is not None:
        return label_spec_from_dataset_json(read_sidecar(sidecar, EvaluationError), str(sidecar))
    return None


def evaluate_pair(
    case_id: str,
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: tuple[float, float, float],
    spec: LabelSpec,
    mode: str,
) -> list[dict]:
    """Per-class and per-region metric rows of one case (arrays (Z, Y, X), spacing (sz, sy, sx))."""
    rows = []
    groups = [("class", n, [v]) for n, v in spec.classes.items()] + [("region", n, vs) for n, vs in spec.regions.items()]
    for kind, name, values in groups:
        m = mask_metrics(np.isin(pred, values), np.isin(ref, values), spacing, mode)
        rows.append({"case": case_id, "kind": kind, "name": name, "values": "+".join(map(str, values)), **m})
    return rows


def _check_geometry(pred_path: Path, ref_path: Path, pg, rg, check_affine: bool) -> None:
    if pg.shape != rg.shape:
        raise EvaluationError(
            f"{pred_path}: prediction shape {pg.shape} (z, y, x) differs from reference {ref_path} shape {rg.shape}"
        )
    if check_affine and not np.allclose(pg.affine, rg.affine, atol=AFFINE_TOLERANCE):
        diff = float(np.abs(pg.affine - rg.affine).max())
        raise EvaluationError(
            f"{pred_path}: affine differs from reference {ref_path} by up to {diff:.4g} mm "
            "(prediction not in the reference's geometry); pass --no-geometry-check to compare voxel grids anyway"
        )


def _unexpected_values(arr: np.ndarray, spec: LabelSpec) -> list[int]:
    allowed = set(spec.classes.values()) | {0}
    return sorted(set(np.unique(arr).tolist()) - allowed)


def _stats(values: list[float]) -> dict:
    arr = np.asarray(values, dtype=np.float64)
    finite = arr[~np.isnan(arr)]
    return {
        "mean": float(finite.mean()) if finite.size else math.nan,
        "std": float(finite.std()) if finite.size else math.nan,
        "median": float(np.median(finite)) if finite.size else math.nan,
        "n": int(finite.size),
        "n_nan": int(arr.size - finite.size),
    }


def summarize(rows: list[dict], spec: LabelSpec, mode: str) -> dict:
    """Mean/std/median per class and region over cases (NaN entries excluded and counted), and the averages.

    ``average`` follows the paper and the nnFormer scripts: the mean over regions of the per-region means.
    """
    out: dict = {"classes": {}, "regions": {}}
    for kind, key, names in (("class", "classes", spec.classes), ("region", "regions", spec.regions)):
        for name in names:
            sel = [r for r in rows if r["kind"] == kind and r["name"] == name]
            out[key][name] = {"dice": _stats([r["dice"] for r in sel]), "hd95": _stats([r["hd95"] for r in sel])}
    for metric in ("dice", "hd95"):
        means = [v[metric]["mean"] for v in out["regions"].values()]
        finite = [m for m in means if not math.isnan(m)]
        out[f"average_{metric}"] = float(np.mean(finite)) if finite else math.nan
    return out


def _warn(msg: str) -> None:
    print(f"WARNING: {msg}", file=sys.stderr)


def check_folders(pred_dir: str | os.PathLike, ref_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> None:
    """Refuse a prediction folder that is the reference folder, and reports written into the reference folder."""
    if Path(pred_dir).resolve() == Path(ref_dir).resolve():
        raise EvaluationError(f"{pred_dir}: --pred and --ref are the same folder; a folder scored against itself is "
                              "always 100 % - give the predictions and the references")
    if out_dir is not None and is_inside(out_dir, ref_dir):
        raise EvaluationError(f"{out_dir}: reports must not be written into the reference folder {ref_dir}; "
                              "give --out outside it")


def evaluate_folders(
    pred_dir: str | os.PathLike,
    ref_dir: str | os.PathLike,
    labels: str | os.PathLike | None = None,
    mode: str = "strict",
    allow_missing: bool = False,
    check_affine: bool = True,
    progress: bool = True,
) -> tuple[list[dict], dict]:
    """Evaluate every matched case; return (per-case rows, summary dict).

    Raises EvaluationError when a reference has no prediction (unless ``allow_missing``), when no case
    matches, or when a prediction's geometry or label values do not fit its reference.
    """
    check_mode(mode)
    pred_dir, ref_dir = Path(pred_dir), Path(ref_dir)
    preds, refs = find_label_files(pred_dir, "prediction"), find_label_files(ref_dir, "reference")
    check_folders(pred_dir, ref_dir)
    match = match_cases(preds, refs)
    same = [cid for cid, p, r in match.pairs if p.resolve() == r.resolve()]
    if same:
        raise EvaluationError(f"{preds[same[0]]}: is the reference file {refs[same[0]]} itself (links resolved); "
                              f"{len(same)} prediction(s) would be scored against themselves")
    if not match.pairs:
        raise EvaluationError(
            f"no case IDs in common between {pred_dir} ({sorted(preds)[:5]}...) and {ref_dir} ({sorted(refs)[:5]}...)"
        )
    if match.missing:
        msg = f"{len(match.missing)} reference case(s) have no prediction in {pred_dir}: {match.missing}"
        if not allow_missing:
            raise EvaluationError(msg + " (pass --allow-missing to evaluate the others and list these)")
        _warn(msg + " - NOT evaluated, listed in the summary")
    if match.extra:
        _warn(f"{len(match.extra)} prediction(s) have no reference in {ref_dir}: {match.extra} - ignored, listed in the summary")

    spec = resolve_label_spec(labels, ref_dir, pred_dir)
    if spec is None:
        # Without a dataset.json the classes are the values present in any file (one extra read pass).
        found: set[int] = set()
        for _, p_path, r_path in match.pairs:
            found |= set(np.unique(read_label_file(p_path)[0]).tolist()) | set(np.unique(read_label_file(r_path)[0]).tolist())
        spec = label_spec_from_values(found)
        _warn(f"no dataset.json or labels.json given or found near {ref_dir} / {pred_dir}: evaluating one region per label value {sorted(spec.classes.values())}")
    rows: list[dict] = []
    for cid, p_path, r_path in tqdm(match.pairs, desc=f"evaluate ({mode})", unit="case", disable=not progress):
        pred, pg = read_label_file(p_path)
        ref, rg = read_label_file(r_path)
        _check_geometry(p_path, r_path, pg, rg, check_affine)
        for arr, path in ((pred, p_path), (ref, r_path)):
            bad = _unexpected_values(arr, spec)
            if bad:
                raise EvaluationError(
                    f"{path}: label values {bad} are not declared in {spec.source} "
                    f"(declared: {sorted(spec.classes.values())} and background 0)"
                )
        rows += evaluate_pair(cid, pred, ref, rg.spacing, spec, mode)

    summary = {
        "mode": mode,
        "hd95_unit": "mm" if mode == "strict" else "voxel",
        "empty_mask_rules": EMPTY_RULES[mode],
        "pred_dir": str(pred_dir),
        "ref_dir": str(ref_dir),
        "labels_source": spec.source,
        "label_convention": spec.convention,
        "classes": spec.classes,
        "regions": spec.regions,
        "num_cases": len(match.pairs),
        "cases": [c for c, _, _ in match.pairs],
        "missing_predictions": match.missing,
        "extra_predictions": match.extra,
        "metrics": summarize(rows, spec, mode),
    }
    return rows, summary


EMPTY_RULES: dict[str, str] = {
    "strict": (
        "both masks empty: Dice and HD95 are NaN and excluded from means (counted in n_nan); "
        "exactly one empty: Dice 0 and HD95 = image diagonal in mm (sqrt(sum((shape*spacing)^2)))"
    ),
    "nnformer": (
        "both masks empty: Dice 1; either mask empty: HD95 0 (nnFormer/UNETR++ scripts); "
        "HD95 = 95th percentile of pooled surface distances of both directions, in voxels (medpy hd95 without spacing)"
    ),
}
