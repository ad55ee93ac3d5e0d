"""A real sweep through the CLI: Ray Tune + Optuna + ASHA on 2 concurrent tiny trials, a real MLflow store.

One module fixture runs it the way a user would meet every feature: 4 trials over two parameters and two
objectives (accuracy and cost; trials with the same images-per-identity share one dataset), trial #1 raises on every attempt (injected
via the spec; retried once), the sweep is interrupted after two trials ended (as Ctrl-C would) and then
resumed with ``--resume`` (Tuner.restore). About 1–2 minutes on 2 CPU cores.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_config

pytestmark = pytest.mark.e2e

ENV = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
ENV["GIT_PYTHON_REFRESH"] = "quiet"


def sweep_cli(tmp: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "facefoundry", "sweep", str(tmp / "sweep.yaml"), "--out", str(tmp / "out"), *args],
        cwd=tmp,
        capture_output=True,
        text=True,
        env={**ENV, **env},
        timeout=600,
    )


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    tiny_config(tmp, identity={"judge_max_images": 40})
    (tmp / "sweep.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "test_sweep",
                "params": str(tmp / "params.yaml"),
                "space": {
                    "train.lr": {"type": "loguniform", "low": 0.01, "high": 0.2},
                    "generate.images_per_identity": {"type": "choice", "values": [4, 5]},
                },
                "objective": [  # two objectives: Optuna's multi-objective TPE, a Pareto front on the parent
                    {"metric": "accuracy", "benchmarks": ["twins"], "mode": "max"},
                    {"metric": "cost/seconds", "mode": "min"},
                ],
                "budget": {"trials": 4, "max_concurrent": 2},
                "asha": {"grace_period": 1, "reduction_factor": 2},
                "failure": {"max_failures": 1},
                "inject_failure": {"trials": [1]},
                "seed": 3,
            }
        )
    )
    first = sweep_cli(tmp, FACEFOUNDRY_SWEEP_INTERRUPT_AFTER="2")
    after_first = {
        p.parent.name: len(p.read_text().splitlines()) for p in (tmp / "out" / "trials").glob("*/attempts.log")
    }
    status_first = {p.parent.name: json.loads(p.read_text()) for p in (tmp / "out" / "trials").glob("*/status.json")}
    again = sweep_cli(tmp)  # without --resume: refused, the folder holds a sweep
    second = sweep_cli(tmp, "--resume")
    return {
        "tmp": tmp,
        "first": first,
        "again": again,
        "second": second,
        "attempts_first": after_first,
        "status_first": status_first,
        "results": json.loads((tmp / "out" / "results.json").read_text()),
    }


def _runs(tmp: Path):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp}/mlflow.db")
    exp = client.get_experiment_by_name("tests")
    return client, client.search_runs([exp.experiment_id], max_results=1000)


def test_interrupt_then_resume_without_repeating_trials(swept):
    first, again, second = swept["first"], swept["again"], swept["second"]
    assert first.returncode == 130, first.stderr[-3000:]
    assert "resume with: facefoundry sweep" in first.stderr and "--resume" in first.stderr
    assert again.returncode == 2 and "already holds sweep 'test_sweep'" in again.stderr
    assert "--resume" in again.stderr and "Traceback" not in again.stderr
    assert second.returncode == 0, second.stderr[-3000:]
    ended_first = {k for k, s in swept["status_first"].items() if s.get("status") in ("completed", "stopped", "failed")}
    assert len(ended_first) >= 2
    trials = sorted(p.name for p in (swept["tmp"] / "out" / "trials").iterdir())
    assert len(trials) == 4 and sorted(int(t.split("_")[0]) for t in trials) == [0, 1, 2, 3]
    attempts = {
        p.parent.name: len(p.read_text().splitlines()) for p in (swept["tmp"] / "out" / "trials").glob("*/attempts.log")
    }
    for t in ended_first:  # finished before the interrupt: never run again
        assert attempts[t] == swept["attempts_first"][t], t
    for t, n in attempts.items():
        if t not in ended_first:  # cut short by the interrupt (continued once) or started after the resume
            assert n == swept["attempts_first"].get(t, 0) + 1, (t, n)
    assert attempts[next(t for t in attempts if t.startswith("001_"))] == 2  # the failing trial: one retry
    rows = swept["results"]["rows"]
    assert len({r["trial"] for r in rows}) == 4 and not swept["results"]["interrupted"]


def test_failing_trial_is_reported_and_the_sweep_finishes(swept):
    rows = {r["number"]: r for r in swept["results"]["rows"]}
    assert rows[1]["status"] == "failed" and "injected failure" in rows[1]["error"] and rows[1]["attempts"] == 2
    assert all(rows[n]["status"] in ("completed", "stopped") for n in (0, 2, 3))
    assert sum(r["status"] == "completed" for r in rows.values()) >= 1
    assert swept["results"]["counts"]["failed"] == 1
    log = swept["first"].stderr + swept["second"].stderr
    assert "failed; retrying" in log and "failed after 2 attempt(s)" in log
    _client, runs = _runs(swept["tmp"])
    failed = [r for r in runs if r.data.tags.get("facefoundry.role") == "trial" and r.info.status == "FAILED"]
    assert len(failed) == 1 and "injected failure" in failed[0].data.tags["facefoundry.failure"]
    assert (swept["tmp"] / "out" / "results.md").read_text().count("| failed |") == 1


def test_mlflow_tree_sweep_trials_stages(swept):
    client, runs = _runs(swept["tmp"])
    sweeps = [r for r in runs if r.data.tags.get("facefoundry.role") == "sweep"]
    assert len(sweeps) == 1  # one parent, reopened by the resume
    parent = sweeps[0]
    assert parent.info.status == "FINISHED" and parent.data.params["sweep.trials"] == "4"
    trials = [r for r in runs if r.data.tags.get("facefoundry.role") == "trial"]
    assert len(trials) == 4 and all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in trials)
    trial_ids = {r.info.run_id for r in trials}
    stages = [r for r in runs if r.data.tags.get("facefoundry.stage") in ("generate", "validate", "train", "evaluate")]
    assert stages and all(r.data.tags["mlflow.parentRunId"] in trial_ids for r in stages)
    assert all(r.data.tags.get("facefoundry.adhoc") is None for r in stages)
    bench = [r for r in runs if r.data.tags.get("facefoundry.stage") == "benchmark"]
    assert len(bench) == 1 and bench[0].data.tags["mlflow.parentRunId"] == parent.info.run_id
    done = [r for r in trials if r.data.tags.get("facefoundry.trial_status") == "completed"]
    assert done
    for r in done:  # recipe params, dataset hash, data-quality summary, every benchmark accuracy
        assert {"train.lr", "generate.images_per_identity", "sweep.train.lr"} <= set(r.data.params)
        assert r.data.tags["dataset.dvc_md5"].endswith(".dir")
        assert {"data/images", "data/identities", "twins/accuracy", "objective", "val/accuracy"} <= set(r.data.metrics)
        assert r.data.metrics["objective"] == pytest.approx(r.data.metrics["twins/accuracy"])
    for r in trials:
        assert r.info.status in ("FINISHED", "FAILED")
    arts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"sweep_results.md", "results.json", "sweep_spec.yaml"} <= arts
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert {"plots/objective_vs_params.png", "plots/parallel_coordinates.png"} <= plots


def test_two_objectives_give_a_pareto_front_on_the_parent(swept):
    """The searcher is Optuna's multi-objective study (both directions, both values told); the front is the
    completed trials no other beats on accuracy and cost; the parent run shows it (table, picture, tag)."""
    import pickle

    from facefoundry.leaderboard import non_dominated

    out = swept["tmp"] / "out"
    states = sorted((out / "ray" / "tune").glob("searcher-state-*.pkl"), key=lambda p: p.stat().st_mtime)
    study = pickle.loads(states[-1].read_bytes())["_ot_study"]  # the resumed run's (the last saved)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    told = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert told and all(len(t.values) == 2 for t in told)
    results = swept["results"]
    rows = {r["trial"]: r for r in results["rows"]}
    done = [r for r in rows.values() if r["status"] == "completed"]
    for r in done:  # objective_1 is the trial's cost: its dataset's making + its FR training
        acc, cost = r["objectives"]
        assert acc == pytest.approx(r["objective"]) and cost == pytest.approx(r["cost"]["cost/total_seconds"])
        assert cost == pytest.approx(r["cost"]["cost/dataset_seconds"] + r["cost"]["cost/train_seconds"])
        assert r["cost"]["cost/dataset_seconds"] > 0  # also when the trial reused another trial's dataset
    keep = non_dominated([r["objectives"] for r in done], ("max", "min"))
    assert sorted(results["front"]) == sorted(done[i]["trial"] for i in keep) and results["front"]
    assert all(rows[t]["on_front"] for t in results["front"])
    assert "★" in (out / "results.md").read_text() and (out / "front.md").read_text().count("\n") == 2 + len(
        results["front"]
    )
    client, runs = _runs(swept["tmp"])
    (parent,) = [r for r in runs if r.data.tags.get("facefoundry.role") == "sweep"]
    assert parent.data.tags["facefoundry.front"].split(",") == results["front"]
    assert parent.data.params["sweep.objectives"] == "accuracy:max,cost/total_seconds:min"
    assert parent.data.metrics["front_size"] == len(results["front"])
    assert "sweep_front.md" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert "plots/pareto_front.png" in {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    trial = next(r for r in runs if r.info.run_id == done[0]["run_id"])
    assert trial.data.metrics["objective_1"] == pytest.approx(trial.data.metrics["cost/total_seconds"])


def test_shared_dataset_generated_once(swept):
    out = swept["tmp"] / "out"
    made = [json.loads(ln) for ln in (out / "datasets" / "generations.jsonl").read_text().splitlines()]
    keys = [m["key"] for m in made]
    used = {
        json.loads((p / "trial.json").read_text())["dataset_key"]
        for p in (out / "trials").iterdir()
        if (p / "trial.json").is_file()
    }
    assert len(keys) == len(set(keys)) == len(used) <= 2  # one generation per distinct dataset, 4 trials
    _, runs = _runs(swept["tmp"])
    assert sum(r.data.tags.get("facefoundry.stage") == "generate" for r in runs) == len(keys)
    for r in swept["results"]["rows"]:
        if r["status"] == "completed":
            assert r["seconds"]["generate_seconds"] >= 0 and r["dataset"] in used


def test_warm_start_then_repeats_of_the_best_trial(swept):
    """A second sweep, ``--warm-start tests`` (the first sweep's experiment), 2 new trials, ASHA off, with
    ``repeats: {top_k: 1, seeds: [11]}`` (one Ray sweep checks both, to keep the serial tier short).

    Warm start: its Optuna study holds the first sweep's finished trials, with their objectives, before its own.
    Repeats: the best new trial runs again with FR seed 11 on its own dataset, as a tagged trial run under the
    parent; the parent gets the repeats table and metrics (a resumed sweep skipping finished repeats:
    tests/sweep/test_repeats.py)."""
    import pickle

    import mlflow

    tmp = swept["tmp"]
    spec = yaml.safe_load((tmp / "sweep.yaml").read_text())
    spec.update(
        name="test_sweep_warm",
        objective={"metric": "accuracy", "benchmarks": ["twins"], "mode": "max"},  # the first sweep's primary one
        budget={"trials": 2, "max_concurrent": 2},
        asha={"enabled": False},
        repeats={"top_k": 1, "seeds": [11]},
    )
    del spec["inject_failure"]
    (tmp / "sweep_warm.yaml").write_text(yaml.safe_dump(spec))
    out = tmp / "out_warm"
    cmd = [sys.executable, "-m", "facefoundry", "sweep", str(tmp / "sweep_warm.yaml"), "--out", str(out)]
    warm = subprocess.run(
        [*cmd, "--warm-start", "tests"],
        cwd=tmp,
        capture_output=True,
        text=True,
        env={**ENV, "MLFLOW_EXPERIMENT_NAME": "tests-warm"},
        timeout=600,
    )
    assert warm.returncode == 0, warm.stderr[-3000:]
    _client, runs = _runs(tmp)  # experiment tests: the first sweep's runs
    earlier = {
        (r.data.params["train.lr"], r.data.params["generate.images_per_identity"]): r.data.metrics["objective"]
        for r in runs
        if r.data.tags.get("facefoundry.role") == "trial" and r.info.status == "FINISHED"
    }
    assert len(earlier) == 3  # the failed trial is left out
    assert "warm start from experiment 'tests': 3 earlier trial(s) fed to Optuna" in warm.stderr
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp}/mlflow.db")
    exp = client.get_experiment_by_name("tests-warm")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    (parent,) = [r for r in runs if r.data.tags.get("facefoundry.role") == "sweep"]
    tags = parent.data.tags
    assert tags["facefoundry.warm_start"] == "tests" and tags["facefoundry.warm_start_points"] == "3"
    assert tags["facefoundry.warm_start_skipped"] == "1: 1 run FAILED"
    # the searcher's saved state (Ray Tune's experiment folder): the earlier trials, then the 2 new ones
    (state,) = (out / "ray" / "tune").glob("searcher-state-*.pkl")
    study = pickle.loads(state.read_bytes())["_ot_study"].trials  # OptunaSearch.save: its __dict__
    assert len(study) == 5 and all(t.state.name == "COMPLETE" for t in study[:3])
    fed = {(repr(t.params["train.lr"]), str(t.params["generate.images_per_identity"])): t.value for t in study[:3]}
    assert fed == {k: pytest.approx(v) for k, v in earlier.items()}
    results = json.loads((out / "results.json").read_text())
    assert len(results["rows"]) == 2  # the earlier trials are not run again, not in the budget

    rows = {r["trial"]: r for r in results["rows"]}
    best = max((r for r in rows.values() if r["status"] == "completed"), key=lambda r: r["objective"])
    rep = results["repeats"]
    assert rep["seeds"] == [11] and rep["base_seed"] == 7 and rep["completed"] == 1
    (cand,) = rep["candidates"]
    assert cand["trial"] == best["trial"] == rep["winner"] and cand["n"] == 2 and cand["winner"]
    assert cand["values"][0] == pytest.approx(best["objective"])
    assert cand["ci_low"] <= cand["mean"] <= cand["ci_high"]
    assert rows[best["trial"]]["repeat_n"] == 2 and rows[best["trial"]]["winner"] is True
    assert results["best"]["trial"] == best["trial"]
    assert "repeat_mean" in (out / "results.csv").read_text().splitlines()[0]
    folder = out / "repeats" / f"{best['trial']}-seed11"
    info = json.loads((folder / "trial.json").read_text())
    assert info["repeat_of"] == best["trial"] and info["seed"] == 11 and info["dataset_key"] == best["dataset"]
    made = (out / "datasets" / "generations.jsonl").read_text().splitlines()
    assert len(made) == len({r["dataset"] for r in rows.values()})  # the repeat trained on its trial's dataset

    trials = [r for r in runs if r.data.tags.get("facefoundry.role") == "trial"]
    repeats = [r for r in trials if r.data.tags.get("facefoundry.repeat_of")]
    assert len(trials) == 3 and len(repeats) == 1
    (r,) = repeats
    assert r.data.tags["facefoundry.repeat_of"] == best["trial"] and r.data.tags["facefoundry.seed"] == "11"
    assert r.data.tags["mlflow.parentRunId"] == parent.info.run_id and r.info.status == "FINISHED"
    assert r.data.params["base.seed"] == "11" and r.data.params["train.lr"] == str(best["params"]["train.lr"])
    assert r.data.metrics["objective"] == pytest.approx(cand["values"][1])
    assert all(t.data.tags["facefoundry.seed"] == "7" for t in trials if t is not r)
    stages = [s for s in runs if s.data.tags.get("mlflow.parentRunId") == r.info.run_id]
    assert {s.data.tags.get("facefoundry.stage") for s in stages} >= {"train", "evaluate"}
    assert "sweep_repeats.md" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    m = parent.data.metrics
    assert m[f"repeat/{best['trial']}/n"] == 2 and m["best_repeat_mean"] == pytest.approx(cand["mean"])
    assert parent.data.tags["facefoundry.best_trial"] == best["trial"]
    assert "**winner**" in (out / "repeats.md").read_text()
    assert len((folder / "attempts.log").read_text().splitlines()) == 1
