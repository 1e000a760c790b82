"""Overlay figures (paper Figures 2-3 style) and the anchors / texture-map view."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from lightmedseg.model.factory import build_model
from lightmedseg.config import load_config
from lightmedseg.viz import (
    FigureError, OverlayCase, anchors_and_texture, pick_slices, save_anchor_texture_figure, save_cases_figure,
    save_overlay_figure,
)


def _case(seed=0, shape=(23, 41, 37)):
    rng = np.random.default_rng(seed)
    image = rng.normal(size=(4, *shape)).astype(np.float32)
    label = np.zeros(shape, np.int16)
    label[5:9, 10:20, 10:30] = 2
    label[7, 12:16, 12:20] = 4
    label[7, 25:30, 2:8] = 1  # slice 7 holds the most foreground
    pred = np.roll(label, 1, axis=2)
    return image, label, pred


def test_pick_slices_most_foreground():
    _, label, _ = _case()
    assert pick_slices(label, axis=0, n=1) == [7]
    assert len(pick_slices(label, axis=0, n=3)) == 3 and 7 in pick_slices(label, axis=0, n=3)
    assert pick_slices(np.zeros((6, 5, 4)), axis=1) == [2]  # empty: middle slice


def test_overlay_figures_written(tmp_path):
    image, label, pred = _case()
    out = save_overlay_figure(image, label, pred, tmp_path / "fig" / "overlay.png", n_slices=2,
                              spacing=(3.0, 0.8, 0.8), class_names={2: "ED", 4: "ET"})
    pixels = imread(str(out))
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 200
    assert pixels[..., :3].std() > 0.01  # not a blank canvas
    grid = save_cases_figure([OverlayCase(image, label, pred, name=f"case{i}") for i in range(4)],
                             tmp_path / "fig" / "grid.png", axis=1)
    assert imread(str(grid)).shape[0] > imread(str(out)).shape[0]  # 4 rows taller than 2
    assert sorted(p.name for p in (tmp_path / "fig").iterdir()) == ["grid.png", "overlay.png"]  # no temporaries


def test_overlay_bad_input(tmp_path):
    image, label, pred = _case()
    with pytest.raises(FigureError, match="differs from image"):
        save_overlay_figure(image, label[:, :, :-1], pred, tmp_path / "x.png")
    with pytest.raises(FigureError, match="out of range"):
        save_overlay_figure(image, label, pred, tmp_path / "x.png", slices=[99])
    assert not (tmp_path / "x.png").exists()


def test_anchor_texture_figure(tmp_path):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg = load_config("demo", overrides=["infer.roi_size=[32,32,32]"])
    model = build_model(cfg)
    image, label, _ = _case()
    res = anchors_and_texture(model, image, roi_size=(32, 32, 32))
    assert res["size"] == [32, 32, 32] and res["texture"].shape == (32, 32, 32)
    assert res["anchors_vox"].shape == (8, 3)
    assert (res["anchors_vox"] >= 0).all() and (res["anchors_vox"] <= 31).all()
    assert 0 <= res["texture"].min() and res["texture"].max() <= 1
    out = save_anchor_texture_figure(model, image, tmp_path / "anchors.png", label=label, config=cfg,
                                     spacing=(3.0, 0.8, 0.8))
    assert imread(str(out)).shape[1] > 400
    # a variant without anchors and LSPM still draws (and says so)
    bare = build_model(load_config("demo", overrides=["model.use_anchors=false", "model.use_lspm=false"]))
    assert anchors_and_texture(bare, image, roi_size=(32, 32, 32))["anchors_vox"] is None
    save_anchor_texture_figure(bare, image, tmp_path / "bare.png")
    assert (tmp_path / "bare.png").is_file()


def test_save_case_figures_from_files(tmp_path):
    import nibabel as nib

    from lightmedseg.checkpoint import save_model
    from lightmedseg.viz import save_case_figures

    torch.manual_seed(0)
    cfg = load_config("demo", overrides=["infer.roi_size=[32,32,32]"])
    cfg["labels"] = {"background": 0, "NCR": 1, "ED": 2, "ET": 4}
    save_model(tmp_path / "run" / "model_best.safetensors", build_model(cfg), cfg)
    image, label, _ = _case()
    aff = np.diag([0.8, 0.8, 3.0, 1.0])
    files = []
    for c in range(4):
        files.append(tmp_path / f"k_{c:04d}.nii.gz")
        nib.save(nib.Nifti1Image(image[c].transpose(2, 1, 0).copy(), aff), str(files[-1]))
    nib.save(nib.Nifti1Image(label.transpose(2, 1, 0).astype(np.uint8), aff), str(tmp_path / "k.nii.gz"))
    out = save_case_figures(tmp_path / "run", files, tmp_path / "figs", label_file=tmp_path / "k.nii.gz")
    assert out["overlay"].name == "k_overlay.png" and out["anchors"].name == "k_anchors.png"
    assert all(imread(str(p)).shape[1] > 200 for p in out.values())


def test_foreground_box_is_the_bounding_box_grown_by_the_margin():
    from lightmedseg.viz.overlays import foreground_box

    label = np.zeros((10, 40, 50), np.int16)
    label[3:6, 10:21, 30:36] = 2
    label[4, 25, 12] = 1  # a second structure widens the box
    assert foreground_box(label, (1.0, 1.0, 1.0), margin_mm=0) == (slice(2, 7), slice(9, 27), slice(11, 37))  # >= 1 voxel
    # 5 mm: 1 slice of 5 mm, 4 voxels of 1.25 mm in-plane; clipped at the volume's edges
    assert foreground_box(label, (5.0, 1.25, 1.25), margin_mm=5) == (slice(2, 7), slice(6, 30), slice(8, 40))
    assert foreground_box(label, (1.0, 1.0, 1.0), margin_mm=100) == (slice(0, 10), slice(0, 40), slice(0, 50))
    empty = np.zeros((4, 5, 6), np.int16)
    assert foreground_box(empty) == (slice(0, 4), slice(0, 5), slice(0, 6))  # nothing segmented: whole volume


def test_preview_slices_spread_over_the_segmented_ones():
    from lightmedseg.viz.preview import preview_slices

    label = np.zeros((20, 4, 4), np.int16)
    label[5:12, 1, 1] = 3
    assert preview_slices(label, 4) == [5, 7, 9, 11]
    assert preview_slices(label[:6], 4) == [5]
    assert preview_slices(np.zeros((9, 2, 2)), 4) == [4]


def test_predict_preview_writes_one_png_per_case(tmp_path):
    import nibabel as nib

    from lightmedseg.checkpoint import save_model
    from lightmedseg.inference.pipeline import predict

    torch.manual_seed(0)
    cfg = load_config("demo", overrides=["infer.roi_size=[32,32,32]", "model.in_channels=1"])
    cfg["labels"] = {"background": 0, "RV": 1, "Myo": 2, "LV": 3}
    save_model(tmp_path / "run" / "model_best.safetensors", build_model(cfg), cfg)

    def bright_is_lv(x: torch.Tensor) -> torch.Tensor:
        v = x[:, :1]
        return torch.cat([0.5 - v, v.new_full(v.shape, -5.0), v.new_full(v.shape, -5.0), v - 0.5], dim=1) * 20

    (tmp_path / "in").mkdir()
    for name in ("a", "b"):
        data = np.ones((40, 36, 9), np.float32)
        data[12:20, 10:18, 3:6] = 100  # a small bright "LV" in a large field
        nib.save(nib.Nifti1Image(data, np.diag([1.5, 1.5, 8.0, 1.0])), str(tmp_path / "in" / f"{name}.nii.gz"))
    report = predict(tmp_path / "in", tmp_path / "out", tmp_path / "run", device="cpu", progress=False,
                     forward_fn=bright_is_lv, preview=True, log=lambda m: None)
    assert [p.name for p in report.previews] == ["a.preview.png", "b.preview.png"]
    pixels = imread(str(report.previews[0]))
    assert pixels.ndim == 3 and pixels[..., :3].std() > 0.01
    out = tmp_path / "single" / "seg.nii.gz"
    single = predict(tmp_path / "in" / "a.nii.gz", out, tmp_path / "run", device="cpu", progress=False,
                     forward_fn=bright_is_lv, preview=True, log=lambda m: None)
    assert single.previews == [tmp_path / "single" / "seg.preview.png"]



def _row_label_fits(fig) -> bool:
    """Each row's label is no taller than its panel, and no two labels overlap."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    rows = [ax for ax in fig.axes if ax.get_ylabel()]
    extents = [ax.yaxis.label.get_window_extent(renderer) for ax in rows]
    return (all(e.height <= ax.get_window_extent(renderer).height for e, ax in zip(extents, rows))
            and not any(a.overlaps(b) for a, b in zip(extents, extents[1:])))


def test_cropped_overlays_show_the_foreground_box_and_row_labels_fit_their_rows(monkeypatch):
    """Issue 29: the case figures (demo, ``save_case_figures``) crop every panel to the foreground box, and a
    row's label is two short lines that fit beside its cropped panel. The earlier one-line label
    (``patient089_frame01  axial slice 5``, 236 px) stood taller than a heart's square crop (204 px)."""
    import lightmedseg.viz.overlays as overlays

    figures = []
    monkeypatch.setattr(overlays, "_save", lambda fig, out: figures.append(fig) or out)
    spacing = (10.0, 1.5625, 1.5625)  # ACDC
    image = np.random.default_rng(0).random((10, 216, 256)).astype(np.float32)
    label = np.zeros(image.shape, np.int16)
    label[3:7, 100:140, 90:130] = 3  # a heart-sized structure, ~10% of the slice's width
    save_overlay_figure(image, label, label, "unused.png", n_slices=3, spacing=spacing, crop_margin_mm=10)
    box = overlays.foreground_box(label, spacing, 10)
    rows = [ax for ax in figures[0].axes if ax.get_ylabel()]
    assert len(rows) == 3 and _row_label_fits(figures[0])
    assert all(ax.images[0].get_array().shape[:2] == (box[1].stop - box[1].start, box[2].stop - box[2].start)
               for ax in rows)
    # one row per patient, named: the cropped volumes of three patients
    crop = (slice(None), *box[1:])
    cases = [OverlayCase(image[crop], label[crop], label[crop], name=f"patient{n:03d}_frame01", spacing=spacing)
             for n in (89, 90, 91)]
    save_cases_figure(cases, "unused.png")
    assert _row_label_fits(figures[1])
