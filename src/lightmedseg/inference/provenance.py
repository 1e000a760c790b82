"""Which model and options wrote a prediction folder (issue 29): ``provenance.json`` beside the outputs.

``predict`` records the model files (SHA-256 of their bytes), the model card's hash and every option that
changes the label maps (TTA mode, overlap, resampling, post-processing, ensemble, output format). A later
``predict`` into the same folder compares its own record: the same model and options skip the cases already
done (as before); another model or other options are refused unless ``--overwrite``, which redoes every case,
so a folder never mixes outputs of two models. Outputs found with no record (written by hand or by a
lightmedseg older than the record) are refused the same way, since nobody can say what wrote them.
Backend, precision, device and batch size are recorded for information only: they change float rounding,
not the model's function.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

from lightmedseg.inference.predictor import PredictionError

PROVENANCE_NAME = "provenance.json"


def _sha256(path: Path) -> str:
    """SHA-256 of a model file's bytes (an OpenVINO IR: its .xml and .bin together)."""
    from lightmedseg.io_utils import hash_file

    h = hash_file(path)
    if path.suffix == ".xml":
        hash_file(path.with_suffix(".bin"), h)
    return h.hexdigest()


def provenance_record(segmenter: Any, output_format: str, informational: Mapping[str, Any]) -> dict:
    """The record of a prediction run: ``identity`` (what decides the outputs) and ``info`` (what does not)."""
    from lightmedseg import __version__
    from lightmedseg.checkpoint import resolve_model_path

    files = [resolve_model_path(m) for m in segmenter.models]
    predictor = segmenter.predictor
    identity = {
        "models": [{"file": str(f), "sha256": _sha256(f)} for f in files],
        "card_sha256": hashlib.sha256(json.dumps(segmenter.card, sort_keys=True).encode()).hexdigest(),
        "options": {
            "tta": predictor.tta_mode, "overlap": predictor.overlap, "mode": predictor.mode,
            "roi_size": list(predictor.roi_size), "resample": segmenter.resample,
            "keep_largest": list(segmenter.keep_largest),
            "require_contact": {str(k): list(v) for k, v in segmenter.require_contact.items()},
            "output_format": output_format,
        },
    }
    return {"identity": identity, "info": {"lightmedseg": __version__, "description": segmenter.description,
                                           **informational}}


def provenance_path(folder: Path, prefix: str = "") -> Path:
    return folder / f"{prefix}{PROVENANCE_NAME}"


def _differences(old: Mapping, new: Mapping) -> list[str]:
    out = []
    old_files = [m.get("sha256") for m in old.get("models", [])]
    if old_files != [m["sha256"] for m in new["models"]]:
        out.append(f"model {', '.join(m.get('file', '?') for m in old.get('models', []))} "
                   f"-> {', '.join(m['file'] for m in new['models'])}")
    elif old.get("card_sha256") != new["card_sha256"]:
        out.append("another model card")
    for key, value in new["options"].items():
        if (old.get("options") or {}).get(key) != value:
            out.append(f"{key} {(old.get('options') or {}).get(key)!r} -> {value!r}")
    return out


def check_provenance(path: Path, record: Mapping, has_outputs: bool, overwrite: bool) -> None:
    """Refuse, before anything is predicted, a folder whose outputs another model or other options wrote."""
    if overwrite or not has_outputs:
        return
    if not path.is_file():
        raise PredictionError(
            f"{path.parent}: holds outputs with no {PROVENANCE_NAME} (written by hand or by an older lightmedseg), so "
            "nothing says which model and options wrote them; pass --overwrite to redo them, or choose another output folder")
    try:
        old = json.loads(path.read_text()).get("identity", {})
    except (OSError, ValueError, AttributeError):
        raise PredictionError(f"{path}: unreadable provenance record; pass --overwrite to redo the outputs") from None
    diff = _differences(old, record["identity"])
    if diff:
        raise PredictionError(f"{path.parent}: its outputs were written with another model or other options "
                              f"({'; '.join(diff)}); pass --overwrite to redo them, or choose another output folder")


def write_provenance(path: Path, record: Mapping) -> None:
    """Write the record atomically (a rerun with the same model and options writes the same identity)."""
    from lightmedseg.io_utils import write_text_atomic

    write_text_atomic(path, json.dumps(record, indent=2) + "\n")


__all__ = ["PROVENANCE_NAME", "provenance_record", "provenance_path", "check_provenance", "write_provenance"]
