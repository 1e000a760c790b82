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

from lightmedseg.evaluation.metrics import dice_score
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
    cases = sorted(f.name for f in ref_dir.glob("*.nii.gz"))
    refs = {c: np.asarray(nib.load(ref_dir / c).dataobj).astype(np.int16) for c in cases}
    combos = [s for r in range(1, len(names) + 1) for s in itertools.combinations(names, r)]
    scores = {s: {c: [] for c in CLASSES} for s in combos}
    per_case = {s: [] for s in combos}
    for case in cases:
        # written as (x, y, z, class); the label maps as (x, y, z)
        probs = {n: np.asarray(nib.load(probs_root / n / "probabilities" / case).dataobj, dtype=np.float32) for n in names}
        for combo in combos:
            mean = sum(probs[n] for n in combo) / len(combo)
            labels = postprocess(mean.argmax(axis=-1).astype(np.int16))
            ds = [dice_score(labels == v, refs[case] == v, mode="strict") for v in CLASSES.values()]
            for c, d in zip(CLASSES, ds):
                scores[combo][c].append(d)
            per_case[combo].append(np.mean(ds))
    print(f"{'ensemble':40s} {'RV':>6s} {'Myo':>6s} {'LV':>6s} {'mean':>6s} {'worst case':>10s}   ({len(cases)} volumes)")
    for combo in combos:
        means = {c: 100 * np.mean(v) for c, v in scores[combo].items()}
        print(f"{' + '.join(combo):40s} " + " ".join(f"{means[c]:6.2f}" for c in CLASSES)
              + f" {np.mean(list(means.values())):6.2f} {100 * min(per_case[combo]):10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
