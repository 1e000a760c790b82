"""The configuration: its schema (where every default lives), its checking, and presets.

* :mod:`~lightmedseg.config.schema`: the dataclasses (:class:`Config`, :class:`DataConfig`, :class:`TrainConfig`,
  :class:`OptimizerConfig`, :class:`SchedulerConfig`, :class:`InferConfig`) and their defaults, defined once;
  ``from_dict`` / ``to_dict`` between them and the serialised dict (YAML, run folders, model files).
* :mod:`~lightmedseg.config.validation`: types and unknown keys checked (with the nearest valid key), defaults
  filled in, ``infer.roi_size`` resolved; :func:`typed_config`, the typed view code reads settings from.
* :mod:`~lightmedseg.config.presets`: preset and variant YAML files, ``inherit``, ``--set`` overrides,
  :func:`load_config`.

Configs travel as plain dicts (that is what is stored); code reads them typed: ``cfg = typed_config(config)``,
then ``cfg.train.seed``. A key a dict leaves out reads as the schema default, so no use site carries a default.
"""

from lightmedseg.config.presets import (
    DEFAULT_VARIANT,
    PRESET_DIR,
    VARIANT_DIR,
    apply_overrides,
    available_presets,
    available_variants,
    deep_merge,
    load_config,
    load_variant,
    parse_override,
)
from lightmedseg.config.schema import (
    AUGMENT_DEFAULTS,
    DEFAULT_DIST_TIMEOUT_MINUTES,
    SECTIONS,
    Config,
    DataConfig,
    InferConfig,
    OptimizerConfig,
    SchedulerConfig,
    Section,
    TrainConfig,
)
from lightmedseg.config.validation import (
    ConfigError,
    check_augment,
    load_stored_config,
    nearest_key,
    prediction_window,
    section_defaults,
    typed_config,
    typed_section,
    validate_config,
)

__all__ = [
    "AUGMENT_DEFAULTS", "DEFAULT_DIST_TIMEOUT_MINUTES", "DEFAULT_VARIANT", "PRESET_DIR", "SECTIONS", "VARIANT_DIR",
    "Config", "ConfigError", "DataConfig", "InferConfig", "OptimizerConfig", "SchedulerConfig", "Section",
    "TrainConfig", "apply_overrides", "available_presets", "available_variants", "check_augment", "deep_merge",
    "load_config", "load_stored_config", "load_variant", "nearest_key", "parse_override", "prediction_window",
    "section_defaults", "typed_config", "typed_section", "validate_config",
]
