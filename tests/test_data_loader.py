"""Preprocessing (normalisation, crop, restore) and the training loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightmedseg.config import load_config
from lightmedseg.data.cases import load_preprocessed_case
from lightmedseg.training.loader import make_train_loader
from lightmedseg.data.io import read_label
from lightmedseg.data.preprocess import PreprocessInfo, preprocess_case, preprocess_image, restore_to_original
from lightmedseg.data.synth import make_synthetic_dataset

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("s") / "ds", num_cases=4, seed=3, shape=(32, 32, 32))


def _cfg(**data):
    cfg = load_config("demo", overrides=["data.patch_size=[24,24,24]", "train.iterations_per_epoch=2"])
    cfg["data"].update(data)
    return cfg


def test_zscore_over_nonzero_and_crop():
    rng = np.random.default_rng(0)
    img = np.zeros((2, 10, 12, 14), np.float32)
    img[:, 2:7, 3:9, 4:13] = rng.normal(50, 7, (2, 5, 6, 9))
    label = np.zeros((10, 12, 14), np.int16)
    label[3, 4, 5] = 2
    out, lab, info = preprocess_case(img, label, {"normalization": "zscore_nonzero", "crop_nonzero": True})
    assert out.shape == (2, 5, 6, 9) and lab.shape == (5, 6, 9) and lab[1, 1, 1] == 2
    assert info.bbox_start == (2, 3, 4) and info.bbox_end == (7, 9, 13)
    assert np.allclose(out.reshape(2, -1).mean(1), 0, atol=1e-4)
    assert np.allclose(out.reshape(2, -1).std(1), 1, atol=1e-3)
    restored = restore_to_original(lab, info)
    assert np.array_equal(restored, label)
    probs = restore_to_original(np.ones((3, 5, 6, 9)), PreprocessInfo.from_dict(info.to_dict()))
    assert probs.shape == (3, 10, 12, 14) and probs.sum() == 3 * 5 * 6 * 9


def test_percentile_clip_rescale():
    img = np.linspace(0, 1000, 20 * 20 * 10, dtype=np.float32).reshape(1, 10, 20, 20)
    img[0, 0, 0, 0] = 1e6  # outlier must be clipped
    out, info = preprocess_image(img, {"normalization": "percentile_clip_01", "crop_nonzero": False})
    assert out.min() == 0.0 and out.max() == 1.0 and out.shape == img.shape
    assert info.bbox_start == (0, 0, 0) and info.original_shape == (10, 20, 20)
    assert 0.4 < np.median(out) < 0.6  # outlier did not squash the range


def test_restore_rejects_wrong_shape():
    info = PreprocessInfo((4, 4, 4), (1, 1, 1), (3, 3, 3), "none")
    with pytest.raises(ValueError, match="cropped shape"):
        restore_to_original(np.zeros((3, 3, 3)), info)


def test_load_preprocessed_case_maps_labels_to_indices(synth):
    case = load_preprocessed_case(synth, "synth_000", _cfg())
    raw, _ = read_label(synth / "labelsTr" / "synth_000.nii.gz")
    assert case["label"].dtype == np.int64 and set(np.unique(case["label"])) == {0, 1, 2, 3}
    restored = restore_to_original(case["label"], case["info"])
    # Value 4 (ET) becomes class index 3; everything else keeps its value.
    assert np.array_equal(np.array([0, 1, 2, 4])[restored], raw)
    assert case["geometry"].shape == (32, 32, 32)


def test_loader_batches_and_padding(synth):
    cfg = _cfg(patch_size=[40, 16, 16])  # larger than the cropped volume along Z -> padded
    loader = make_train_loader(synth, ["synth_000", "synth_001"], cfg, batch_size=2, seed=0)
    batches = list(loader)
    assert len(batches) == 2
    b = batches[0]
    assert b["image"].shape == (2, 4, 40, 16, 16) and b["image"].dtype == torch.float32
    assert b["label"].shape == (2, 1, 40, 16, 16) and b["label"].dtype == torch.int64
    assert int(b["label"].max()) <= 3 and int(b["label"].min()) >= 0


def test_foreground_oversampling(synth):
    cfg = _cfg(foreground_oversample=1.0, augment={}, patch_size=[8, 8, 8])
    cfg["train"]["iterations_per_epoch"] = 6
    loader = make_train_loader(synth, ["synth_000", "synth_001", "synth_002"], cfg, batch_size=2, seed=1)
    assert all((b["label"].flatten(1) > 0).any(1).all() for b in loader)
    cfg["data"]["foreground_oversample"] = 0.0
    loader = make_train_loader(synth, ["synth_000", "synth_001", "synth_002"], cfg, batch_size=2, seed=1)
    fg = [bool(x) for b in loader for x in (b["label"].flatten(1) > 0).any(1)]
    assert not all(fg)


def test_loader_is_seeded_and_sharded(synth, tmp_path):
    cfg = _cfg(cache="disk", cache_dir=str(tmp_path / "cache"))
    ids = ["synth_000", "synth_001", "synth_002", "synth_003"]
    a = [b["image"] for b in make_train_loader(synth, ids, cfg, 1, seed=7)]
    b = [b["image"] for b in make_train_loader(synth, ids, cfg, 1, seed=7)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert any((tmp_path / "cache").iterdir())
    r0 = make_train_loader(synth, ids, cfg, 1, seed=7, rank=0, world_size=2).dataset.data
    r1 = make_train_loader(synth, ids, cfg, 1, seed=7, rank=1, world_size=2).dataset.data
    assert {d["case_id"] for d in r0}.isdisjoint({d["case_id"] for d in r1})
    assert len(r0) + len(r1) == 4


def test_disk_cache_defaults_to_node_local_tmpdir(synth, tmp_path, monkeypatch):
    from lightmedseg.training.loader import default_cache_dir

    monkeypatch.setenv("TMPDIR", str(tmp_path / "node"))
    where = default_cache_dir(synth)
    assert where.parent == tmp_path / "node" / "lightmedseg-cache" and where.name.startswith(synth.name)
    assert default_cache_dir(synth.parent / "other" / synth.name) != where  # same name, other dataset
    list(make_train_loader(synth, ["synth_000"], _cfg(cache="disk"), 1, seed=7))
    assert any(where.iterdir()) and not (synth.parent / f"{synth.name}_cache").exists()


def test_loader_rejects_mismatched_model(synth):
    cfg = _cfg()
    cfg["model"]["num_classes"] = 5
    with pytest.raises(ValueError, match="num_classes"):
        make_train_loader(synth, ["synth_000"], cfg, 1, seed=0)
    with pytest.raises(ValueError, match="not in imagesTr"):
        make_train_loader(synth, ["nope"], _cfg(), 1, seed=0)


def test_flip_augmentation_applies(synth):
    # Patch = whole cropped volume, so the crop is the identity and only the flips change the data.
    case = load_preprocessed_case(synth, "synth_001", _cfg())
    shape = list(case["label"].shape)
    cfg = _cfg(patch_size=shape, augment={"flip": {"prob": 1.0}})
    cfg["train"]["iterations_per_epoch"] = 1
    batch = next(iter(make_train_loader(synth, ["synth_001"], cfg, 1, seed=0)))
    flipped = case["label"][::-1, ::-1, ::-1]
    assert np.array_equal(batch["label"][0, 0].numpy(), flipped)
    assert not np.array_equal(flipped, case["label"])


def _one_slice_dataset(root):
    """One case whose foreground (a square) lies in a single Z slice."""
    from lightmedseg.data.io import ImageGeometry
    from lightmedseg.data.layout import DatasetWriter

    image = np.ones((1, 8, 32, 32), np.float32)
    label = np.zeros((8, 32, 32), np.int16)
    label[4, 8:24, 8:24] = 1
    writer = DatasetWriter(root, ["MRI"], {"background": 0, "fg": 1})
    writer.write_case("c0", image, label, ImageGeometry.from_spacing((8, 32, 32), (1, 1, 1)))
    writer.finish("one-slice", "test")
    return root


@pytest.mark.parametrize("axes", ["auto", "all"])
def test_rotation_in_plane_for_thin_patches(tmp_path, axes):
    ds = _one_slice_dataset(tmp_path / "ds")
    cfg = _cfg(patch_size=[8, 32, 32], normalization="none", crop_nonzero=False,
               augment={"rotate": {"prob": 1.0, "degrees": 40, "axes": axes}})
    cfg["model"].update(in_channels=1, num_classes=2)
    cfg["train"]["iterations_per_epoch"] = 4
    slices = [set(np.nonzero(b["label"][0, 0].numpy().any(axis=(1, 2)))[0].tolist())
              for b in make_train_loader(ds, ["c0"], cfg, 1, seed=5)]
    if axes == "auto":  # 8 slices vs 32 in-plane: ACDC-like, rotate within the slice only
        assert all(s == {4} for s in slices)
    else:
        assert any(len(s) > 1 for s in slices)


def test_inplane_scaling_keeps_slices_and_labels(tmp_path):
    # Scaling on a thick-slice patch acts within each slice: the foreground stays in slice 4, its area
    # changes, and nearest-neighbour resampling keeps the label values.
    ds = _one_slice_dataset(tmp_path / "ds")
    cfg = _cfg(patch_size=[8, 32, 32], normalization="none", crop_nonzero=False,
               augment={"scale": {"prob": 1.0, "range": [0.6, 0.8]}})
    cfg["model"].update(in_channels=1, num_classes=2)
    cfg["train"]["iterations_per_epoch"] = 3
    for batch in make_train_loader(ds, ["c0"], cfg, 1, seed=3):
        label = batch["label"][0, 0].numpy()
        assert set(np.nonzero(label.any(axis=(1, 2)))[0].tolist()) == {4}
        assert set(np.unique(label).tolist()) <= {0, 1}
        assert 0 < (label == 1).sum() < 16 * 16  # zoomed out: smaller than the 16 x 16 square


def test_intensity_augmentations_change_only_the_image(synth):
    case = load_preprocessed_case(synth, "synth_001", _cfg())
    shape = list(case["label"].shape)
    cfg = _cfg(patch_size=shape, augment={"gamma": {"prob": 1.0}, "brightness": {"prob": 1.0},
                                          "blur": {"prob": 1.0}})
    cfg["train"]["iterations_per_epoch"] = 1
    batch = next(iter(make_train_loader(synth, ["synth_001"], cfg, 1, seed=0)))
    assert np.array_equal(batch["label"][0, 0].numpy(), case["label"])
    image = batch["image"][0].numpy()
    assert image.shape == case["image"].shape and np.isfinite(image).all()
    assert not np.allclose(image, case["image"], atol=1e-3)


def test_unknown_augmentation_axes_is_refused(synth):
    cfg = _cfg(augment={"scale": {"axes": "diagonal"}})
    with pytest.raises(ValueError, match="axes 'diagonal'"):
        make_train_loader(synth, ["synth_001"], cfg, 1, seed=0)
