"""Sweep cache keys of validation and fusion: the quality judge is keyed on its setting, and a key of explicit
settings stays what it was before thresholds could be given per judge."""

from __future__ import annotations

from facefoundry.config import Config
from facefoundry.sweep.keys import fuse_key, quality_settings, validation_key


def _cfg(quality: dict | None = None, fuse: dict | None = None) -> Config:
    sources = {"a": {"path": "/nowhere/a"}, "b": {"path": "/nowhere/b"}}
    return Config.model_validate({"quality": quality or {}, "fuse": {"sources": sources, **(fuse or {})}})


def test_an_explicit_judge_keys_on_its_own_thresholds_as_before():
    floats = {"judge": "dlib", "separability_threshold": 0.4, "leakage": {"threshold": 0.75}}
    explicit, old_style = _cfg({"judge": "dlib"}), _cfg(floats, {"overlap_threshold": 0.65})
    assert quality_settings(explicit.quality) == quality_settings(old_style.quality)
    assert "judge_order" not in quality_settings(explicit.quality)
    assert quality_settings(explicit.quality)["leakage"]["threshold"] == 0.75
    assert validation_key(explicit, "k") == validation_key(old_style, "k")
    assert fuse_key(explicit) == fuse_key(old_style)
    # its order does not matter to an explicit judge; sface's own threshold does not either
    moved = _cfg({"judge": "dlib", "judge_order": ["sface"], "leakage": {"threshold": {"dlib": 0.75, "sface": 0.1}}})
    assert validation_key(moved, "k") == validation_key(explicit, "k") and fuse_key(moved) == fuse_key(explicit)


def test_auto_keys_on_the_order_and_every_judges_thresholds():
    auto = _cfg()
    assert auto.quality.judge == "auto" and quality_settings(auto.quality)["judge_order"] == ["dlib", "sface"]
    assert validation_key(auto, "k") != validation_key(_cfg({"judge": "dlib"}), "k")
    for other in (
        _cfg({"judge_order": ["sface", "dlib"]}),
        _cfg({"leakage": {"threshold": {"dlib": 0.75, "sface": 0.5}}}),
    ):
        assert validation_key(other, "k") != validation_key(auto, "k") and fuse_key(other) != fuse_key(auto)
    assert fuse_key(_cfg(fuse={"overlap_threshold": {"dlib": 0.65, "sface": 0.3}})) != fuse_key(auto)
