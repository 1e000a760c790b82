"""Training loader: canonical dataset -> preprocessed cases -> random patches with augmentation.

Per case (deterministic, cacheable): read the channels and the label, crop / normalise
(:mod:`lightmedseg.data.preprocess`), map label values to contiguous class indices 0..N-1 in the order
of :func:`lightmedseg.data.labels.label_values`, pad to at least the patch size.
Per sample (random, MONAI transforms): a crop of ``data.patch_size`` whose centre is a foreground
voxel with probability ``data.foreground_oversample``, then the augmentations of ``data.augment``
(flips on every axis, rotations, scaling, Gaussian noise, gamma, brightness, blur; all MONAI transforms).

``data.cache``: ``null`` (re-read every time), ``memory`` (MONAI ``CacheDataset``) or ``disk``
(MONAI ``PersistentDataset`` in ``data.cache_dir``, default :func:`default_cache_dir` on node-local
``$TMPDIR``, keyed by the preprocessing settings, so the input folder is never written to and each node
fills its own cache once; MONAI writes each entry atomically, so ranks sharing a node do not collide).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

import torch
from monai import transforms as T
from monai.data import CacheDataset, DataLoader, Dataset, PersistentDataset

from lightmedseg.config import AUGMENT_DEFAULTS, Config, DataConfig, check_augment, typed_config
from lightmedseg.data import labels as L
from lightmedseg.data.errors import DataError
from lightmedseg.data.cases import data_section, load_preprocessed_case
from lightmedseg.data.layout import list_cases, load_dataset_json


def default_cache_dir(dataset_dir: str | os.PathLike) -> Path:
    """Node-local disk cache of a dataset: ``$TMPDIR/lightmedseg-cache/<name>-<hash of its absolute path>``.

    ``$TMPDIR`` is the job's node-local scratch on most SLURM clusters (``tempfile.gettempdir()``, i.e.
    ``/tmp``, without it); the hash keeps two datasets of the same name apart.
    """
    path = Path(dataset_dir).resolve()
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:10]
    return Path(os.environ.get("TMPDIR") or tempfile.gettempdir()) / "lightmedseg-cache" / f"{path.name}-{digest}"


class LoadCased(T.Transform):
    """MONAI-style transform: ``{"case_id", ...}`` -> ``{"image": (C,...), "label": (1,...)}``."""

    def __init__(self, dataset_dir: str | os.PathLike, config: Mapping | Config | DataConfig):
        self.dataset_dir = str(dataset_dir)
        self.data = data_section(config)

    def __call__(self, item: Mapping) -> dict:
        case = load_preprocessed_case(self.dataset_dir, item["case_id"], self.data)
        if case["label"] is None:
            raise DataError(f"{self.dataset_dir}: case {item['case_id']!r} has no label; training needs labels")
        return {"case_id": item["case_id"], "image": case["image"], "label": case["label"][None]}


class _CacheInThisThread(CacheDataset):
    """MONAI's ``CacheDataset`` filled in the calling thread, in the same order: MONAI's thread pool, when a case
    fails, leaves its worker loading the next one while the error ends the process, which then aborts
    (SIGABRT) instead of exiting with the error."""

    def _fill_cache(self, indices=None) -> list:
        return [self._load_cache_item(i) for i in (range(self.cache_num) if indices is None else indices)]


def case_error(exc: BaseException) -> DataError | None:
    """The :class:`DataError` behind a loader failure (a label value outside the declared set, a label that does
    not fit its image), or None: MONAI wraps a transform's error in ``RuntimeError("applying transform ...")``,
    and a DataLoader worker's error arrives as text (torch raises it again with the worker's traceback)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, DataError):
            return seen
        seen = seen.__cause__ or seen.__context__
    found = re.search(r"^lightmedseg\.data\.errors\.DataError: (.+)$", str(exc), re.MULTILINE)
    return DataError(found.group(1)) if found else None


def _augment_cfg(data_cfg: DataConfig) -> dict:
    """The enabled augmentations of ``data.augment`` with their defaults filled in (names checked by the config's
    :func:`~lightmedseg.config.check_augment`, also for a config that did not come through ``load_config``)."""
    augment = data_cfg.augment
    check_augment(augment)
    out = {}
    for name, value in augment.items():
        if value is True or isinstance(value, Mapping):
            out[name] = {**AUGMENT_DEFAULTS[name], **(value if isinstance(value, Mapping) else {})}
    return out


def _augment_axes(setting: str, patch: Sequence[int]) -> str:
    """``inplane`` or ``all`` for an ``axes`` setting: ``auto`` is ``inplane`` when the patch has fewer than
    half as many slices as in-plane voxels (thick-slice data, rotating or scaling across slices would mix
    5-10 mm apart slices)."""
    if setting not in ("auto", "inplane", "all"):
        raise DataError(f"data.augment axes {setting!r} is unknown; expected 'auto', 'inplane' or 'all'")
    if setting == "auto":
        return "inplane" if 2 * patch[0] < min(patch[1:]) else "all"
    return setting


def train_transforms(data_cfg: Mapping | DataConfig) -> tuple[list, list]:
    """(deterministic transforms after loading, random transforms) for training patches, from the ``data`` section."""
    data_cfg = data_section(data_cfg)
    patch = list(data_cfg.patch_size)
    fg = data_cfg.foreground_oversample
    if not 0.0 <= fg <= 1.0:
        raise DataError(f"data.foreground_oversample must lie in [0, 1], got {fg}")
    keys = ["image", "label"]
    deterministic = [T.SpatialPadd(keys, spatial_size=patch, mode="constant")]
    rand: list = [
        T.RandCropByPosNegLabeld(keys, label_key="label", spatial_size=patch, pos=fg, neg=1.0 - fg,
                                 num_samples=1, allow_smaller=False),
    ]
    aug = _augment_cfg(data_cfg)
    if "flip" in aug:
        rand += [T.RandFlipd(keys, prob=aug["flip"]["prob"], spatial_axis=a) for a in range(3)]
    if "rotate" in aug:
        r = math.radians(float(aug["rotate"]["degrees"]))
        axes = _augment_axes(aug["rotate"]["axes"], patch)
        # MONAI's range_x rotates about the first spatial axis (Z), i.e. within each (Y, X) slice
        # (checked by tests/test_data_loader.py::test_rotation_in_plane_for_thin_patches).
        ranges = {"range_x": r} if axes == "inplane" else {"range_x": r, "range_y": r, "range_z": r}
        rand.append(T.RandRotated(keys, prob=aug["rotate"]["prob"], keep_size=True,
                                  mode=("bilinear", "nearest"), padding_mode="zeros", **ranges))
    if "scale" in aug:
        lo, hi = (float(v) for v in aug["scale"]["range"])
        inplane = _augment_axes(aug["scale"]["axes"], patch) == "inplane"
        rand.append(T.RandZoomd(keys, prob=aug["scale"]["prob"], min_zoom=(1.0, lo, lo) if inplane else lo,
                                max_zoom=(1.0, hi, hi) if inplane else hi, keep_size=True,
                                mode=("trilinear", "nearest"), padding_mode="constant"))
    if "noise" in aug:
        rand.append(T.RandGaussianNoised("image", prob=aug["noise"]["prob"], std=aug["noise"]["std"]))
    if "blur" in aug:
        s_lo, s_hi = (float(v) for v in aug["blur"]["sigma"])
        rand.append(T.RandGaussianSmoothd("image", prob=aug["blur"]["prob"], sigma_x=(s_lo, s_hi),
                                          sigma_y=(s_lo, s_hi), sigma_z=(s_lo, s_hi)))
    if "brightness" in aug:  # multiplicative, as nnU-Net's brightness transform
        lo, hi = (float(v) for v in aug["brightness"]["range"])
        rand.append(T.RandScaleIntensityd("image", prob=aug["brightness"]["prob"], factors=(lo - 1.0, hi - 1.0)))
    if "gamma" in aug:
        rand.append(T.RandAdjustContrastd("image", prob=aug["gamma"]["prob"],
                                          gamma=tuple(float(v) for v in aug["gamma"]["range"]), retain_stats=True))
    rand.append(T.EnsureTyped(keys, data_type="tensor", dtype=[torch.float32, torch.int64], track_meta=False))
    rand.append(T.DeleteItemsd("case_id"))
    return deterministic, rand


def check_model_matches_dataset(dataset_dir: str | os.PathLike, meta: Mapping, config: Mapping | Config) -> None:
    """Refuse a ``model.in_channels`` / ``model.num_classes`` that differs from what dataset.json declares."""
    model = typed_config(config).model
    n_ch, n_cls = len(meta["channel_names"]), len(L.label_values(meta))
    if "in_channels" in model and int(model["in_channels"]) != n_ch:
        raise DataError(f"{dataset_dir}/dataset.json declares {n_ch} channels {list(meta['channel_names'].values())} "
                        f"but model.in_channels is {model['in_channels']} (preset or --set); to train this network "
                        f"on it, add --set model.in_channels={n_ch}")
    if "num_classes" in model and int(model["num_classes"]) != n_cls:
        raise DataError(f"{dataset_dir}/dataset.json declares {n_cls} label values {L.label_values(meta)} but "
                        f"model.num_classes is {model['num_classes']} (preset or --set); to train this network on it, "
                        f"add --set model.num_classes={n_cls}")


def make_train_loader(dataset_dir: str | os.PathLike, case_ids: Sequence[str], config: Mapping | Config,
                      batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> DataLoader:
    """A loader of ``{"image": (B, C, *patch) float32, "label": (B, 1, *patch) int64}`` batches.

    One pass yields ``train.iterations_per_epoch`` batches, sampling cases with replacement. With ``world_size > 1`` each rank draws only from
    its shard ``case_ids[rank::world_size]`` with seed ``seed + rank``.
    """
    dataset_dir = Path(dataset_dir)
    meta = load_dataset_json(dataset_dir)
    cfg = typed_config(config)
    check_model_matches_dataset(dataset_dir, meta, cfg)
    data_cfg = cfg.data
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} must lie in [0, world_size={world_size})")
    case_ids = list(case_ids)
    known = set(list_cases(dataset_dir, "Tr"))
    if unknown := [c for c in case_ids if c not in known]:
        raise DataError(f"{dataset_dir}: case IDs not in imagesTr: {unknown[:5]}")
    shard = case_ids[rank::world_size]
    if not shard:
        raise DataError(f"{len(case_ids)} training cases cannot be shared by {world_size} ranks")
    deterministic, rand = train_transforms(data_cfg)
    prep_key = {k: getattr(data_cfg, k) for k in ("normalization", "crop_nonzero", "patch_size")}
    items = [{"case_id": c, "prep": repr(sorted(prep_key.items()))} for c in shard]
    pre = [LoadCased(dataset_dir, data_cfg)] + deterministic
    cache = data_cfg.cache or "none"
    if cache == "memory":
        ds = _CacheInThisThread(items, T.Compose(pre + rand), progress=False)
    elif cache == "disk":
        cache_dir = Path(data_cfg.cache_dir or default_cache_dir(dataset_dir))
        ds = PersistentDataset(items, T.Compose(pre + rand), cache_dir=cache_dir)
    elif cache == "none":
        ds = Dataset(items, T.Compose(pre + rand))
    else:
        raise DataError(f"data.cache {cache!r} is unknown; expected null, 'memory' or 'disk'")
    ds.transform.set_random_state(seed=seed + rank)
    iters = cfg.train.iterations_per_epoch
    if iters < 1 or batch_size < 1:
        raise ValueError(f"train.iterations_per_epoch ({iters}) and batch_size ({batch_size}) must be >= 1")
    generator = torch.Generator().manual_seed(seed + rank)
    sampler = torch.utils.data.RandomSampler(ds, replacement=True, num_samples=iters * batch_size,
                                             generator=generator)
    workers = cfg.train.num_workers
    return DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=workers, drop_last=True,
                      generator=generator, persistent_workers=workers > 0)
