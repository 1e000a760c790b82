"""The typed configuration: its schema (where every default lives) and presets, YAML files under
``lightmedseg/presets`` merged with command-line overrides.

A config is a nested mapping with four sections: ``model`` (keyword arguments of
:class:`lightmedseg.model.LightMedSeg`, or a MONAI baseline via ``model.architecture``), ``data``
(preprocessing and sampling, :class:`DataConfig`), ``train`` (optimiser, schedule, budget,
:class:`TrainConfig`) and ``infer`` (sliding window, :class:`InferConfig`), plus the dataset-derived
top-level keys training records (``labels``, ``regions``, ...; :class:`Config`).

Where the defaults live: the dataclasses below for ``data``, ``train`` and ``infer``; the signature of
``LightMedSeg.__init__`` for ``model`` (not filled in: the constructor applies them) and of
``LightMedSegLoss.__init__`` for ``train.loss``. Code reads the filled config, never a default of its own.

:func:`load_config` (presets and ``--set``) and :func:`load_stored_config` (the config inside a run folder
or model file) both go through :func:`validate_config`: unknown keys and wrong types are refused with the
full dotted key and the nearest valid one (a stored config keeps keys this version does not know, since an
older version accepted them), defaults are filled in, and derived values are resolved (``infer.roi_size``
follows ``data.patch_size`` unless set).

A preset may name a parent with ``inherit: NAME`` and a network variant with ``variant: NAME`` (a file in
``presets/variants``); the child's values win. ``--set a.b=value`` overrides are parsed as YAML scalars.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import inspect
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Sequence, Union

import yaml

from lightmedseg.io_utils import json_plain

PRESET_DIR = Path(str(resources.files("lightmedseg") / "presets"))
VARIANT_DIR = PRESET_DIR / "variants"
# Collective timeout (train.dist_timeout_minutes): a rank that does not join or answer fails the job in minutes.
DEFAULT_DIST_TIMEOUT_MINUTES = 15.0


class ConfigError(ValueError):
    """A config key that does not exist, or a value of the wrong type; the message names the dotted key."""


# -- the schema: every default of data / train / infer is here ---------------------------------------------
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


@dataclass
class DataConfig:
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
class OptimizerConfig:
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
class SchedulerConfig:
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
class TrainConfig:
    """``train``: the paper's recipe (BraTS protocol) and the run's budget and machinery.

    ``loss`` is the keyword arguments of :class:`lightmedseg.training.loss.LightMedSegLoss` (its defaults).
    """

    epochs: int = 300
    iterations_per_epoch: int = 250  # optimiser steps per epoch (nnU-Net's 250)
    batch_size: int = 8  # global: divided among the DDP processes
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    loss: dict[str, Any] = field(default_factory=dict)  # checked against LightMedSegLoss (see _loss_fields)
    amp: Union[str, bool, None] = "auto"  # auto, bf16, fp16, none
    grad_clip: Union[float, None] = 12.0  # max gradient norm; null or 0: no clipping
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
class InferConfig:
    """``infer``: the sliding window of prediction and of validation during training."""

    roi_size: Union[list[int], None] = None  # null: data.patch_size (resolved when the config is loaded)
    overlap: float = 0.5
    mode: Literal["gaussian", "constant"] = "gaussian"
    sw_batch_size: int = 1
    tta: Union[bool, str] = False  # test-time augmentation: true/"mirror", "rot90" (inference.tta); never in validation


@dataclass
class Config:
    """The whole config. ``model`` is the keyword arguments of ``LightMedSeg.__init__`` plus ``architecture``;
    the keys after ``infer`` are written by training from dataset.json (:mod:`lightmedseg.training.setup`)."""

    name: Union[str, None] = None
    variant: Union[str, None] = None
    model: dict[str, Any] = field(default_factory=dict)  # checked against the constructor (see _model_fields)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    infer: InferConfig = field(default_factory=InferConfig)
    labels: Union[dict[str, int], None] = None
    regions: Union[dict[str, list[int]], None] = None
    label_convention: Union[str, None] = None
    channel_names: Union[list[str], None] = None
    geometry: Union[dict[str, Any], None] = None


SECTIONS = ("model", "data", "train", "infer")


@dataclass(frozen=True)
class _Field:
    hint: Any
    default: Any = None  # a zero-argument factory, or None: not filled in
    spec: Any = None  # a nested section: a dataclass type or a callable returning {name: _Field}


def _signature_fields(func: Any, skip: Sequence[str] = (), fill: bool = True) -> dict[str, _Field]:
    hints = typing.get_type_hints(func)
    out = {}
    for name, p in inspect.signature(func).parameters.items():
        if name == "self" or name in skip or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        default = (lambda v=p.default: copy.deepcopy(json_plain(v))) if fill and p.default is not p.empty else None
        out[name] = _Field(hints.get(name, Any), default)
    return out


def _model_fields() -> dict[str, _Field]:
    """``model``: the constructor options of LightMedSeg (also read by the baselines) plus ``architecture``.
    Not filled in: the constructor's defaults apply, and dataset.json gives in/out channels in training."""
    from lightmedseg.model.network import LightMedSeg

    return {"architecture": _Field(str), **_signature_fields(LightMedSeg.__init__, fill=False)}


def _loss_fields() -> dict[str, _Field]:
    from lightmedseg.training.loss import LightMedSegLoss

    return _signature_fields(LightMedSegLoss.__init__, skip=("num_classes",))


_SPECIAL = {("model",): _model_fields, ("train", "loss"): _loss_fields}


def _fields(spec: Any, path: tuple[str, ...]) -> dict[str, _Field]:
    if callable(spec) and not dataclasses.is_dataclass(spec):
        return spec()
    hints = typing.get_type_hints(spec)
    out = {}
    for f in dataclasses.fields(spec):
        sub = _SPECIAL.get(path + (f.name,))
        if sub is None and dataclasses.is_dataclass(hints[f.name]):
            sub = hints[f.name]
        factory = f.default_factory if f.default is dataclasses.MISSING else (lambda v=f.default: copy.deepcopy(v))
        out[f.name] = _Field(hints[f.name], factory, sub)
    return out


_NO = object()


def _match(value: Any, hint: Any) -> Any:
    """``value`` (numbers given as strings converted to float) if it fits ``hint``, else ``_NO``."""
    import collections.abc as abc
    import types

    if hint is Any:
        return json_plain(value)
    if hint is None or hint is type(None):
        return value if value is None else _NO
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        for arg in args:
            if (out := _match(value, arg)) is not _NO:
                return out
        return _NO
    if origin is Literal:
        return value if any(value == a and type(value) is type(a) for a in args) else _NO
    if hint is bool:
        return value if isinstance(value, bool) else _NO
    if hint is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _NO
    if hint is float:
        if isinstance(value, bool):
            return _NO
        if isinstance(value, (int, float)):
            return value
        try:  # YAML reads 1e-3 (no dot) as a string
            return float(value) if isinstance(value, str) else _NO
        except ValueError:
            return _NO
    if hint is str:
        return value if isinstance(value, str) else _NO
    if origin in (list, tuple, abc.Sequence) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return _NO
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                return _NO
            items = [_match(v, a) for v, a in zip(value, args)]
        else:
            items = [_match(v, args[0] if args else Any) for v in value]
        return _NO if any(i is _NO for i in items) else items
    if origin in (dict, abc.Mapping) or hint is dict:
        if not isinstance(value, Mapping):
            return _NO
        out = {k: _match(v, args[1] if args else Any) for k, v in value.items()}
        return _NO if any(v is _NO for v in out.values()) else out
    if isinstance(hint, type):
        return value if isinstance(value, hint) else _NO
    return json_plain(value)


def _describe(hint: Any) -> str:
    import types

    if hint is None or hint is type(None):
        return "null"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join("null" if a is None else repr(a) for a in args)
    if origin in (list, tuple) or str(origin) == "<class 'collections.abc.Sequence'>":
        return f"a list of {_describe(args[0])}" if args and args[-1] is not Ellipsis and len(args) == 1 else "a list"
    if origin in (dict,) or hint is dict:
        return "a mapping"
    return getattr(hint, "__name__", str(hint))


def _all_keys(spec: Any = Config, path: tuple[str, ...] = ()) -> list[str]:
    """Every dotted key of the schema (sections and leaves)."""
    out = []
    for name, f in _fields(spec, path).items():
        out.append(".".join(path + (name,)))
        if f.spec is not None:
            out += _all_keys(f.spec, path + (name,))
    return out


def nearest_key(dotted: str, siblings: Iterable[str]) -> str | None:
    """The valid key closest to an unknown ``dotted`` key: a sibling, else a key of that leaf name (or close
    to it) elsewhere in the same section, else the closest dotted key (difflib)."""
    parent, _, leaf = dotted.rpartition(".")
    if match := difflib.get_close_matches(leaf, list(siblings), n=1, cutoff=0.6):
        return f"{parent}.{match[0]}" if parent else match[0]
    every = _all_keys()
    section = dotted.split(".", 1)[0]
    by_leaf: dict[str, list[str]] = {}
    for key in every:
        by_leaf.setdefault(key.rpartition(".")[2], []).append(key)
    if match := difflib.get_close_matches(leaf, list(by_leaf), n=1, cutoff=0.6):
        keys = by_leaf[match[0]]
        return next((k for k in keys if k.startswith(section + ".")), keys[0])
    match = difflib.get_close_matches(dotted, every, n=1, cutoff=0.6)
    return match[0] if match else None


def _section(raw: Any, spec: Any, path: tuple[str, ...], strict: bool, fill: bool, top: bool = False) -> dict:
    """``raw`` checked against ``spec``; with ``fill`` the missing keys get their defaults (at the top level
    only the sections: the dataset-derived keys stay absent until training writes them)."""
    dotted = ".".join(path) or "the config"
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config {dotted}: expected a section of key: value settings, got {raw!r}")
    fields = _fields(spec, path)
    out: dict = {}
    for key, value in raw.items():
        name = ".".join(path + (str(key),))
        f = fields.get(key)
        if f is None:
            if strict:
                hint = nearest_key(name, fields)
                raise ConfigError(f"unknown config key {name!r}" + (f"; did you mean {hint!r}?" if hint else "")
                                  + f" (valid keys of {dotted}: {', '.join(fields)})")
            out[key] = copy.deepcopy(value)  # a stored config: a key an older version accepted
        elif f.spec is not None:
            out[key] = _section(value, f.spec, path + (key,), strict, fill)
        elif (checked := _match(value, f.hint)) is _NO:
            raise ConfigError(f"config {name} {value!r}: expected {_describe(f.hint)}")
        else:
            out[key] = checked
    if fill:
        for key, f in fields.items():
            if key not in out and f.spec is not None:
                out[key] = _section({}, f.spec, path + (key,), strict, fill)
            elif key not in out and f.default is not None and not top:
                out[key] = f.default()
    return out


def check_augment(augment: Mapping) -> None:
    """Refuse an unknown ``data.augment`` name or option (ConfigError naming the key and the nearest valid one)."""
    for name, value in augment.items():
        key = f"data.augment.{name}"
        if name not in AUGMENT_DEFAULTS:
            hint = nearest_key(key, AUGMENT_DEFAULTS)
            raise ConfigError(f"unknown config key {key!r}" + (f"; did you mean {hint!r}?" if hint else "")
                              + f" (augmentations: {', '.join(AUGMENT_DEFAULTS)})")
        for option in value if isinstance(value, Mapping) else ():
            if option not in AUGMENT_DEFAULTS[name]:
                hint = nearest_key(f"{key}.{option}", AUGMENT_DEFAULTS[name])
                raise ConfigError(f"unknown config key '{key}.{option}'" + (f"; did you mean {hint!r}?" if hint else "")
                                  + f" (options of {name}: {', '.join(AUGMENT_DEFAULTS[name])})")


def validate_config(raw: Mapping, strict: bool = True, fill: bool = True) -> dict:
    """The config ``raw`` checked against the schema, defaults filled in, derived values resolved.

    Args:
        raw: a nested mapping (a merged preset, or a stored config).
        strict: refuse unknown keys (presets, ``--set``); False keeps them (stored configs: a key an older
            version accepted must not stop its run folder from loading). Wrong types are always refused.
        fill: fill in defaults and derived values; False only checks (the settings given to a resumed run,
            which replace the stored ones key by key).
    Returns:
        a plain nested dict; top-level keys other than the four sections are kept only where present.
    Raises:
        ConfigError: naming the dotted key (and the nearest valid key for an unknown one).
    """
    out = _section(raw, Config, (), strict, fill, top=True)
    check_augment((out.get("data") or {}).get("augment") or {})
    if not fill:
        return out
    if "model" not in raw and not strict:  # a stored config without a network stays so (load_model says so)
        del out["model"]
    if out["infer"]["roi_size"] is None:  # derived: the prediction window follows the training patch
        out["infer"]["roi_size"] = list(out["data"]["patch_size"])
    return out


def load_stored_config(raw: Mapping) -> dict:
    """The config stored in a run folder or model file, as this version reads it: defaults filled in,
    keys an older version accepted kept, derived values resolved (see :func:`validate_config`)."""
    return validate_config(raw, strict=False)


def section_defaults(dotted: str, given: Mapping | None = None) -> dict:
    """One section (e.g. ``train.optimizer``) of ``given`` checked and completed with its defaults."""
    path = tuple(dotted.split("."))
    spec: Any = Config
    for i, name in enumerate(path):
        spec = _fields(spec, path[:i])[name].spec
    return _section(given, spec, path, strict=True, fill=True)


def prediction_window(config: Mapping) -> list[int]:
    """The sliding-window size of a config: ``infer.roi_size``, resolved at load time from ``data.patch_size``
    when unset (the one place this rule is written; a config not loaded through this module gets it here)."""
    roi = (config.get("infer") or {}).get("roi_size")
    if roi is None:
        roi = (config.get("data") or {}).get("patch_size") or DataConfig().patch_size
    return list(roi) if isinstance(roi, (list, tuple)) else roi


def available_presets() -> list[str]:
    """Names of the dataset/training presets shipped with the package."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def available_variants() -> list[str]:
    """Names of the network variants (paper Tables 1, 2 and 4)."""
    return sorted(p.stem for p in VARIANT_DIR.glob("*.yaml"))


def deep_merge(base: dict, override: dict) -> dict:
    """Recursively merge ``override`` into a copy of ``base`` (override wins)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at top level, got {type(data).__name__}")
    return data


def _resolve_file(name_or_path: str, folder: Path, kind: str, choices: list[str]) -> Path:
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} and path.exists():
        return path
    candidate = folder / f"{name_or_path}.yaml"
    if candidate.exists():
        return candidate
    raise ValueError(f"unknown {kind} {name_or_path!r}; choose one of {choices} or give a .yaml path")


def load_variant(name: str) -> dict:
    """The ``model`` section of a network variant (e.g. ``ghost``, ``standard``, ``k16``, ``no_lspm``)."""
    data = _read_yaml(_resolve_file(name, VARIANT_DIR, "variant", available_variants()))
    return data.get("model", {})


def parse_override(item: str) -> tuple[list[str], Any]:
    """Parse ``a.b.c=value`` into (["a", "b", "c"], value) with YAML typing of the value."""
    if "=" not in item:
        raise ValueError(f"override {item!r} must look like section.key=value")
    key, raw = item.split("=", 1)
    keys = [k for k in key.strip().split(".") if k]
    if not keys:
        raise ValueError(f"override {item!r} has an empty key")
    return keys, yaml.safe_load(raw)


def apply_overrides(config: dict, overrides: Iterable[str]) -> dict:
    """Return a copy of ``config`` with ``key.path=value`` overrides applied."""
    out = copy.deepcopy(config)
    for item in overrides:
        keys, value = parse_override(item)
        node = out
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {k!r} is not a section")
        node[keys[-1]] = value
    return out


def _preset_with_parents(preset: str) -> tuple[Path, dict]:
    """A preset's YAML merged over its ``inherit`` chain, before any variant is applied.

    Variants are applied once, on the merged preset: merging a parent's variant-expanded ``model`` would
    let the parent's default variant silently win over the child's ``--variant``.
    """
    path = _resolve_file(preset, PRESET_DIR, "preset", available_presets())
    data = _read_yaml(path)
    if "inherit" in data:
        _, parent = _preset_with_parents(str(data.pop("inherit")))
        parent.pop("variant", None)
        parent.pop("name", None)
        data = deep_merge(parent, data)
    return path, data


def load_config(
    preset: str = "brats", variant: str | None = None, overrides: Iterable[str] = (), fill: bool = True
) -> dict:
    """Load a preset (name or path), apply its parent, its variant and the overrides.

    Args:
        preset: preset name (``brats``, ``acdc``, ``demo``) or a path to a YAML file.
        variant: network variant overriding the preset's own ``variant`` key.
        overrides: ``section.key=value`` strings, applied last.
        fill: complete the config with the schema's defaults (False: checked, as given; for a resumed run).
    Returns:
        the config checked and completed by :func:`validate_config` (a plain nested dict).
    Raises:
        ConfigError: an unknown key or a wrong type, in the preset or an override, with the dotted key.
    """
    path, data = _preset_with_parents(preset)
    chosen = variant or data.get("variant", "ghost")
    data["model"] = deep_merge(load_variant(chosen), data.get("model", {}))
    data["variant"] = chosen
    data.setdefault("name", path.stem)
    return validate_config(apply_overrides(data, overrides), fill=fill)
