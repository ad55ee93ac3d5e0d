"""Run lifecycle against a real MLflow SQLite store: resume continues the run, kills never leave
RUNNING runs, a no-op rerun adds none, pipeline stages share one parent."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from facefoundry.tracking import fail_stale_runs, pipeline_context
from tests.conftest import make_dataset, tiny_config

ENV = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "FACEFOUNDRY_"))}
ENV["GIT_PYTHON_REFRESH"] = "quiet"


def ff(tmp: Path, *args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "facefoundry", "--params", str(tmp / "params.yaml"), *args],
        cwd=tmp,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**ENV, **(env or {})},
        **kw,
    )


def client_for(tmp: Path):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp}/mlflow.db")


def train_runs(tmp: Path) -> list:
    c = client_for(tmp)
    exp = c.get_experiment_by_name("tests")
    return c.search_runs([exp.experiment_id], "tags.`facefoundry.stage` = 'train'")


@pytest.mark.slow
def test_killed_training_resumes_into_the_same_run(tmp_path):
    make_dataset(tmp_path / "render", identities=6, per_identity=6)
    tiny_config(tmp_path, train={"epochs": 12, "batch_size": 12, "registered_model": None})
    proc = ff(tmp_path, "train")
    ckpt = tmp_path / "train" / "checkpoint.pt"
    deadline = time.time() + 300
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert ckpt.exists(), proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGTERM)  # a scheduler's preemption
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "resume" in err.splitlines()[-1]
    [killed] = train_runs(tmp_path)
    assert killed.info.status != "RUNNING"
    # the next call continues the same run from the checkpoint, to all epochs
    proc = ff(tmp_path, "train")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    [run] = train_runs(tmp_path)
    assert run.info.run_id == killed.info.run_id and run.info.status == "FINISHED"
    assert int(run.data.tags["resumed_from_epoch"]) >= 1
    steps = sorted(m.step for m in client_for(tmp_path).get_metric_history(run.info.run_id, "train/loss"))
    assert steps == list(range(1, 13))
    # a no-op rerun adds no run
    proc = ff(tmp_path, "train")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "nothing to do" in err
    assert len(train_runs(tmp_path)) == 1


KILL_BEFORE_LOGGING = """
import os, signal, sys
import facefoundry.stages.train as stage
real = stage.log_metrics
def log_metrics(metrics, step=None):
    if step == 2 and "train/loss" in metrics:  # epoch 2's checkpoint is written, its metrics are not
        os.kill(os.getpid(), signal.SIGTERM)
    real(metrics, step=step)
stage.log_metrics = log_metrics
from facefoundry.cli import main
sys.argv = ["facefoundry", *sys.argv[1:]]
main()
"""


@pytest.mark.slow
def test_an_epoch_checkpointed_but_not_logged_is_logged_on_resume(tmp_path):
    make_dataset(tmp_path / "render", identities=4, per_identity=4)
    tiny_config(tmp_path, train={"epochs": 3, "batch_size": 8, "registered_model": None})
    script = tmp_path / "kill.py"
    script.write_text(KILL_BEFORE_LOGGING)
    proc = subprocess.run(
        [sys.executable, str(script), "--params", str(tmp_path / "params.yaml"), "train"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert proc.returncode == 130, proc.stderr[-2000:]
    [killed] = train_runs(tmp_path)
    logged = [m.step for m in client_for(tmp_path).get_metric_history(killed.info.run_id, "train/loss")]
    assert logged == [1]
    proc = ff(tmp_path, "train")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert "after epoch 2" in err
    steps = sorted(m.step for m in client_for(tmp_path).get_metric_history(killed.info.run_id, "train/loss"))
    assert steps == [1, 2, 3]


def test_runs_of_dead_processes_are_marked_failed(tmp_path):
    import mlflow

    c = client_for(tmp_path)
    exp = c.create_experiment("stale")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    mine = c.create_run(exp, tags={"facefoundry.pid": str(os.getpid()), "facefoundry.host": socket.gethostname()})
    gone = c.create_run(exp, tags={"facefoundry.pid": str(dead.pid), "facefoundry.host": socket.gethostname()})
    other = c.create_run(exp, tags={"facefoundry.pid": str(dead.pid), "facefoundry.host": "elsewhere"})
    assert fail_stale_runs(c, exp) == [gone.info.run_id]
    assert c.get_run(gone.info.run_id).info.status == "FAILED"
    assert c.get_run(mine.info.run_id).info.status == "RUNNING"
    assert c.get_run(other.info.run_id).info.status == "RUNNING"  # another host: cannot tell, left alone
    del mlflow


def test_pipeline_context(monkeypatch):
    for k in ("FACEFOUNDRY_PIPELINE_ID", "DVC_STAGE", "DVC_ROOT", "DVC_EXP_NAME"):
        monkeypatch.delenv(k, raising=False)
    assert pipeline_context() is None  # a plain CLI call is ad hoc
    monkeypatch.setenv("FACEFOUNDRY_PIPELINE_ID", "sweep-7")
    a = pipeline_context()
    assert a is not None and a["source"] == "env" and a == pipeline_context()
    monkeypatch.delenv("FACEFOUNDRY_PIPELINE_ID")
    monkeypatch.setenv("DVC_STAGE", "train")  # under DVC but no dvc ancestor process (pytest): ad hoc
    assert pipeline_context() is None
