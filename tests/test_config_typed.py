"""Typed config access (issue 27): the dataclass tree of :mod:`lightmedseg.config.schema` reads what the stored
dict says, gives the schema default for what it leaves out, and writes back exactly the dict it came from (key
order, absent keys, keys of older versions), so presets, run folders and model files stay byte-compatible."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import yaml
from legacy_fixtures import fixture_config, recipes

import lightmedseg.config as config_pkg
from lightmedseg.config import (
    Config,
    ConfigError,
    DataConfig,
    InferConfig,
    OptimizerConfig,
    SchedulerConfig,
    TrainConfig,
    available_presets,
    available_variants,
    load_config,
    load_stored_config,
    typed_config,
    typed_section,
    validate_config,
)

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "src" / "lightmedseg" / "pretrained"
SECTIONS = {"data": DataConfig, "train": TrainConfig, "infer": InferConfig}


def _stored_configs() -> list[tuple[str, dict]]:
    """The config inside each legacy fixture (what its recipe makes the built file store, checked by
    test_checkpoint_compat) and shipped model file, as stored (not completed)."""
    from safetensors import safe_open

    out = [(name, fixture_config(json.loads(path.read_text()))) for name, path in recipes().items()]
    for path in sorted(SHIPPED.rglob("*.safetensors")):
        with safe_open(str(path), framework="pt") as fh:
            out.append((path.name, json.loads(fh.metadata()["lightmedseg_config"])))
    return out


def _same(a: dict, b: dict) -> None:
    """Equal, in the same key order at every level (what YAML and JSON write)."""
    assert json.dumps(a) == json.dumps(b)
    assert yaml.safe_dump(a, sort_keys=False) == yaml.safe_dump(b, sort_keys=False)


@pytest.mark.parametrize("preset", available_presets())
def test_every_preset_and_variant_round_trips(preset: str) -> None:
    for variant in [None, *available_variants()]:
        for fill in (True, False):
            raw = load_config(preset, variant, fill=fill)
            _same(typed_config(raw).to_dict(), raw)


STORED = _stored_configs()


@pytest.mark.parametrize("name, raw", STORED, ids=[n for n, _ in STORED])
def test_every_stored_config_round_trips(name: str, raw: dict) -> None:
    """As stored (keys an older version wrote, none it lacked added) and as this version completes it."""
    _same(typed_config(raw).to_dict(), raw)
    completed = load_stored_config(raw)
    _same(typed_config(completed).to_dict(), completed)
    assert typed_config(completed).model == raw["model"]


def test_stored_configs_cover_the_legacy_fixtures() -> None:
    names = {n for n, _ in STORED}
    assert {"acdc_session1.safetensors", "acdc_v1.safetensors", "acdc_v4.safetensors", "run_checkpoint_last.pt"} <= names


def test_every_field_reads_what_the_dict_says() -> None:
    raw = validate_config({})  # every field of data / train / infer present, with its default
    cfg = typed_config(raw)
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            value = getattr(getattr(cfg, section), f.name)
            stored = raw[section][f.name]
            assert (value.to_dict() if isinstance(value, config_pkg.Section) else value) == stored, f"{section}.{f.name}"


def _leaves(cls: type, prefix: str) -> list[tuple[str, object]]:
    out = []
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        if isinstance(default, config_pkg.Section):
            out += _leaves(type(default), f"{prefix}.{f.name}")
        else:
            out.append((f"{prefix}.{f.name}", default))
    return out


def test_an_absent_key_reads_as_the_schema_default_and_stays_absent() -> None:
    cfg = typed_config({"train": {"epochs": 3}})
    for section, cls in SECTIONS.items():
        for dotted, default in _leaves(cls, section):
            node = cfg
            for part in dotted.split("."):
                node = getattr(node, part)
            expected = 3 if dotted == "train.epochs" else default
            assert node == expected, dotted
    assert cfg.train.optimizer == OptimizerConfig() and cfg.train.scheduler == SchedulerConfig()
    assert cfg.labels is None and cfg.model == {}
    assert cfg.to_dict() == {"train": {"epochs": 3}}
    assert cfg.window == DataConfig().patch_size  # infer.roi_size unset: the training patch


def test_assignments_are_written_back_after_the_keys_read() -> None:
    raw = {"train": {"seed": 1, "optimizer": {"lr": 1.0e-3}}, "name": "x"}
    cfg = typed_config(raw)
    cfg.train.optimizer.name = "sgd"
    cfg.train.epochs = 2
    cfg.labels = {"background": 0, "a": 1}
    cfg.infer.overlap = 0.25  # a section the dict left out
    assert cfg.to_dict() == {"train": {"seed": 1, "optimizer": {"lr": 1.0e-3, "name": "sgd"}, "epochs": 2},
                             "name": "x", "labels": {"background": 0, "a": 1}, "infer": {"overlap": 0.25}}
    assert raw == {"train": {"seed": 1, "optimizer": {"lr": 1.0e-3}}, "name": "x"}  # the dict is not touched


def test_keys_of_an_older_version_are_kept_in_place() -> None:
    raw = {"data": {"patch_size": [16, 32, 32], "old_option": {"x": 1}, "normalization": "none"},
           "train": {"retired": True}}
    cfg = typed_config(raw)
    assert cfg.data.patch_size == [16, 32, 32] and not hasattr(cfg.data, "old_option")
    _same(cfg.to_dict(), raw)
    with pytest.raises(ConfigError, match="data.old_option"):
        validate_config(raw)  # a preset or --set is still refused it


def test_wrong_types_are_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"train\.optimizer\.lr"):
        typed_config({"train": {"optimizer": {"lr": "fast"}}})
    with pytest.raises(ConfigError, match=r"data\.patch_size"):
        typed_section("data", {"patch_size": "big"}, DataConfig)
    with pytest.raises(ValueError, match="not a TrainConfig"):
        typed_section("data", {}, TrainConfig)


def test_typed_objects_pass_through_and_fresh_ones_serialise_every_field() -> None:
    cfg = typed_config(load_config("demo"))
    assert typed_config(cfg) is cfg and typed_section("train", cfg.train, TrainConfig) is cfg.train
    fresh = Config().to_dict()
    assert set(fresh) == {"model", "data", "train", "infer"}  # the dataset keys are left out until training sets them
    assert fresh["train"]["optimizer"] == dataclasses.asdict(OptimizerConfig())
    assert typed_config(fresh) == Config()


def test_public_names_of_the_former_module_still_import() -> None:
    names = ["AUGMENT_DEFAULTS", "ConfigError", "DataConfig", "InferConfig", "OptimizerConfig", "SchedulerConfig",
             "TrainConfig", "Config", "DEFAULT_DIST_TIMEOUT_MINUTES", "PRESET_DIR", "VARIANT_DIR", "apply_overrides",
             "available_presets", "available_variants", "check_augment", "deep_merge", "load_config",
             "load_stored_config", "load_variant", "nearest_key", "parse_override", "prediction_window",
             "section_defaults", "validate_config"]
    assert all(hasattr(config_pkg, n) for n in names)
    assert {p.stem for p in Path(config_pkg.__file__).parent.glob("*.py")} == {"__init__", "schema", "validation", "presets"}


# Leaf names too common to tell a config read from another mapping's (cards, metrics, reports).
_GENERIC = {"name", "mode", "regions", "device", "cache", "loss"}


def test_no_use_site_repeats_a_schema_default() -> None:
    """Settings are read typed (``cfg.train.seed``); a ``.get("seed", 42)`` fallback outside the config
    package would be a second definition of a default the schema holds."""
    leaves = {d.rpartition(".")[2] for s, cls in SECTIONS.items() for d, _ in _leaves(cls, s)} - _GENERIC
    pattern = re.compile(r"""\.get\(\s*["'](%s)["']\s*,""" % "|".join(sorted(leaves)))
    package = ROOT / "src" / "lightmedseg"
    found = [f"{p.relative_to(package)}:{i}: {line.strip()}"
             for p in sorted(package.rglob("*.py")) if p.parent.name != "config"
             for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not found, "read these through lightmedseg.config.typed_config instead:\n" + "\n".join(found)
