"""Presets: YAML files under ``lightmedseg/presets`` merged with their parents, a network variant and
command-line overrides, then checked (:func:`~lightmedseg.config.validation.validate_config`).

A preset may name a parent with ``inherit: NAME`` and a network variant with ``variant: NAME`` (a file in
``presets/variants``); the child's values win. ``--set a.b=value`` overrides are parsed as YAML scalars.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import yaml

from lightmedseg.config.validation import validate_config

PRESET_DIR = Path(str(resources.files("lightmedseg") / "presets"))
VARIANT_DIR = PRESET_DIR / "variants"
DEFAULT_VARIANT = "ghost"  # the paper's network, for a preset that names none


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
    chosen = variant or data.get("variant", DEFAULT_VARIANT)
    data["model"] = deep_merge(load_variant(chosen), data.get("model", {}))
    data["variant"] = chosen
    data.setdefault("name", path.stem)
    return validate_config(apply_overrides(data, overrides), fill=fill)
