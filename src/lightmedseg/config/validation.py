"""Checking a config against the schema (:mod:`lightmedseg.config.schema`): types, unknown keys with the
nearest valid one, defaults filled in, derived values resolved; and the typed view of a checked config.

:func:`validate_config` is what :func:`~lightmedseg.config.load_config` (presets and ``--set``) and
:func:`load_stored_config` (the config inside a run folder or model file) both go through: unknown keys and
wrong types are refused with the full dotted key and the nearest valid one (a stored config keeps keys this
version does not know, since an older version accepted them), defaults are filled in, and derived values are
resolved (``infer.roi_size`` follows ``data.patch_size`` unless set).

The ``model`` section is checked against the signature of ``LightMedSeg.__init__`` (not filled in: the
constructor applies its defaults) and ``train.loss`` against ``LightMedSegLoss.__init__`` (filled in).

Code reads settings through :func:`typed_config` (``cfg.train.seed``), never with a default of its own.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import inspect
import typing
from dataclasses import dataclass
from typing import Any, Iterable, Literal, Mapping, Sequence, TypeVar, Union

from lightmedseg.config.schema import AUGMENT_DEFAULTS, Config, Section
from lightmedseg.io_utils import json_plain


class ConfigError(ValueError):
    """A config key that does not exist, or a value of the wrong type; the message names the dotted key."""


S = TypeVar("S", bound=Section)


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


@functools.lru_cache(maxsize=None)  # the schema and the signatures do not change while running: read them once
def _fields(spec: Any, path: tuple[str, ...]) -> Mapping[str, _Field]:
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


def _spec_at(path: tuple[str, ...]) -> Any:
    spec: Any = Config
    for i, name in enumerate(path):
        try:
            spec = _fields(spec, path[:i])[name].spec
        except KeyError:
            spec = None
        if spec is None:
            raise ValueError(f"{'.'.join(path)!r} is not a config section")
    return spec


def section_defaults(dotted: str, given: Mapping | None = None) -> dict:
    """One section (e.g. ``train.optimizer``) of ``given`` checked and completed with its defaults."""
    path = tuple(dotted.split("."))
    return _section(given, _spec_at(path), path, strict=True, fill=True)


def typed_section(dotted: str, given: Mapping | Section | None, cls: type[S]) -> S:
    """The section ``dotted`` of a config as its dataclass ``cls`` (e.g. ``typed_section("train", cfg["train"],
    TrainConfig)``): types checked (ConfigError), unknown keys kept, absent keys read as the schema default.
    An object of ``cls`` is returned as it is (callers accept either form)."""
    if isinstance(given, cls):
        return given
    path = tuple(dotted.split("."))
    if _spec_at(path) is not cls:
        raise ValueError(f"config section {dotted!r} is not a {cls.__name__}")
    return cls.from_dict(_section(given, cls, path, strict=False, fill=False))


def typed_config(config: Mapping | Config) -> Config:
    """The config as the dataclass tree of :mod:`lightmedseg.config.schema` (``cfg.train.optimizer.lr``): types
    checked (ConfigError), keys an older version accepted kept, absent keys read as the schema default.
    ``typed_config(d).to_dict() == d`` for a checked ``d``. A :class:`Config` is returned as it is."""
    if isinstance(config, Config):
        return config
    return Config.from_dict(validate_config(config, strict=False, fill=False))


def prediction_window(config: Mapping | Config) -> list[int]:
    """The sliding-window size of a config: ``infer.roi_size``, else ``data.patch_size`` (resolved at load time;
    a config not loaded through this package gets it here). See :meth:`InferConfig.window`."""
    return typed_config(config).window
