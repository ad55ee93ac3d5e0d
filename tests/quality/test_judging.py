"""Judge ≠ teacher: a dataset's teachers from its manifest metadata, the judge quality.judge resolves to, and
thresholds per judge."""

from __future__ import annotations

from pathlib import Path

import pytest

from facefoundry.errors import FaceFoundryError
from facefoundry.quality.judging import (
    Judge,
    choose_judge,
    dataset_teachers,
    judge_threshold,
    resolve_judge,
    teachers,
    threshold_text,
)

ORDER = ["dlib", "sface"]
DLIB = {"name": "dlib", "dim": 128, "weights": "dlib_face_recognition_resnet_model_v1.dat", "chip_padding": 0.25}
SFACE = {"name": "sface", "dim": 128, "weights": "face_recognition_sface_2021dec_int8bq.onnx"}


def _auto(meta: dict | None, read=lambda path: None) -> str:
    return choose_judge("auto", ORDER, teachers(meta, read)).name


def test_renders_realism_photos_and_plain_folders_have_no_teacher_and_keep_dlib():
    for meta in (
        {"generator": "render", "num_classes": 6},
        {"generator": "realism", "source": "outputs/datasets/render"},
        {"generator": "align", "detector": "yunet"},
        {"generator": "test"},  # a generator no descriptor knows, recording no encoder
        None,  # no manifest: image folders, RecordIO
    ):
        assert teachers(meta) == [] and _auto(meta) == "dlib", meta


def test_a_dlib_trained_vec2face_or_idsync_is_judged_by_sface_and_an_sface_trained_one_by_dlib():
    for gen in ("vec2face", "idsync"):
        assert teachers({"generator": gen, "encoder": DLIB}) == ["dlib"]
        assert _auto({"generator": gen, "encoder": DLIB}) == "sface"
        assert _auto({"generator": gen, "encoder": SFACE}) == "dlib"
    # a manifest that names its model but not its encoder: the model's index says which
    indexes = {"/m/v2f": {"encoder_name": "sface"}}
    assert teachers({"generator": "vec2face", "model": "/m/v2f"}, index=indexes.get) == ["sface"]
    # an ONNX teacher is matched by its weights file, whatever path names it
    onnx = {"generator": "vec2face", "encoder": {"name": "onnx", "weights": "w600k_r50.onnx"}}
    assert teachers(onnx) == ["w600k_r50.onnx"]
    assert choose_judge("auto", ["/models/w600k_r50.onnx", "sface"], teachers(onnx)).name == "sface"


def test_the_default_holds_for_every_generator_that_works_in_an_identity_space():
    from facefoundry.config import QualityCfg
    from facefoundry.generators.table import descriptor, names

    order = QualityCfg().judge_order
    assert QualityCfg().judge == "auto"
    learned = [n for n in names() if descriptor(n).identity_encoder]
    assert {"vec2face", "idsync"} <= set(learned)
    for gen in learned:
        for teacher in order:
            judge = choose_judge("auto", order, teachers({"generator": gen, "encoder": {"name": teacher}}))
            assert judge.name != teacher and judge.auto and not judge.is_teacher, (gen, teacher)


def test_a_fused_dataset_has_the_union_of_its_sources_teachers():
    sources = {
        "/d/render": {"generator": "render"},
        "/d/v2f_dlib": {"generator": "vec2face", "encoder": DLIB},
        "/d/ids_sface": {"generator": "idsync", "encoder": SFACE},
    }
    fused = {
        "generator": "fusion",
        "fusion": {"sources": {"render": {"path": "/d/render"}, "vec2face": {"path": "/d/v2f_dlib"}}},
    }
    assert teachers(fused, sources.get) == ["dlib"] and _auto(fused, sources.get) == "sface"
    fused["fusion"]["sources"]["idsync"] = {"path": "/d/ids_sface"}
    assert teachers(fused, sources.get) == ["dlib", "sface"]
    with pytest.raises(FaceFoundryError) as err:  # every candidate taught one of the sources
        _auto(fused, sources.get)
    msg = str(err.value)
    assert "\n" not in msg and "quality.judge_order (dlib, sface)" in msg and "teachers: dlib, sface" in msg
    # what fuse recorded wins over the sources (they may have moved); a converted dataset has its source's
    assert teachers({**fused, "teachers": ["dlib"]}, sources.get) == ["dlib"]
    assert teachers({"generator": "convert", "source": "/d/v2f_dlib"}, sources.get) == ["dlib"]


def test_an_explicit_judge_is_used_even_when_it_is_a_teacher_with_a_warning():
    meta = {"generator": "vec2face", "encoder": DLIB}
    assert choose_judge("dlib", ORDER, teachers(meta)) == Judge("dlib", ("dlib",), auto=False, is_teacher=True)
    lines: list[str] = []
    judge = resolve_judge("dlib", ORDER, meta, lines.append)
    assert judge.is_teacher and not judge.auto
    assert len(lines) == 1 and lines[0].startswith("warning: quality.judge dlib") and "teachers: dlib" in lines[0]
    lines.clear()
    assert not resolve_judge("sface", ORDER, meta, lines.append).is_teacher and lines == []
    assert resolve_judge("auto", ORDER, meta, lines.append).name == "sface" and lines == []


def test_teachers_are_read_from_a_dataset_folders_manifest(tmp_path: Path):
    import numpy as np

    from facefoundry.data.writer import DatasetWriter
    from tests.conftest import identity_image

    rng = np.random.default_rng(0)
    with DatasetWriter(tmp_path / "v2f", {"generator": "vec2face", "num_classes": 1, "encoder": SFACE}) as w:
        for k in range(2):
            w.add(identity_image(0, k, 16, rng), 0, "id_0", "vec2face", {})
    assert dataset_teachers(tmp_path / "v2f") == ["sface"]
    model = tmp_path / "model"  # an older manifest names only its model folder, whose index records the encoder
    model.mkdir()
    (model / "vec2face_model.json").write_text('{"encoder": {"name": "dlib"}, "encoder_name": "dlib"}')
    assert dataset_teachers({"generator": "vec2face", "model": str(model)}) == ["dlib"]
    assert resolve_judge("auto", ORDER, tmp_path / "v2f", None).name == "dlib"
    assert dataset_teachers(tmp_path / "no_such_folder") == []


def test_thresholds_take_one_number_or_one_per_judge():
    per = {"dlib": 0.75, "sface": 0.45}
    assert judge_threshold(0.6, "sface", "quality.leakage.threshold") == 0.6  # a number: any judge
    assert judge_threshold(per, "dlib", "quality.leakage.threshold") == 0.75
    assert judge_threshold(per, Judge("sface"), "quality.leakage.threshold") == 0.45
    assert judge_threshold({"w600k_r50.onnx": 0.3}, "/m/w600k_r50.onnx", "fuse.overlap_threshold") == 0.3  # by file
    with pytest.raises(FaceFoundryError) as err:
        judge_threshold(per, "pixels", "quality.separability_threshold")
    assert "\n" not in str(err.value)
    assert "quality.separability_threshold: no value for judge 'pixels' (it has dlib, sface)" in str(err.value)
    assert threshold_text(per) == "dlib 0.75 / sface 0.45" and threshold_text(0.65) == "0.65"


def test_the_schema_defaults_are_per_judge_and_a_number_still_validates():
    from facefoundry.config import Config

    cfg = Config()
    assert cfg.quality.leakage.threshold == {"dlib": 0.75, "sface": 0.45}
    assert cfg.quality.separability_threshold == {"dlib": 0.4, "sface": 0.25}
    assert cfg.fuse.overlap_threshold == {"dlib": 0.65, "sface": 0.39}
    raw = {"quality": {"leakage": {"threshold": 0.8}}, "fuse": {"overlap_threshold": {"dlib": 0.7}}}
    typed = Config.model_validate(raw)
    assert typed.quality.leakage.threshold == 0.8 and typed.fuse.overlap_threshold == {"dlib": 0.7}
    with pytest.raises(ValueError):
        Config.model_validate({"quality": {"leakage": {"threshold": {"dlib": 1.5}}}})  # a cosine: within [-1, 1]
    with pytest.raises(ValueError):
        Config.model_validate({"quality": {"judge_order": []}})


def test_a_generators_own_sigma_study_is_led_by_an_encoder_that_did_not_teach_it():
    from facefoundry.quality.judging import study_judges

    assert study_judges(["dlib"], "auto", ["dlib", "sface"], {"name": "dlib"}) == ["sface", "dlib"]
    assert study_judges(["dlib"], "auto", ["dlib", "sface"], "sface") == ["dlib"]
    assert study_judges([], "auto", ["dlib", "sface"], None) == ["dlib"]  # no teacher recorded
    assert study_judges(["sface"], "dlib", ["dlib", "sface"], "dlib") == ["dlib", "sface"]  # named: as asked
