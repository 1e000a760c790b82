"""The config schema: one dataclass per section, and every default of ``data``, ``train`` and ``infer``.

A config is a nested mapping with four sections: ``model`` (keyword arguments of
:class:`lightmedseg.model.LightMedSeg`, or a MONAI baseline via ``model.architecture``; its defaults are the
constructor's), ``data`` (:class:`DataConfig`), ``train`` (:class:`TrainConfig`; ``train.loss`` is the keyword
arguments of ``LightMedSegLoss``, its defaults the loss's) and ``infer`` (:class:`InferConfig`), plus the
dataset-derived top-level keys training records (``labels``, ``regions``, ...; :class:`Config`).

The serialised form (YAML presets, a run folder's ``config.yaml``, the JSON inside checkpoints and model files)
is the plain dict; :meth:`Section.from_dict` / :meth:`Section.to_dict` convert between the two so that
``Config.from_dict(d).to_dict() == d`` to the key order: keys a dict leaves out stay out (reading them gives
the default here), and keys this version does not know (kept in an older run's stored config) come back.
``from_dict`` does not check types: :func:`lightmedseg.config.typed_config` checks, then converts.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Mapping, TypeVar, Union

# Collective timeout (train.dist_timeout_minutes): a rank that does not join or answer fails the job in minutes.
DEFAULT_DIST_TIMEOUT_MINUTES = 15.0

# Augmentation defaults (nnU-Net-like probabilities and ranges); each ``data.augment`` entry may be a bool or
# a dict overriding these. Only the entries a config lists are applied. ``axes: auto`` acts within each slice
# on thick-slice patches (e.g. ACDC's 16 x 160 x 160) and on all axes otherwise.
AUGMENT_DEFAULTS: dict[str, dict[str, Any]] = {
    "flip": {"prob": 0.5},
    "rotate": {"prob": 0.2, "degrees": 15.0, "axes": "auto"},
    "scale": {"prob": 0.2, "range": [0.7, 1.4], "axes": "auto"},
    "noise": {"prob": 0.15, "std": 0.1},
    "gamma": {"prob": 0.3, "range": [0.7, 1.5]},
    "brightness": {"prob": 0.15, "range": [0.75, 1.25]},
    "blur": {"prob": 0.2, "sigma": [0.5, 1.0]},
}

S = TypeVar("S", bound="Section")


class Section:
    """Base of the section dataclasses: typed attributes, and the round trip to the serialised dict.

    An object made by :meth:`from_dict` remembers the keys of its dict (in order, unknown ones with their
    values); :meth:`to_dict` writes those keys, then any field assigned since. An object made in code
    (``TrainConfig()``) writes every field.
    """

    OMIT_NONE: ClassVar[bool] = False  # a fresh object leaves out fields that are None (Config's dataset keys)

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        keys = self.__dict__.get("_keys")
        if keys is not None and name not in keys and name in _field_names(type(self)):
            keys.append(name)  # assigned after from_dict: written by to_dict

    @classmethod
    def from_dict(cls: type[S], raw: Mapping[str, Any] | None) -> S:
        """The typed form of the (already checked) section ``raw``; absent keys read as the schema default."""
        raw = {} if raw is None else raw
        names = _field_names(cls)
        kwargs: dict[str, Any] = {}
        for name, hint in _hints(cls).items():
            sub = _section_type(hint)
            if sub is not None:  # nested sections always typed, so reading their fields gives the defaults
                kwargs[name] = sub.from_dict(raw.get(name))
            elif name in raw:
                kwargs[name] = copy.deepcopy(raw[name])
        obj = cls(**kwargs)
        object.__setattr__(obj, "_keys", list(raw))
        object.__setattr__(obj, "_extra", {k: copy.deepcopy(v) for k, v in raw.items() if k not in names})
        return obj

    def to_dict(self) -> dict[str, Any]:
        """The serialised form: for an object from :meth:`from_dict`, the dict it came from (with any changes)."""
        keys = self.__dict__.get("_keys")
        extra = self.__dict__.get("_extra", {})
        names = _field_names(type(self))
        if keys is None:  # made in code: every field
            keys = [n for n in names if not (self.OMIT_NONE and getattr(self, n) is None)]
        out: dict[str, Any] = {}
        for key in keys:
            out[key] = _plain(getattr(self, key)) if key in names else copy.deepcopy(extra[key])
        for name in names:  # nested sections a dict left out but code has since written into
            value = getattr(self, name)
            if name not in out and isinstance(value, Section) and (sub := value.to_dict()):
                out[name] = sub
        return out


def _plain(value: Any) -> Any:
    return value.to_dict() if isinstance(value, Section) else copy.deepcopy(value)


@functools.lru_cache(maxsize=None)
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {name: hints[name] for name in _field_names(cls)}


def _section_type(hint: Any) -> type[Section] | None:
    return hint if isinstance(hint, type) and issubclass(hint, Section) else None


@dataclass
class DataConfig(Section):
    """``data``: preprocessing (:mod:`lightmedseg.data.preprocess`) and patch sampling (the training loader)."""

    patch_size: list[int] = field(default_factory=lambda: [128, 128, 128])  # (d, h, w) training crop
    normalization: Literal["zscore_nonzero", "percentile_clip_01", "none"] = "none"
    crop_nonzero: bool = False  # crop to the bounding box of non-zero voxels (brain) before normalising
    foreground_oversample: float = 0.33  # probability that a patch is centred on a foreground voxel
    augment: dict[str, Union[bool, dict[str, Any]]] = field(default_factory=dict)  # names of AUGMENT_DEFAULTS
    regions: Union[str, None] = None  # informative: the region set of the dataset (brats, acdc)
    cache: Literal[None, "none", "memory", "disk"] = None  # keep preprocessed cases: nowhere, in RAM, on disk
    cache_dir: Union[str, None] = None  # disk cache folder (default: node-local $TMPDIR/lightmedseg-cache)


@dataclass
class OptimizerConfig(Section):
    """``train.optimizer``: AdamW with the paper's settings (Section 4), or SGD with Nesterov momentum
    (nnU-Net's recipe, issue 28: ``{name: sgd, lr: 1.0e-2, weight_decay: 3.0e-5}`` with the ``poly`` schedule).

    ``betas`` apply to AdamW only, ``momentum`` and ``nesterov`` to SGD only.
    """

    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = 2.0e-4
    weight_decay: float = 1.0e-5
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    momentum: float = 0.99  # nnU-Net's SGD momentum
    nesterov: bool = True


@dataclass
class SchedulerConfig(Section):
    """``train.scheduler``: linear warm-up, then cosine annealing (``warmup_cosine``, the paper's) or polynomial
    decay ``lr * (1 - t / T)^exponent`` (``poly``, nnU-Net's), stepped per iteration; ``t_max_epochs`` is T,
    counted from the end of the warm-up.

    ``eta_min`` applies to the cosine only, ``exponent`` to poly only.
    """

    name: Literal["warmup_cosine", "poly"] = "warmup_cosine"
    warmup_epochs: float = 5
    t_max_epochs: float = 100
    eta_min: float = 1.0e-9
    exponent: float = 0.9  # nnU-Net's poly exponent


@dataclass
class TrainConfig(Section):
    """``train``: the paper's recipe (BraTS protocol) and the run's budget and machinery.

    ``loss`` is the keyword arguments of :class:`lightmedseg.training.loss.LightMedSegLoss` (its defaults).
    """

    epochs: int = 300
    iterations_per_epoch: int = 250  # optimiser steps per epoch (nnU-Net's 250)
    batch_size: int = 8  # global: divided among the DDP processes
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    loss: dict[str, Any] = field(default_factory=dict)  # checked against LightMedSegLoss (validation)
    amp: Union[str, bool, None] = "auto"  # auto, bf16, fp16, none
    grad_clip: Union[float, None] = 12.0  # max gradient norm; null or 0: no clipping
    ema_decay: Union[float, None] = None  # moving average of the weights for validation and model files (training.ema)
    val_every: int = 10  # validate every N epochs (and after the last)
    seed: int = 42
    deterministic: bool = False
    num_workers: int = 2  # data-loader worker processes per rank
    fast: bool = True  # the exact re-associated forward (lightmedseg.fast) where it applies
    progress: bool = True  # tqdm bar on rank 0
    tensorboard: bool = True
    val_max_cases: Union[int, None] = None  # validate on the first N validation cases only
    validate_on_stop: bool = True  # validate the model when a budget stop ends a run mid-epoch
    snapshots: bool = False  # also keep each validated model as snapshots/model_step{N}.safetensors
    val_roi_size: Union[list[int], None] = None  # deprecated: validation window other than infer.roi_size
    device: Union[str, None] = None  # auto (null), cpu, cuda, cuda:N
    dist_timeout_minutes: float = DEFAULT_DIST_TIMEOUT_MINUTES
    init_weights: Union[str, None] = None  # recorded by training: where --init-weights came from


@dataclass
class InferConfig(Section):
    """``infer``: the sliding window of prediction and of validation during training."""

    roi_size: Union[list[int], None] = None  # null: data.patch_size (resolved when the config is loaded)
    overlap: float = 0.5
    mode: Literal["gaussian", "constant"] = "gaussian"
    sw_batch_size: int = 1
    tta: Union[bool, str] = False  # test-time augmentation: true/"mirror", "rot90" (inference.tta); never in validation

    def window(self, data: DataConfig) -> list[int]:
        """The sliding-window size: ``roi_size``, or ``data.patch_size`` when unset (the one place this rule
        is written; :func:`lightmedseg.config.validate_config` resolves it when a config is loaded)."""
        return list(self.roi_size if self.roi_size is not None else data.patch_size)


@dataclass
class Config(Section):
    """The whole config. ``model`` is the keyword arguments of ``LightMedSeg.__init__`` plus ``architecture``;
    the keys after ``infer`` are written by training from dataset.json (:mod:`lightmedseg.training.setup`)."""

    OMIT_NONE: ClassVar[bool] = True

    name: Union[str, None] = None
    variant: Union[str, None] = None
    model: dict[str, Any] = field(default_factory=dict)  # checked against the constructor (validation)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    infer: InferConfig = field(default_factory=InferConfig)
    labels: Union[dict[str, int], None] = None
    regions: Union[dict[str, list[int]], None] = None
    label_convention: Union[str, None] = None
    channel_names: Union[list[str], None] = None
    geometry: Union[dict[str, Any], None] = None

    @property
    def window(self) -> list[int]:
        """The prediction window (:meth:`InferConfig.window`)."""
        return self.infer.window(self.data)


SECTIONS = ("model", "data", "train", "infer")
