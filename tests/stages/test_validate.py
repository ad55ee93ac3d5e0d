"""The validate stage's quality gates: a deliberately broken dataset fails naming each problem; a clean one passes."""

from pathlib import Path

import numpy as np
import pytest

from facefoundry.data.writer import DatasetWriter
from facefoundry.errors import FaceFoundryError
from facefoundry.verification.binfile import write_bin
from tests.conftest import identity_image, tiny_config

BENCH_PEOPLE = (100, 101, 102, 103)


def _dataset(path: Path, persons: list[list[int]], duplicate: bool = False) -> Path:
    """Label i holds one image of each person in ``persons[i]``, cycled to 6 images; ``duplicate`` repeats
    label 0's first image byte for byte."""
    rng = np.random.default_rng(0)
    with DatasetWriter(path, {"generator": "test", "num_classes": len(persons), "image_size": 32}) as w:
        for label, who in enumerate(persons):
            first = None
            for k in range(6):
                img = identity_image(who[k % len(who)], k, 32, rng)
                if duplicate and label == 0 and k == 1:
                    img = first
                first = img if first is None else first
                w.add(img, label, f"id_{label}", "test", {"person": who[k % len(who)]})
    return path


def _cfg(tmp: Path):
    rng = np.random.default_rng(9)
    write_bin(
        tmp / "bench.bin",
        [identity_image(p, 0, 32, rng) for p in BENCH_PEOPLE for _ in (0, 1)],
        [True, True, True, True],
    )
    return tiny_config(
        tmp,
        base={"image_size": 32},
        identity={"judges": []},
        quality={
            "judge": "pixels",  # thresholds are per judge; pixels has no calibrated ones: one number each
            "separability_threshold": 0.4,
            "leakage": {"references": [str(tmp / "bench.bin")], "threshold": 0.7, "training_photos": False},
            "gates": {"max_mislabelled_identities": 0, "max_leaked_identities": 0, "max_duplicate_images": 0},
        },
    )


def test_clean_dataset_passes_and_reports_every_metric(tmp_path: Path, monkeypatch):
    from facefoundry.stages.validate import run_validate

    monkeypatch.chdir(tmp_path)
    cfg = _cfg(tmp_path)
    ds = _dataset(tmp_path / "clean", [[p] for p in range(8)])
    m = run_validate(cfg, str(ds), str(tmp_path / "metrics.json"))
    assert m["duplicate_images"] == 0 and m["leaked_identities"] == 0 and m["mislabelled_identities"] == 0
    assert 0 < m["separable_identities"] <= 8 and m["intra_mean"] > m["inter_mean"] + 0.5
    assert m["gates_failed"] == 0
    import json

    products = tmp_path / "outputs/validate/clean"  # what a person reads, deterministic (a DVC output)
    gates = json.loads((products / "gates.json").read_text())
    assert gates["success"] and gates["statistics"]["unsuccessful_expectations"] == 0
    assert len(gates["expectations"]) == gates["statistics"]["evaluated_expectations"]
    assert all(e["success"] and "id" not in e for e in gates["expectations"])
    assert {"problems.json", "samples", "plots"} <= {p.name for p in products.iterdir()}
    assert (products / "samples/grid.png").read_bytes()[:4] == b"\x89PNG"
    # a second run writes the same bytes (DVC hashes this folder) and leaves no GX project behind
    first = {p.relative_to(products): p.read_bytes() for p in products.rglob("*") if p.is_file()}
    run_validate(cfg, str(ds), str(tmp_path / "metrics.json"))
    assert {p.relative_to(products): p.read_bytes() for p in products.rglob("*") if p.is_file()} == first
    assert not [p for p in tmp_path.rglob("gx_results.json") if "mlruns" not in p.parts]  # only in MLflow


def test_broken_dataset_fails_naming_each_problem(tmp_path: Path, monkeypatch):
    from facefoundry.stages.validate import run_validate

    monkeypatch.chdir(tmp_path)
    cfg = _cfg(tmp_path)
    persons = [[p] for p in range(8)]
    persons[2] = [2, 3]  # half of label 2 is person 3: mislabelled images, a split identity
    persons[5] = [101]  # label 5 is a benchmark person
    ds = _dataset(tmp_path / "broken", persons, duplicate=True)
    with pytest.raises(FaceFoundryError) as err:
        run_validate(cfg, str(ds), str(tmp_path / "metrics.json"))
    msg = str(err.value)
    assert "\n" not in msg and str(ds) in msg
    for problem in ("duplicate_images", "mislabelled_identities", "leaked_identities"):
        assert problem in msg, problem
    assert not (tmp_path / "metrics.json").exists()  # no metrics for a dataset that failed its gates
    import json

    problems = json.loads((tmp_path / "outputs/validate/broken/problems.json").read_text())
    assert problems["split_identities"] == ["id_2"]
    assert [d["identity"] for d in problems["leaked"]] == ["id_5"]
    assert len(problems["duplicates"]) == 1
    gates = json.loads((tmp_path / "outputs/validate/broken/gates.json").read_text())
    assert not gates["success"] and gates["failures"] == [
        e["failure"] for e in gates["expectations"] if not e["success"]
    ]
    # the failed run keeps the evidence: the full GX result, its Data Docs, the problem lists, the plots
    import mlflow

    client = mlflow.MlflowClient(cfg.base.tracking_uri)
    run = client.search_runs([client.get_experiment_by_name(cfg.base.experiment).experiment_id])[0]
    assert run.info.status == "FAILED" and run.data.tags["facefoundry.quality_gates"] == "failed"
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "quality")}
    assert {"quality/gx_results.json", "quality/gates.json", "quality/problems.json", "quality/data_docs"} <= logged
    assert "plots/identity_centres.png" in {a.path for a in client.list_artifacts(run.info.run_id, "plots")}


def test_soft_labelled_dataset_passes_the_gates(tmp_path: Path, monkeypatch):
    """SynFace identity mixup's soft labels are checked (partner, weight) and do not trip any gate."""
    import json

    from facefoundry.stages.validate import run_validate
    from tests.conftest import make_soft_dataset

    monkeypatch.chdir(tmp_path)
    ds = make_soft_dataset(tmp_path / "soft", identities=8)
    m = run_validate(_cfg(tmp_path), str(ds), str(tmp_path / "metrics.json"))
    assert m["images"] == 48 and m["mislabelled_identities"] == 0
    gates = json.loads((tmp_path / "outputs/validate/soft/gates.json").read_text())
    assert "mix_weight" in json.dumps(gates["expectations"])


def test_setting_grid_lays_out_one_image_per_sigma(tmp_path):
    from facefoundry.data.sources import open_source
    from facefoundry.data.writer import DatasetWriter
    from facefoundry.stages.common import setting_grid
    from tests.conftest import identity_image, make_dataset

    rng = np.random.default_rng(0)
    with DatasetWriter(tmp_path / "v2f", {"generator": "vec2face", "num_classes": 3, "image_size": 32}) as w:
        for label in range(3):
            for sigma in (0.3, 0.0, 0.6, 0.3):
                w.add(identity_image(label, 0, 32, rng), label, f"id_{label}", "vec2face", {"sigma": sigma})
    fig = setting_grid(open_source(tmp_path / "v2f"))
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["σ = 0", "σ = 0.3", "σ = 0.6"] and len(fig.axes) == 9  # 3 identities × 3 settings
    assert setting_grid(open_source(make_dataset(tmp_path / "plain"))) is None  # no setting recorded


def _vec2face_like(path: Path, encoder: dict, identities: int = 4, per: int = 5) -> Path:
    """A dataset whose manifest says a Vec2Face trained with ``encoder`` (its spec) made it."""
    rng = np.random.default_rng(1)
    meta = {"generator": "vec2face", "num_classes": identities, "image_size": 32, "encoder": encoder}
    with DatasetWriter(path, meta) as w:
        for label in range(identities):
            for k in range(per):
                w.add(identity_image(label, k, 32, rng), label, f"id_{label}", "vec2face", {"sigma": 0.0})
    return path


@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory) -> Path:
    """An MLflow database with its schema made once for the module (the migration takes seconds)."""
    import mlflow

    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


def _judge_cfg(tmp: Path, db: Path, **quality):
    import shutil

    if not (tmp / "mlflow.db").exists():
        shutil.copy(db, tmp / "mlflow.db")
    return tiny_config(
        tmp,
        base={"image_size": 32},
        identity={"judges": []},  # the quality judge's histogram is added all the same
        quality={"leakage": {"training_photos": False}, "gates": {"enabled": False}, **quality},
    )


def _validate_vec2face_like(tmp_path: Path, monkeypatch, migrated_db: Path, encoder: dict, **quality):
    """Validate a Vec2Face-like dataset made in ``encoder``'s space: (config, dataset, metrics, log lines)."""
    from facefoundry.stages.validate import run_validate

    monkeypatch.chdir(tmp_path)
    ds = _vec2face_like(tmp_path / "v2f", encoder)
    lines: list[str] = []
    monkeypatch.setattr("facefoundry.stages.validate.log", lines.append)
    cfg = _judge_cfg(tmp_path, migrated_db, **quality)
    return cfg, ds, run_validate(cfg, str(ds), str(tmp_path / "metrics.json")), lines


def test_validate_judges_a_dlib_trained_vec2face_dataset_with_sface_and_says_so(
    tmp_path: Path, monkeypatch, migrated_db: Path
):
    import json

    import mlflow

    cfg, _, m, lines = _validate_vec2face_like(tmp_path, monkeypatch, migrated_db, {"name": "dlib", "dim": 128})
    assert cfg.quality.judge == "auto"
    assert m["judge"] == "sface" and m["judged_by_teacher"] == 0
    assert "judge_sface_intra_mean" in m and not any(k.startswith("judge_dlib_") for k in m)
    assert json.loads((tmp_path / "metrics.json").read_text())["judge"] == "sface"
    assert any("(judge sface, centred)" in ln for ln in lines), lines
    client = mlflow.MlflowClient(cfg.base.tracking_uri)
    run = client.search_runs([client.get_experiment_by_name(cfg.base.experiment).experiment_id])[0]
    assert run.data.tags["data.judge"] == "sface" and run.data.tags["data.judge_teachers"] == "dlib"
    assert run.data.metrics["data/judge_sface_intra_mean"] == pytest.approx(m["judge_sface_intra_mean"])
    assert "data/judge" not in run.data.metrics  # the name is a tag, not a number


def test_validate_with_a_judge_that_taught_the_generator_warns_and_records_it(
    tmp_path: Path, monkeypatch, migrated_db: Path
):
    from facefoundry.stages.validate import run_validate

    _, ds, m, lines = _validate_vec2face_like(
        tmp_path,
        monkeypatch,
        migrated_db,
        {"name": "pixels", "dim": 768},
        judge="pixels",
        separability_threshold=0.4,
        leakage={"threshold": 0.9},
    )
    assert m["judge"] == "pixels" and m["judged_by_teacher"] == 1 and "judge_pixels_intra_mean" in m
    assert sum(ln.startswith("warning: quality.judge pixels") for ln in lines) == 1, lines
    # auto with every candidate a teacher: one error line, before any run starts
    with pytest.raises(FaceFoundryError) as err:
        run_validate(_judge_cfg(tmp_path, migrated_db, judge_order=["pixels"]), str(ds), str(tmp_path / "m.json"))
    assert "\n" not in str(err.value) and "quality.judge auto: every encoder of quality.judge_order" in str(err.value)
