"""A Ray cluster of two node processes (head + worker, ``infra/stack.py``), a sweep through it, and the
worker node killed mid-sweep: its trials are retried or reported, and the sweep records every trial."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import stack
import yaml

from tests.conftest import tiny_config

pytestmark = pytest.mark.services


def raylets() -> set[int]:
    out = subprocess.run(["pgrep", "-f", "raylet/raylet"], capture_output=True, text=True)
    return {int(p) for p in out.stdout.split()}


@pytest.fixture
def two_nodes(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    cluster = stack.RayCluster(tmp_path / "ray", workers=0, cpus_per_node=1)
    before = raylets()
    try:
        cluster.start()  # the head
        head = raylets() - before
        worker = stack.RayCluster(tmp_path / "ray", port=cluster.port, workers=0)
        w = worker._ray(
            "start",
            f"--address={cluster.address}",
            f"--node-ip-address={stack.HOST}",
            "--num-cpus=1",
            "--num-gpus=0",
            "--disable-usage-stats",
        )
        if w.returncode:
            pytest.skip(f"a Ray worker node cannot join here: {(w.stderr or w.stdout).strip()[-300:]}")
        joined = raylets() - before - head
    except stack.StackError as exc:
        pytest.skip(f"Ray cannot start here: {exc}")
    try:
        yield cluster.address, {**env, **cluster.env}, joined
    finally:
        cluster.stop()


def test_a_sweep_survives_a_worker_node_killed_mid_sweep(tmp_path, two_nodes) -> None:
    address, env, worker_raylets = two_nodes
    assert len(worker_raylets) == 1, worker_raylets
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "from facefoundry.sweep.cluster import cluster_auth; "
            f"cluster_auth({address!r}); import ray; ray.init(address={address!r}); "
            "print(len([n for n in ray.nodes() if n['Alive']]))",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert probe.returncode == 0 and probe.stdout.strip().endswith("2"), probe.stderr[-1500:]

    tiny_config(tmp_path, identity={"judge_max_images": 40}, train={"epochs": 6})
    (tmp_path / "sweep.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "two_nodes",
                "params": str(tmp_path / "params.yaml"),
                "space": {"train.lr": {"type": "loguniform", "low": 0.02, "high": 0.2}},
                "budget": {"trials": 2, "max_concurrent": 2},
                "asha": {"enabled": False},
                "seed": 1,
                "failure": {"max_failures": 2},
            }
        )
    )
    run_env = {**env, "GIT_PYTHON_REFRESH": "quiet"}
    run_env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "facefoundry",
            "sweep",
            str(tmp_path / "sweep.yaml"),
            "--out",
            str(tmp_path / "out"),
            "--address",
            address,
        ],
        cwd=tmp_path,
        env=run_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # both trials started (one per node: each node has one CPU) → kill the worker node
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            logs = list((tmp_path / "out").rglob("trial.log"))
            if len(logs) >= 2 and all(p.stat().st_size > 0 for p in logs):
                break
            time.sleep(0.5)
        assert proc.poll() is None, "the sweep ended before the worker could be killed"
        for pid in worker_raylets:
            os.kill(pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    counts = results["counts"]
    assert counts["completed"] + counts.get("failed", 0) == 2, results  # every trial recorded
    assert counts["completed"] >= 1, results
