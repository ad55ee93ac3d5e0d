"""Typed configuration: ``params.yaml`` + deep-merged experiment files + ``--set`` overrides.

This package is the schema's facade: every name a caller needs is importable from ``facefoundry.config`` (one
pydantic schema, one section per pipeline stage plus a shared ``base``; unknown keys and wrong types are rejected
with a single line naming the key, so a typo never silently falls back to a default). Its submodules, each with one
concern:

- ``schema``: the root ``Config`` and the sections of the stages that make data (generate, benchmarks, realism,
  align, the generators' training) with ``PLUGIN_GROUP``, the entry-point group of plug-in generators;
- ``schema_training``: the sections of the stages that use data (train, evaluate, identity, quality, fuse,
  report, promote);
- ``schema_types``: ``Strict`` and the value types every section shares;
- ``marks``: the settings marks (``RUNTIME``, ``OUTPUT``, ``INPUT``, ``WIRED``) and the helpers that read them;
- ``dotted``: dotted keys: deep merge, ``--set`` parsing, flattening, the schema's leaf settings;
- ``load``: the loader (``load_config``), whose errors name the file.
"""

from __future__ import annotations

from facefoundry.config.dotted import apply_sets, deep_merge, dotted_fields, dotted_marked, flatten, parse_set
from facefoundry.config.load import config_sources, format_validation_error, load_config
from facefoundry.config.marks import INPUT, OUTPUT, RUNTIME, WIRED, marked, result_settings, runtime_only, section_model
from facefoundry.config.schema import (
    PLUGIN_GROUP,
    AlignCfg,
    AttrOPCfg,
    BaseCfg,
    BenchmarkCfg,
    Config,
    GenerateCfg,
    IdentityMixupCfg,
    IDSyncCfg,
    IDSyncGenCfg,
    RealismCfg,
    RenderCfg,
    SynLFWCfg,
    Vec2FaceCfg,
    Vec2FaceGenCfg,
    plugin_generators,
)
from facefoundry.config.schema_training import (
    AugmentCfg,
    BackboneCfg,
    CompareCfg,
    DomainMixupCfg,
    EvaluateCfg,
    FuseCfg,
    FuseSourceCfg,
    GateCfg,
    GatesCfg,
    HeadCfg,
    IdentityCfg,
    LeakageCfg,
    PartialFCCfg,
    PromoteCfg,
    QualityCfg,
    ReportCfg,
    TrainCfg,
)
from facefoundry.config.schema_types import NonNegFloat, PositiveInt, Prob, Range, RatioGrid, Strict

__all__ = [
    "INPUT",
    "OUTPUT",
    "PLUGIN_GROUP",
    "RUNTIME",
    "WIRED",
    "AlignCfg",
    "AttrOPCfg",
    "AugmentCfg",
    "BackboneCfg",
    "BaseCfg",
    "BenchmarkCfg",
    "CompareCfg",
    "Config",
    "DomainMixupCfg",
    "EvaluateCfg",
    "FuseCfg",
    "FuseSourceCfg",
    "GateCfg",
    "GatesCfg",
    "GenerateCfg",
    "HeadCfg",
    "IDSyncCfg",
    "IDSyncGenCfg",
    "IdentityCfg",
    "IdentityMixupCfg",
    "LeakageCfg",
    "NonNegFloat",
    "PartialFCCfg",
    "PositiveInt",
    "Prob",
    "PromoteCfg",
    "QualityCfg",
    "Range",
    "RatioGrid",
    "RealismCfg",
    "RenderCfg",
    "ReportCfg",
    "Strict",
    "SynLFWCfg",
    "TrainCfg",
    "Vec2FaceCfg",
    "Vec2FaceGenCfg",
    "apply_sets",
    "config_sources",
    "deep_merge",
    "dotted_fields",
    "dotted_marked",
    "flatten",
    "format_validation_error",
    "load_config",
    "marked",
    "parse_set",
    "plugin_generators",
    "result_settings",
    "runtime_only",
    "section_model",
]
