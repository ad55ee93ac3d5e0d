"""A sweep on a Ray cluster: a real head node started with ``ray start --head`` (as a user's cluster
is), the sweep connected to it with ``--address``; it must not start a Ray of its own, and must leave
the cluster running when it ends. Ray >= 2.59 starts such a cluster with token authentication: the
sweep finds the token (~/.ray/auth_token) by itself. An unreachable address is a one-line error.
The token cluster is the team's set-up (``infra/up.sh --auth``): its sweep logs to an authenticated MLflow server
(``--app-name basic-auth``, on SQLite here) as a researcher, from the driver and from the nodes' environment.
On the cluster without authentication each trial trains through Ray Train's ``TorchTrainer`` (``resources.workers:
2``, gloo on CPU: the way ``resources: {gpu: N}`` trains on GPUs). About a minute on 2 CPU cores."""

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

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "infra"))
import stack
import stack_auth

pytestmark = pytest.mark.services

RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _team_server(folder: Path) -> tuple[stack.MlflowServer, dict[str, str], dict[str, str]]:
    """An authenticated MLflow server (MLflow's basic-auth app, users in SQLite) and a researcher made on it with
    ``facefoundry access grant``'s code: the server, the admin's and the researcher's credentials."""
    from facefoundry.tracking.access import grant

    store = stack_auth.Secrets(folder)
    env = stack_auth.server_env(store, folder, f"sqlite:///{folder}/auth.db")
    db = f"sqlite:///{folder}/mlflow.db"
    server = stack.MlflowServer(folder, db, str(folder / "artifacts"), env, app="basic-auth").start()
    admin = stack_auth.admin_env(store)
    with pytest.MonkeyPatch.context() as mp:
        for k, v in admin.items():
            mp.setenv(k, v)
        password = grant(server.url, "rs", "researcher")
    return server, admin, {"MLFLOW_TRACKING_USERNAME": "rs", "MLFLOW_TRACKING_PASSWORD": password}


@pytest.fixture(params=["token", "open"])
def cluster(request, tmp_path):
    """A head node with token authentication (its token in a file the driver is pointed to, as on a
    cluster node) and an authenticated MLflow server whose researcher the node and the driver log as, or
    neither (local SQLite tracking)."""
    port = _free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
        and not k.startswith("MLFLOW_")
    }
    head = dict(env, RAY_worker_niceness="0")  # Ray's 15 starves the trials beside the other test worker (5× slower)
    head["RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"] = "0"  # Ray Train: one actor process fewer per trial (no spot nodes)
    server = team = None
    if request.param == "token":
        token = tmp_path / "ray_token"
        token.write_text(secrets.token_hex(32))
        env["RAY_AUTH_TOKEN_PATH"] = str(token)
        head.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
        server, admin, researcher = _team_server(tmp_path / "mlflow")
        env.update(researcher)
        head.update(researcher)  # the node's account (up --auth: the `ray-nodes` researcher)
        team = {"url": server.url, "admin": admin, "password": researcher["MLFLOW_TRACKING_PASSWORD"]}
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
    try:
        assert start.returncode == 0, start.stderr[-2000:]
        yield f"127.0.0.1:{port}", env, team
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, env=head, timeout=120)
        if server is not None:
            server.stop()


def test_sweep_runs_on_a_running_cluster(tmp_path, cluster, request):
    address, env, team = cluster
    workers = request.node.callspec.params["cluster"] == "open"  # 2 Ray Train workers per trial
    # 2 workers × batch 8 = the one-process trial's batch 16; the trial 0.25 CPU + 2 × 0.25: two trials fit at once
    # (one trial: each starts 7 Ray processes, the controller's and Train's own, which 2 cores start slowly)
    trials, train = (1, {"epochs": 2, "batch_size": 8}) if workers else (2, {"epochs": 2})
    base = {"tracking_uri": team["url"], "experiment": "team-sweeps"} if team else {}
    tiny_config(tmp_path, identity={"judge_max_images": 40}, train=train, **({"base": base} if base else {}))
    (tmp_path / "sweep.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "cluster_sweep",
                "params": str(tmp_path / "params.yaml"),
                "space": {"train.lr": {"type": "loguniform", "low": 0.02, "high": 0.2}},
                "budget": {"trials": trials, "max_concurrent": 2},
                "asha": {"enabled": False},
                "seed": 1,
                **({"resources": {"cpu": 0.25, "gpu": 0, "workers": 2}} if workers else {}),
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
    assert results["counts"]["completed"] == trials, results
    if workers:
        assert "2 at a time, 0.25 CPU each + 2 Ray Train workers × 0.25 CPU" in res.stderr
        _trained_through_ray_train(tmp_path, results)
    if team:
        _logged_as_the_researcher(team, results, res.stdout + res.stderr)
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


def _logged_as_the_researcher(team: dict, results: dict, output: str) -> None:
    """The researcher's sweep, on the authenticated server: the sweep run and every trial's runs FINISHED there
    (the trials logged from the nodes with the node's account); no password in a param, a tag or the output."""
    import mlflow

    with pytest.MonkeyPatch.context() as mp:
        for k, v in team["admin"].items():
            mp.setenv(k, v)
        client = mlflow.MlflowClient(tracking_uri=team["url"])
        exp = client.get_experiment_by_name("team-sweeps")
        runs = client.search_runs([exp.experiment_id], max_results=100)
    roles = [r.data.tags.get("facefoundry.role") for r in runs]
    assert roles.count("sweep") == 1 and roles.count("trial") == len(results["rows"]), roles
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert any(r.data.tags.get("facefoundry.stage") == "train" for r in runs)  # a trial's own training run
    secrets_ = (team["password"], team["admin"]["MLFLOW_TRACKING_PASSWORD"])
    texts = [repr({**r.data.params, **r.data.tags}) for r in runs] + [output]
    assert not [s for s in secrets_ for t in texts if s in t]


def _trained_through_ray_train(tmp: Path, results: dict) -> None:
    """Each trial: one MLflow training run (under the trial's run) of 2 processes, the validation accuracy of both
    epochs in it (rank 0 scored them) and in Ray Tune's results (epoch 1 reported, epoch 2 with the final result),
    Ray Train's run folder gone, the workers' output in the trial folder."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("tests").experiment_id], max_results=100)
    (sweep_run,) = [r for r in runs if r.data.tags.get("facefoundry.role") == "sweep"]
    assert sweep_run.data.params["sweep.workers"] == "2"
    trials = {r.data.tags["facefoundry.trial_id"]: r for r in runs if r.data.tags.get("facefoundry.role") == "trial"}
    trains = [r for r in runs if r.data.tags.get("facefoundry.stage") == "train"]
    assert len(trials) == len(trains) == len(results["rows"])
    for row in results["rows"]:
        trial = next(r for r in trials.values() if r.info.run_id == row["run_id"])
        (train,) = [r for r in trains if r.data.tags["mlflow.parentRunId"] == trial.info.run_id]
        assert train.data.tags["facefoundry.processes"] == "2" and train.info.status == "FINISHED"
        assert trial.data.tags["facefoundry.train_run_id"] == train.info.run_id
        assert [m.step for m in client.get_metric_history(train.info.run_id, "val/twins_accuracy")] == [1, 2]
        (folder,) = (tmp / "out" / "ray" / "tune").glob(f"{row['trial']}*")
        reported = [json.loads(ln) for ln in (folder / "result.json").read_text().splitlines()]
        assert [r["epoch"] for r in reported] == [1, 2] and [r.get("final") for r in reported] == [None, 1]
        history = client.get_metric_history(trial.info.run_id, "val/accuracy")
        assert sorted((m.step, m.value) for m in history) == [(r["epoch"], r["val_accuracy"]) for r in reported]
        out = tmp / "out" / "trials" / row["trial"] / "train"
        assert (out / "model").is_dir() and not (out / "ray_train").exists()
        # the workers' output in the trial folder: rank 0's in trial.log (its epochs), rank 1's beside it
        assert "epoch 2/2" in (out.parent / "trial.log").read_text() and (out.parent / "worker1.log").is_file()


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


def test_a_trial_stopped_by_ray_tune_stops_rank_0(monkeypatch):
    """The trial's side of Ray Train trials (sweep/workers.py) on a local Ray, rank 0 played here: each epoch's
    numbers reach ``on_epoch``; when it raises (Ray Tune ending the trial inside its report) rank 0 is told to stop,
    and the trial raises that once the train stage has ended; otherwise rank 0's result comes back."""
    import ray

    from facefoundry.sweep import ray_train, workers

    def rank0(cfg, nproc, *, loop, cpus, log=None):  # what launch() runs, reduced to rank 0's side of the mailbox
        box = loop.args[0]
        for epoch in (1, 2, 3):
            ray.get(box.put.remote({"epoch": epoch}))
            if ray.get(box.wait_answer.remote()) == workers.STOP:
                ended.append(epoch)
                raise RuntimeError("rank 0 stopped: Ray Train ends the workers")
        return {"epochs": 3}

    monkeypatch.setattr(ray_train, "launch", rank0)
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        seen, ended = [], []
        assert workers.train_in_workers(None, 2, 1, {}, lambda n: seen.append(n["epoch"])) == {"epochs": 3}
        assert seen == [1, 2, 3] and not ended

        def report(n):
            seen.append(n["epoch"])
            if n["epoch"] == 2:
                raise SystemExit(0)  # what tune.report raises in a trial Ray Tune stops

        seen.clear()
        with pytest.raises(SystemExit):
            workers.train_in_workers(None, 2, 1, {}, report)
        assert seen == [1, 2] and ended == [2]
    finally:
        ray.shutdown()
