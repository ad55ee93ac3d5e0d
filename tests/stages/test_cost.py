"""Cost as a second objective: the stages log their seconds to MLflow (never into DVC outputs), the leaderboard
joins a training run to its dataset's cost and draws accuracy against total seconds as a Pareto front."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from facefoundry.config import Config
from facefoundry.leaderboard import (
    DATASET_SECONDS,
    GENERATION_SECONDS,
    GENERATOR_TRAINING_SECONDS,
    TOTAL_SECONDS,
    TRAIN_SECONDS,
)
from tests.conftest import make_dataset, tiny_config


def fake_train(cfg: Config, source: Any, log: Any = None, stop_after: int | None = None, digest: str = "") -> Any:
    """A learned generator's training in a blink: a model folder with an index, one epoch of history."""
    model = Path(cfg.vec2face.out) / "model"
    model.mkdir(parents=True, exist_ok=True)
    (model / "index.json").write_text("{}")
    return SimpleNamespace(history=[{"epoch": 1, "loss": 0.5, "seconds": 0.1}], resumed_from=0, model_dir=str(model))


def fake_generate(cfg: Config, log: Any) -> Path:
    return make_dataset(Path(cfg.generate.out), identities=6, per_identity=4, size=cfg.base.image_size)


@pytest.fixture
def learned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    """Tiny params whose generator (``vec2face``'s name and sections) trains and generates in a blink."""
    import facefoundry.stages.generate as generate_stage
    import facefoundry.stages.generator as generator_stage
    from facefoundry.generators.table import descriptor

    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith(("MLFLOW_", "DVC_")) or key in ("FACEFOUNDRY_PIPELINE_ID", "FACEFOUNDRY_PARENT_RUN_ID"):
            monkeypatch.delenv(key)
    fake = replace(
        descriptor("vec2face"),
        train=f"{__name__}:fake_train",
        generate=f"{__name__}:fake_generate",
        describe=None,
        reconstructions=None,
    )
    monkeypatch.setattr(generator_stage, "descriptor", lambda name: fake)
    monkeypatch.setattr(generate_stage, "descriptor", lambda name: fake)
    make_dataset(tmp_path / "photos", identities=4, per_identity=2)
    data = tmp_path / "datasets" / "v2f"
    return tiny_config(
        tmp_path,
        vec2face={"dataset": str(tmp_path / "photos"), "out": str(tmp_path / "v2f")},
        generate={"generator": "vec2face", "out": str(data), "vec2face": {"model": str(tmp_path / "v2f" / "model")}},
        datasets={"v2f": str(data)},
        train={"dataset": str(data)},
    )


def runs_by_stage(cfg: Config) -> dict[str, Any]:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=cfg.base.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(cfg.base.experiment).experiment_id])
    return {r.data.tags["facefoundry.stage"]: r for r in runs if r.info.status == "FINISHED"}


def no_seconds(folder: Path) -> None:
    """No DVC output of a stage mentions a timing: its bytes must not depend on how long it took."""
    for path in folder.rglob("*.json"):
        assert "seconds" not in path.read_text(), path


def test_stages_log_their_cost_and_the_leaderboard_draws_the_front(learned: Config) -> None:
    from facefoundry.stages.evaluate import run_evaluate
    from facefoundry.stages.generate import run_benchmark, run_generate
    from facefoundry.stages.generator import run_train_generator
    from facefoundry.stages.report import run_leaderboard
    from facefoundry.stages.train import run_train

    cfg = learned
    run_train_generator(cfg, "vec2face")
    run_generate(cfg)
    run_benchmark(cfg)
    run_train(cfg)
    run_evaluate(cfg)

    stages = runs_by_stage(cfg)
    trained = stages["train-vec2face"]
    gen_seconds = trained.data.metrics[GENERATOR_TRAINING_SECONDS]
    assert gen_seconds > 0
    gen = stages["generate"]
    assert gen.data.metrics[GENERATION_SECONDS] > 0
    # the generate run carries its model's training cost and names that run
    assert gen.data.metrics[GENERATOR_TRAINING_SECONDS] == pytest.approx(gen_seconds)
    assert gen.data.tags["facefoundry.generator_run"] == trained.info.run_id
    assert gen.data.tags["facefoundry.device"] == "cpu" or gen.data.tags["facefoundry.device"].startswith("cuda")
    fr = stages["train"]
    assert fr.data.metrics[TRAIN_SECONDS] > 0
    assert fr.data.tags["facefoundry.device"]
    assert fr.data.tags["dataset.dvc_md5"] == gen.data.tags["dataset.dvc_md5"]  # the link the leaderboard uses
    for folder in (Path(cfg.generate.out), Path(cfg.train.out), Path(cfg.vec2face.out)):
        no_seconds(folder)

    board = run_leaderboard(cfg, include_adhoc=True)
    out = Path(cfg.report.leaderboard_out)
    png = out / "pareto.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    [row] = board.rows
    dataset = gen.data.metrics[GENERATION_SECONDS] + gen_seconds
    assert row.seconds(DATASET_SECONDS) == pytest.approx(dataset)
    assert row.seconds(TOTAL_SECONDS) == pytest.approx(dataset + fr.data.metrics[TRAIN_SECONDS])
    assert board.pareto().rows == [row]
    doc = json.loads((out / "leaderboard.json").read_text())
    assert doc["pareto"] == [row.recipe] and doc["rows"][0]["cost"][TOTAL_SECONDS] == pytest.approx(
        row.seconds(TOTAL_SECONDS)
    )
    assert "total s" in (out / "leaderboard.md").read_text()
    # logged as a picture on the leaderboard's run
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=cfg.base.tracking_uri)
    lb = runs_by_stage(cfg)["leaderboard"]
    assert "pareto.png" in {a.path for a in client.list_artifacts(lb.info.run_id)}


def test_a_generator_that_learns_nothing_costs_no_training(tmp_path: Path) -> None:
    from facefoundry.stages.generate import generator_training_cost

    assert generator_training_cost(tiny_config(tmp_path), "render") == (0.0, None)


def test_a_learned_generator_without_a_run_record_has_no_known_training_cost(learned: Config) -> None:
    from facefoundry.stages.generate import generator_training_cost

    assert generator_training_cost(learned, "vec2face") == (None, None)
