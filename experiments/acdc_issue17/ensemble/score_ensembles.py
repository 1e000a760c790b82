#!/usr/bin/env python
"""Validation Dice of every ensemble (mean softmax) of a few models' saved probabilities, with the shipped
acdc card's post-processing (read from its card.json: largest RV and Myo component, then LV touching Myo), the way ``predict -m A -m B`` combines them.

Why: single checkpoints of one run differ by a few points on validation, almost all of it on two or three
hard volumes (patient094, patient093_frame01), and which checkpoint fails where changes from one to the next.
Averaging members is the usual remedy for that variance (nnU-Net ensembles its folds). Predict each model once
with its TTA and without post-processing, keeping the probabilities:
  lightmedseg predict -m MODEL_DIR -i IMAGES -o PROBS/NAME --no-keep-largest --no-require-contact --probabilities
  python experiments/acdc_issue17/ensemble/score_ensembles.py LABELS PROBS NAME1 NAME2 ...
(MODEL_DIR: the model file beside a copy of the shipped card.json, so it predicts with the card's rot90 TTA.)
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np

from lightmedseg.evaluation.evaluate import evaluate_pair, label_spec_from_dataset_json, summarize
from lightmedseg.inference.postprocess import postprocess_labels

CARD = Path(__file__).resolve().parents[3] / "src/lightmedseg/pretrained/acdc/card.json"
CARD_FIELDS = json.loads(CARD.read_text())
CLASSES = {name: value for name, value in CARD_FIELDS["labels"].items() if value != 0}


def card_postprocess(card: dict) -> Callable[[np.ndarray], np.ndarray]:
    """The card's post-processing as ``Segmenter`` applies it (:func:`postprocess_labels`), label names -> values."""
    pp, values = card.get("postprocess") or {}, card["labels"]
    largest = [values[n] for n in pp.get("keep_largest", [])]
    contact = {values[n]: [values[a] for a in anchors] for n, anchors in (pp.get("require_contact") or {}).items()}
    return lambda labels: postprocess_labels(labels, largest, contact)


def main() -> int:
    ref_dir, probs_root, names = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
    postprocess = card_postprocess(CARD_FIELDS)
    spec = label_spec_from_dataset_json({"labels": CARD_FIELDS["labels"]}, str(CARD))
    cases = sorted(f.name for f in ref_dir.glob("*.nii.gz"))
    refs = {c: nib.load(ref_dir / c) for c in cases}
    combos = [s for r in range(1, len(names) + 1) for s in itertools.combinations(names, r)]
    rows = {s: [] for s in combos}
    for case in cases:
        ref = np.asarray(refs[case].dataobj).astype(np.int16)
        spacing = tuple(float(z) for z in refs[case].header.get_zooms()[:3])
        # written as (x, y, z, class); the label maps as (x, y, z): the metrics take any one axis order for both
        probs = {n: np.asarray(nib.load(probs_root / n / "probabilities" / case).dataobj, dtype=np.float32) for n in names}
        for combo in combos:
            mean = sum(probs[n] for n in combo) / len(combo)
            labels = postprocess(mean.argmax(axis=-1).astype(np.int16))
            rows[combo] += evaluate_pair(case, labels, ref, spacing, spec, "strict")
    print(f"{'ensemble':40s} " + " ".join(f"{c:>6s}" for c in CLASSES) + f" {'mean':>6s} {'worst case':>10s}   ({len(cases)} volumes)")
    for combo in combos:
        summary = summarize(rows[combo], spec, "strict")  # lightmedseg evaluate's means (strict: both empty -> NaN)
        per_case = [np.nanmean([r["dice"] for r in rows[combo] if r["case"] == c and r["kind"] == "region"]) for c in cases]
        print(f"{' + '.join(combo):40s} " + " ".join(f"{100 * summary['regions'][c]['dice']['mean']:6.2f}" for c in CLASSES)
              + f" {100 * summary['average_dice']:6.2f} {100 * min(per_case):10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
