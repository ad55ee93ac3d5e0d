from pathlib import Path

import pytest

from facefoundry.config import deep_merge, flatten, load_config, parse_set
from facefoundry.errors import FaceFoundryError


def write(tmp: Path, name: str, text: str) -> Path:
    p = tmp / name
    p.write_text(text)
    return p


def test_defaults_load_from_repo_params():
    cfg = load_config(Path(__file__).parents[1] / "params.yaml")
    assert cfg.base.image_size == 56
    assert cfg.generate.render.yaw.min == -30


def test_experiment_deep_merges_and_set_wins(tmp_path):
    base = write(tmp_path, "p.yaml", "train:\n  lr: 0.1\n  backbone: {name: r18, width: 64}\n")
    exp = write(tmp_path, "e.yaml", "train:\n  backbone: {width: 32}\n")
    cfg = load_config(base, [exp], ["train.lr=0.05", "train.head.name=cosface"])
    assert cfg.train.backbone.name == "r18"  # kept from base
    assert cfg.train.backbone.width == 32  # from the experiment
    assert cfg.train.lr == 0.05 and cfg.train.head.name == "cosface"


def test_unknown_key_is_one_line_naming_it(tmp_path):
    p = write(tmp_path, "p.yaml", "train:\n  lrr: 0.1\n")
    with pytest.raises(FaceFoundryError) as e:
        load_config(p)
    msg = str(e.value)
    assert "train.lrr: unknown key" in msg and "\n" not in msg and str(p) in msg


def test_wrong_type_names_key_and_value(tmp_path):
    p = write(tmp_path, "p.yaml", "train:\n  epochs: many\n")
    with pytest.raises(FaceFoundryError, match=r"train.epochs: .*'many'"):
        load_config(p)


@pytest.mark.parametrize(
    "expr,match",
    [
        ("generate.render.yaw=[30, -30]", "generate.render.yaw: range min 30.0 is greater than max -30.0"),
        ("generate.identities=-5", "generate.identities: Input should be greater than 0"),
        ("generate.images_per_identity=0", "generate.images_per_identity"),
        ("generate.render.glasses_prob=1.5", "generate.render.glasses_prob"),
    ],
)
def test_bad_ranges_and_counts_fail_clearly(tmp_path, expr, match):
    with pytest.raises(FaceFoundryError, match=match.replace("[", r"\[")):
        load_config(write(tmp_path, "p.yaml", "{}"), sets=[expr])


def test_invalid_yaml_reports_line(tmp_path):
    with pytest.raises(FaceFoundryError, match=r"invalid YAML \(line 2\)"):
        load_config(write(tmp_path, "p.yaml", "a: 1\nb: : c\n"))


def test_helpers():
    assert parse_set("a.b.c=[1, 2]") == {"a": {"b": {"c": [1, 2]}}}
    with pytest.raises(FaceFoundryError):
        parse_set("novalue")
    assert deep_merge({"a": {"x": 1, "y": 2}}, {"a": {"y": 3}}) == {"a": {"x": 1, "y": 3}}
    assert flatten({"a": {"b": 1}, "c": 2}) == {"a.b": 1, "c": 2}


def test_a_named_params_file_must_exist(tmp_path):
    from facefoundry.config import config_sources
    from facefoundry.errors import FaceFoundryError

    with pytest.raises(FaceFoundryError, match="does not exist"):
        load_config(tmp_path / "typo.yaml")  # never silently the built-in defaults
    cfg = load_config(tmp_path / "params.yaml", required=False)  # nothing asked for: built-in defaults
    assert config_sources(cfg) == "built-in defaults" and cfg.train.epochs == 20
    p = write(tmp_path, "p.yaml", "train: {epochs: 3}\n")
    assert config_sources(load_config(p, sets=["train.lr=0.5"])) == f"{p} + --set"


def test_a_per_judge_threshold_and_one_number_override_each_other():
    """params.yaml gives the judge thresholds per judge; ``--set`` of one number (any judge) replaces the mapping,
    and the DVC override of a recipe that has one number sets it over the mapping (Hydra refuses ``+`` there)."""
    from facefoundry.config import Config
    from facefoundry.config.dvc import dvc_overrides

    repo = Path(__file__).resolve().parents[1] / "params.yaml"
    cfg = load_config(repo, sets=["quality.leakage.threshold=0.8", "fuse.overlap_threshold.sface=0.3"])
    assert cfg.quality.leakage.threshold == 0.8 and cfg.fuse.overlap_threshold == {"dlib": 0.65, "sface": 0.3}
    raw = {"fuse": {"overlap_threshold": {"dlib": 0.65, "sface": 0.39}}, "quality": {"leakage": {"threshold": 0.75}}}
    typed = Config.model_validate(raw).model_dump(mode="json")
    recipe = {"fuse": {"overlap_threshold": 0.53}, "quality": {"leakage": {"threshold": {"dlib": 0.7}}}}
    assert dvc_overrides(recipe, raw, typed) == ["fuse.overlap_threshold=0.53", "+quality.leakage.threshold.dlib=0.7"]
