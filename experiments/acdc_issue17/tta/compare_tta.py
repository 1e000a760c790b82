#!/usr/bin/env python
"""Validation Dice of the shipped acdc model under each test-time augmentation, with its card's post-processing.

Modes: none, mirror and rot90 (the product's, lightmedseg.inference.tta) and rot90z, a probe that is not in
the product: the 8 rot90 views, each also mirrored along the slice axis (16 passes). Session 7 chose rot90
from this (docs/inference.md, "Test-time augmentation").
  python experiments/acdc_issue17/tta/compare_tta.py IMAGES LABELS MODE [MODE ...]   # IMAGES: {case}_0000.nii.gz
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from lightmedseg.evaluation.metrics import dice_score
from lightmedseg.inference import tta as T
from lightmedseg.inference.segment import Segmenter

CLASSES = {"RV": 1, "Myo": 2, "LV": 3}


def rot90z_views() -> list[T.View]:
    """Each rot90 view, and the same view mirrored along the slice axis (dim 2): 16 views."""
    z = (lambda t: torch.flip(t, (2,)))
    return [v for tr, inv in T.views("rot90")
            for v in ((tr, inv), (lambda t, tr=tr: z(tr(t)), lambda t, inv=inv: inv(z(t))))]


def main() -> int:
    images, labels, modes = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
    for mode in modes:
        probe = mode == "rot90z"
        segmenter = Segmenter("acdc", "cpu", tta="rot90" if probe else (mode if mode != "none" else False))
        if probe:  # swap the window's view set of this one predictor for the probe's
            segmenter.predictor.tta_mode = "rot90"
            original, probe_views = T.views, rot90z_views()
            T.views = lambda m: probe_views if m == "rot90" else original(m)
        scores = {c: [] for c in CLASSES}
        start = time.time()
        for image in sorted(images.glob("*_0000.nii.gz")):
            pred = np.asarray(segmenter(str(image)).dataobj)
            ref = np.asarray(nib.load(labels / image.name.replace("_0000", "")).dataobj)
            for c, v in CLASSES.items():
                scores[c].append(dice_score(pred == v, ref == v, mode="nnformer"))
        if probe:
            T.views = original
        means = {c: 100 * np.mean(v) for c, v in scores.items()}
        print(f"{mode:7s} " + " ".join(f"{c} {m:.2f}" for c, m in means.items())
              + f"  mean {np.mean(list(means.values())):.2f}  ({len(scores['RV'])} volumes, {time.time() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
