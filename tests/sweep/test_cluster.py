"""A sweep on a Ray cluster: a real head node started with ``ray start --head`` (as a user's cluster
is), the sweep connected to it with ``--address``; it must not start a Ray of its own, and must leave
the cluster running when it ends. Ray >= 2.59 starts such a cluster with token authentication: the
sweep finds the token (~/.ray/auth_token) by itself. An unreachable address is a one-line error.
About a minute on 2 CPU cores."""

import json
import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_config

pytestmark = pytest.mark.services

RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(params=["token", "open"])
def cluster(request, tmp_path):
    """A head node with token authentication (its token in a file the driver is pointed to, as on a
    cluster node), or without."""
    port = _free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
    }
    head = dict(env, RAY_worker_niceness="0")  # Ray's 15 starves the trials beside the other test worker (5× slower)
    if request.param == "token":
        token = tmp_path / "ray_token"
        token.write_text(secrets.token_hex(32))
        env["RAY_AUTH_TOKEN_PATH"] = str(token)
        head.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
    temp = Path("/tmp") / f"ray-test-{os.getpid()}"  # Ray's socket paths must stay short
    start = subprocess.run(
        [
            RAY,
            "start",
            "--head",
            f"--port={port}",
            "--num-cpus=2",
            "--num-gpus=0",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={temp}",
        ],
        capture_output=True,
        text=True,
        env=head,
        timeout=180,
    )
    assert start.returncode == 0, start.stderr[-2000:]
    try:
        yield f"127.0.0.1:{port}", env
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, env=head, timeout=120)


def test_sweep_runs_on_a_running_cluster(tmp_path, cluster):
    address, env = cluster
    tiny_config(tmp_path, identity={"judge_max_images": 40}, train={"epochs": 2})
    (tmp_path / "sweep.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "cluster_sweep",
                "params": str(tmp_path / "params.yaml"),
                "space": {"train.lr": {"type": "loguniform", "low": 0.02, "high": 0.2}},
                "budget": {"trials": 2, "max_concurrent": 2},
                "asha": {"enabled": False},
                "seed": 1,
            }
        )
    )
    env = {k: v for k, v in env.items() if k != "MLFLOW_TRACKING_URI"}
    env["GIT_PYTHON_REFRESH"] = "quiet"
    res = subprocess.run(
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
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["counts"]["completed"] == 2, results
    # the trials ran on the cluster, which is still up: a second driver can connect to it
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "from facefoundry.sweep.cluster import cluster_auth; "
            f"cluster_auth({address!r}); import ray; ray.init(address={address!r}); "
            "print(int(ray.cluster_resources()['CPU']))",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert probe.returncode == 0 and probe.stdout.strip().endswith("2"), probe.stderr[-2000:]


def test_unreachable_cluster_is_one_line(tmp_path):
    tiny_config(tmp_path)
    (tmp_path / "sweep.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "nowhere",
                "params": str(tmp_path / "params.yaml"),
                "space": {"train.lr": {"type": "loguniform", "low": 0.02, "high": 0.2}},
                "budget": {"trials": 2},
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    address = f"127.0.0.1:{_free_port()}"  # nothing listens there
    res = subprocess.run(
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
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert res.returncode == 2, res.stderr[-2000:]
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot connect to the Ray cluster at " + address) and "Traceback" not in res.stderr
