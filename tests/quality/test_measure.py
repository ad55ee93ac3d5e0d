import json
from pathlib import Path

from facefoundry.data.manifest import read_manifest, write_manifest
from facefoundry.fusion.fuse import fuse
from facefoundry.quality.measure import measure_dataset
from facefoundry.quality.references import training_photos
from tests.conftest import tiny_config
from tests.fusion.test_fuse import people


def test_training_photos_are_a_leak_only_for_the_generator_that_learnt_from_them(tmp_path: Path):
    photos = people(tmp_path / "photos", [0, 1, 2, 3], meta={"generator": "align"})  # a generator's real photos
    model = tmp_path / "model"
    model.mkdir()
    (model / "toy_model.json").write_text(json.dumps({"dataset": str(photos)}))
    generated = people(tmp_path / "generated", [0, 30, 31, 32], seed=3)  # its identity 0 copies a photo's person
    m = read_manifest(generated)
    m.meta["model"] = str(model)
    write_manifest(generated, m)
    assert training_photos(generated) == [(None, str(photos))]
    renders = people(tmp_path / "renders", [0, 1], meta={"generator": "render"})  # another generator's faces
    (model / "toy_model.json").write_text(json.dumps({"dataset": str(renders)}))
    assert training_photos(generated) == []  # no real person to leak
    (model / "toy_model.json").write_text(json.dumps({"dataset": str(photos)}))
    cfg = tiny_config(
        tmp_path,
        base={"image_size": 32},
        quality={"judge": "pixels", "separability_threshold": 0.4, "leakage": {"threshold": 0.7}},
        fuse={
            "out": str(tmp_path / "fused"),
            "overlap_threshold": 0.65,
            "sources": {"photos": {"path": str(photos)}, "gen": {"path": str(generated)}},
        },
    )
    alone = measure_dataset(generated, cfg.quality, 64, 0, log=lambda s: None)
    assert [d["identity"] for d in alone.problems["leaked"]] == ["person_0"]
    fuse(cfg.model_copy(update={"fuse": cfg.fuse.model_copy(update={"overlap": "keep"})}), log=lambda s: None)
    fused = measure_dataset(tmp_path / "fused", cfg.quality, 64, 0, log=lambda s: None)
    # the photos' own identities sit beside the generator that learnt from them: not a leak; its copy is
    assert [d["identity"] for d in fused.problems["leaked"]] == ["gen/person_0"]
