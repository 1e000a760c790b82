"""One call from files to both figures of a case, for ``lightmedseg plot`` and the demo.

Reads the channel files (and optionally the reference label and an existing prediction), predicts with the
model if no prediction file is given, and writes ``{case}_overlay.png`` and ``{case}_anchors.png``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from lightmedseg.config import typed_config
from lightmedseg.data.io import read_image_channels, read_label
from lightmedseg.viz.overlays import save_anchor_texture_figure, save_overlay_figure


def save_case_figures(
    model_source: str | os.PathLike,
    image_files: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    label_file: str | os.PathLike | None = None,
    pred_file: str | os.PathLike | None = None,
    case_id: str | None = None,
    n_slices: int = 2,
    device: str = "cpu",
    crop_margin_mm: float | None = None,
) -> dict[str, Path]:
    """Overlay (image | ground truth | prediction) and anchors/texture figures of one case; returns the paths.

    ``crop_margin_mm``: crop the overlay to the foreground (see :func:`lightmedseg.viz.overlays.foreground_box`).
    """
    from lightmedseg.checkpoint import load_model
    from lightmedseg.inference.predictor import Predictor, plain_forward

    model, config = load_model(model_source, device=device)
    image, geometry = read_image_channels(image_files)
    label = read_label(label_file)[0] if label_file is not None else None
    if pred_file is not None:
        pred = read_label(pred_file)[0]
    else:
        pred = Predictor(config, plain_forward(model), device=device).predict_image(image).labels
    name = case_id or Path(image_files[0]).name.split(".")[0].rsplit("_", 1)[0]
    names = {v: n for n, v in (typed_config(config).labels or {}).items() if v}
    out_dir = Path(out_dir)
    overlay = save_overlay_figure(image, label, pred, out_dir / f"{name}_overlay.png", n_slices=n_slices,
                                  spacing=geometry.spacing, class_names=names or None, title=name,
                                  crop_margin_mm=crop_margin_mm)
    anchors = save_anchor_texture_figure(model, image, out_dir / f"{name}_anchors.png", label=label, config=config,
                                         spacing=geometry.spacing, device=device)
    return {"overlay": overlay, "anchors": anchors}
