"""Stages against a real MLflow server on PostgreSQL with S3 artifacts, and the server's faults."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import stack

from tests.conftest import make_dataset, tiny_config

pytestmark = pytest.mark.services

ENV = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
ENV["GIT_PYTHON_REFRESH"] = "quiet"


def ff(tmp: Path, *args: str, wait: bool = True, timeout: float = 300):
    cmd = [sys.executable, "-m", "facefoundry", "--params", str(tmp / "params.yaml"), *args]
    if not wait:
        return subprocess.Popen(cmd, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    return subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, env=ENV, timeout=timeout)


def client(url: str):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=url)


def bucket_keys(s3, prefix: str) -> list[str]:
    keys, token = [], None
    while True:
        kw = {"Bucket": s3.bucket, "Prefix": prefix, **({"ContinuationToken": token} if token else {})}
        page = s3.client().list_objects_v2(**kw)
        keys += [o["Key"] for o in page.get("Contents", [])]
        if not page.get("IsTruncated"):
            return keys
        token = page["NextContinuationToken"]


def test_a_stage_logs_to_the_server_runs_in_postgres_artifacts_in_s3(tmp_path, mlflow_server, postgres, s3) -> None:
    make_dataset(tmp_path / "ds", identities=6, per_identity=4, size=32)
    tiny_config(
        tmp_path,
        base={"tracking_uri": mlflow_server.url, "experiment": "infra-stage"},
        train={"dataset": str(tmp_path / "ds"), "epochs": 1, "batch_size": 8},
    )
    proc = ff(tmp_path, "train")
    assert proc.returncode == 0, proc.stderr[-2000:]
    c = client(mlflow_server.url)
    exp = c.get_experiment_by_name("infra-stage")
    (run,) = c.search_runs([exp.experiment_id], "tags.`facefoundry.stage` = 'train'")
    assert run.info.status == "FINISHED" and "train/loss" in run.data.metrics
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied by the server, no S3 keys on clients
    # the run is a row of the PostgreSQL backend, and its artifacts are objects in the bucket
    import psycopg2

    with (
        psycopg2.connect(host=stack.HOST, port=postgres.port, user="postgres", dbname=postgres.database) as conn,
        conn.cursor() as cur,
    ):
        cur.execute("SELECT status FROM runs WHERE run_uuid = %s", (run.info.run_id,))
        assert cur.fetchone() == ("FINISHED",)
    keys = bucket_keys(s3, f"mlflow/{exp.experiment_id}/{run.info.run_id}/")
    assert any(k.endswith("samples/train_grid.png") for k in keys), keys
    # never the store's credentials in what the run records
    secret = s3.env["AWS_SECRET_ACCESS_KEY"]
    assert not any(secret in str(v) for v in {**run.data.params, **run.data.tags}.values())


# The outage test (the server stops mid-stage, `up` brings it back, the rerun completes) runs with authentication
# on: tests/infra/test_auth.py.


def test_two_pipelines_at_once_keep_their_own_artifacts(tmp_path, mlflow_server) -> None:
    """Two clients log the same artifact names and metrics to one server and bucket at the same time."""
    import mlflow

    c = client(mlflow_server.url)
    exp_id = c.create_experiment(f"infra-concurrent-{time.time_ns()}")
    results: dict[str, str] = {}
    errors: list[BaseException] = []

    def pipeline(name: str) -> None:
        try:
            run = c.create_run(exp_id, run_name=name)
            for k in range(10):
                path = tmp_path / name / f"part_{k}.txt"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(f"{name} {k}")
                c.log_artifact(run.info.run_id, str(path), "out")
                c.log_metric(run.info.run_id, "step_value", float(k), step=k)
            c.set_terminated(run.info.run_id)
            results[name] = run.info.run_id
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=pipeline, args=(n,)) for n in ("left", "right")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    for name, run_id in results.items():
        local = Path(
            mlflow.artifacts.download_artifacts(
                run_id=run_id,
                artifact_path="out",
                tracking_uri=mlflow_server.url,
                dst_path=str(tmp_path / f"dl_{name}"),
            )
        )
        assert sorted(p.read_text() for p in local.iterdir()) == sorted(f"{name} {k}" for k in range(10))
        assert [m.value for m in c.get_metric_history(run_id, "step_value")] == [float(k) for k in range(10)]
