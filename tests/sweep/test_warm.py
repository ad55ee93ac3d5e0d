"""Warm starts (``facefoundry sweep SPEC --warm-start EXPERIMENT``): which earlier trial runs are compatible,
how their logged params decode, and that Ray Tune's OptunaSearch receives them as completed trials. The trial
runs here are written to a temporary MLflow store the way ``TrialRun`` logs them; a real warm-started sweep
runs in ``test_sweep_run.py`` (beside the other Ray sweeps). A few seconds."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from facefoundry.errors import FaceFoundryError
from facefoundry.sweep.spec import load_spec
from facefoundry.sweep.spec_model import Dim
from facefoundry.sweep.warm import decode_value, history, load, searcher_points
from tests.conftest import tiny_config

SPACE = {
    "train.lr": {"type": "loguniform", "low": 0.01, "high": 0.2},
    "generate.images_per_identity": {"type": "choice", "values": [4, 5]},
    "train.epochs": {"type": "int", "low": 1, "high": 3},
    "generate.render.yaw": {"type": "choice", "values": [[-15, 15], [-30, 30]]},
}
GOOD = {
    "train.lr": "0.05",
    "generate.images_per_identity": "5",
    "train.epochs": "2",
    "generate.render.yaw": "[-30, 30]",
}


def _spec(tmp: Path, space: dict | None = None, **extra) -> Path:
    tiny_config(tmp)
    path = tmp / "sweep.yaml"
    body = {"name": "warm", "params": str(tmp / "params.yaml"), "space": space or SPACE, "budget": {"trials": 2}}
    path.write_text(yaml.safe_dump({**body, **extra}))
    return path


def _store(tmp: Path) -> None:
    """Experiment ``earlier``: two sweep runs (accuracy max; data/images min) and their trial runs."""
    import mlflow
    from mlflow.entities import Metric, Param, RunTag

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp}/mlflow.db")
    exp = client.create_experiment("earlier")

    def run(tags: dict, params: dict, metrics: dict, status: str = "FINISHED") -> str:
        r = client.create_run(exp, tags=tags)
        client.log_batch(
            r.info.run_id,
            params=[Param(k, v) for k, v in params.items()],
            metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        client.set_terminated(r.info.run_id, status)
        return r.info.run_id

    same = run(
        {"facefoundry.role": "sweep"},
        {"sweep.objective": "accuracy", "sweep.mode": "max", "sweep.objective_benchmarks": "twins"},
        {},
    )
    other = run({"facefoundry.role": "sweep"}, {"sweep.objective": "data/images", "sweep.mode": "min"}, {})

    def trial(swept: dict, objective: float | None = 0.7, status: str = "FINISHED", parent: str = same) -> None:
        params = {f"sweep.{k}": v for k, v in swept.items()} | swept | {"train.batch_size": "16"}
        tags = {"facefoundry.role": "trial", "mlflow.parentRunId": parent}
        run(tags, params, {} if objective is None else {"objective": objective, "twins/accuracy": 0.1}, status)

    trial(GOOD, 0.75)  # kept
    trial({**GOOD, "train.lr": "0.2", "train.epochs": "3", "generate.render.yaw": "[-15, 15]"}, 0.6)  # kept: the ends
    trial({k: v for k, v in GOOD.items() if k != "train.epochs"})  # a key missing
    trial({**GOOD, "train.wd": "0.001"})  # a key more
    trial({**GOOD, "train.lr": "0.5"})  # out of range
    trial({**GOOD, "generate.images_per_identity": "6"})  # not a choice
    trial({**GOOD, "generate.render.yaw": "[-45, 45]"})  # not a choice
    trial({**GOOD, "train.epochs": "2.5"})  # not an int
    trial(GOOD, status="FAILED")
    trial(GOOD, status="KILLED")
    trial(GOOD, objective=None)  # never reported an objective
    trial(GOOD, parent=other)  # another sweep's objective


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("warm")
    sweep = load_spec(_spec(tmp))
    _store(tmp)
    return tmp, sweep, load("earlier", sweep, f"sqlite:///{tmp}/mlflow.db")


def test_compatible_trials_kept_and_decoded(warm):
    _tmp, _sweep, w = warm
    points = sorted(w.points, key=lambda p: -p[1])
    assert points == [
        (
            {"train.lr": 0.05, "generate.images_per_identity": 5, "train.epochs": 2, "generate.render.yaw": [-30, 30]},
            0.75,
        ),
        (
            {"train.lr": 0.2, "generate.images_per_identity": 5, "train.epochs": 3, "generate.render.yaw": [-15, 15]},
            0.6,
        ),
    ]
    for params, value in points:  # the types the spec gives, not MLflow's strings
        assert type(params["train.lr"]) is float and type(params["train.epochs"]) is int
        assert type(params["generate.images_per_identity"]) is int and type(value) is float


def test_incompatible_trials_skipped_with_reasons(warm):
    assert dict(warm[2].skipped) == {
        "other space keys": 2,
        "train.lr outside the range": 1,
        "generate.images_per_identity not among the values": 1,
        "generate.render.yaw not among the values": 1,
        "train.epochs not an integer": 1,
        "run FAILED": 1,
        "run KILLED": 1,
        "no objective": 1,
        "another objective or mode": 1,
    }


def test_history_reads_the_sweeps_store(warm, monkeypatch):
    _tmp, sweep, w = warm
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert sorted(history("earlier", sweep), key=lambda p: p[1]) == sorted(w.points, key=lambda p: p[1])
    with pytest.raises(FaceFoundryError, match="--warm-start nowhere: no such MLflow experiment"):
        history("nowhere", sweep)


def test_searcher_receives_the_points_as_completed_trials(warm):
    """The driver's OptunaSearch, given the sweep's Ray search space as the Tuner gives it."""
    from facefoundry.sweep.run import _tune_config

    _tmp, sweep, w = warm
    points, rewards = searcher_points(sweep, w.points)
    assert all(isinstance(p["generate.render.yaw"], str) for p in points)  # as Ray's space holds such choices
    search = _tune_config(sweep, w).search_alg  # OptunaSearch (the Tuner gives it the space at fit)
    assert search.set_search_properties("objective", "max", sweep.param_space())
    study = search._ot_study
    done = [(t.params, t.value) for t in study.trials]
    assert sorted(done, key=lambda p: p[1]) == sorted(zip(points, rewards), key=lambda p: p[1])
    assert all(t.state.name == "COMPLETE" for t in study.trials)


def test_decode_value():
    enc = Dim(type="choice", values=[[1, 2], {"a": 1}, None, True])
    assert decode_value(enc, "[1, 2]") == [1, 2] and decode_value(enc, '{"a": 1}') == {"a": 1}
    assert decode_value(enc, "None") is None and decode_value(enc, "True") is True
    assert decode_value(Dim(type="uniform", low=0, high=1), "1.0") == 1.0
    for dim, text in [
        (Dim(type="uniform", low=0, high=1), "nan"),
        (Dim(type="uniform", low=0, high=1), "-0.1"),
        (Dim(type="int", low=1, high=3), "4"),
        (Dim(type="choice", values=[1, 2]), "1.0"),
    ]:
        with pytest.raises(ValueError):
            decode_value(dim, text)


def test_grid_space_refused_in_one_line(tmp_path):
    spec = _spec(tmp_path, {"train.lr": {"type": "grid", "values": [0.05, 0.1]}}, budget={"trials": 2})
    with pytest.raises(FaceFoundryError, match="--warm-start needs a non-grid space"):
        history("earlier", load_spec(spec))
    cli = subprocess.run(
        [sys.executable, "-m", "facefoundry", "sweep", str(spec), "--out", str(tmp_path / "out"), "--warm-start", "x"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 2, cli.stderr[-2000:]
    lines = cli.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs a non-grid space" in lines[0] and "train.lr" in lines[0], cli.stderr
    assert not (tmp_path / "out" / "sweep.json").exists()  # refused before the sweep's MLflow run


def test_several_objectives_refused_in_one_line(tmp_path):
    spec = _spec(tmp_path, objective=[{"metric": "accuracy"}, {"metric": "cost/seconds", "mode": "min"}])
    with pytest.raises(FaceFoundryError, match="--warm-start feeds single-objective sweeps only"):
        history("earlier", load_spec(spec))
