"""``train.launcher: ray``: the train stage in 2 Ray Train workers (``TorchTrainer``, gloo on CPU) on a real Ray
cluster, a head node started with ``ray start --head --num-cpus 2`` as a user's is.

One driver process runs ``facefoundry train`` (the CLI's own entry, in-process) three times: ``--nproc 2`` (2 Ray Train
workers × batch 8; each BatchNorm replaced by a per-sample norm, flips and AMP off: what ``test_distributed.py`` does
to compare DDP with one process), ``--nproc 3`` on the 2-CPU cluster, and ``--nproc 2`` against an unreachable
address. The first must end with one MLflow run, the model written once, Ray Train's run folder gone, and every
epoch's loss and the final weights equal to 1 process × batch 16 within float32 summation order (test_distributed's
tolerances); the other two must be one ``error:`` line each, at once. About 45 s on 2 cores under a load of 5-7.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest
import torch

from facefoundry.config import load_config
from facefoundry.errors import FaceFoundryError
from facefoundry.sweep import ray_train
from facefoundry.train.trainer import CHECKPOINT, Trainer
from tests.conftest import make_dataset, tiny_config
from tests.train.test_distributed import LOSS_RTOL, WEIGHT_ATOL, quiet, without_batch_norm

ROOT = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))


def per_sample_worker(job: dict) -> dict:
    """What each Ray Train worker runs here: the stage (:func:`ray_train.worker`) without BatchNorm."""
    import facefoundry.train.trainer as trainer_module

    return without_batch_norm(trainer_module, lambda: ray_train.worker(job))


DRIVER = """
import os, sys, time
from facefoundry import cli
from facefoundry.sweep import ray_train
from tests.sweep.test_ray_train import per_sample_worker

ray_train.worker = per_sample_worker  # what each Ray Train worker runs: the stage without BatchNorm
params, unreachable = sys.argv[1:]
for nproc, address in ((2, None), (3, None), (2, unreachable)):
    os.environ["RAY_ADDRESS"] = address or os.environ["RAY_ADDRESS"]
    sys.argv = ["facefoundry", "-p", params, "train", "--nproc", str(nproc)]
    t0 = time.perf_counter()
    try:
        cli.main()
    except SystemExit as exc:
        print(f"EXIT {exc.code} {time.perf_counter() - t0:.1f}", file=sys.stderr, flush=True)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(temp: Path) -> None:
    """Stop this head node's processes only (each names its own temp folder, and their children), not every Ray on
    the machine (``ray stop`` would)."""
    mine = [p for p in psutil.process_iter(["cmdline"]) if any(str(temp) in a for a in p.info["cmdline"] or [])]
    for p in list(mine):
        with contextlib.suppress(psutil.NoSuchProcess):
            mine += p.children(recursive=True)
    for p in mine:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(mine, timeout=10)


def _head_and_driver(tmp: Path, one) -> tuple[subprocess.CompletedProcess, tuple[list[float], dict]]:
    """Start a 2-CPU head node, run 1 process × batch 16 here while it starts, then the driver against it; stop the
    head. (the driver's run, (the one process's epoch losses, its final weights))"""
    import facefoundry.train.trainer as trainer_module

    token = tmp / "ray_token"
    token.write_text(secrets.token_hex(32))
    drop = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "MLFLOW_TRACKING_URI", "LOCAL_RANK", "WORLD_SIZE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(RAY_AUTH_TOKEN_PATH=str(token), GIT_PYTHON_REFRESH="quiet", OMP_NUM_THREADS="1")
    env["RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"] = "0"  # one actor process fewer to start (no preemptible nodes here)
    port, temp = _free_port(), Path("/tmp") / f"ray-rl-{os.getpid()}"  # Ray's socket paths must stay short
    head = dict(env, RAY_AUTH_MODE="token", RAY_worker_niceness="0")  # Ray's niceness 15 starves the workers
    head.update(RAY_enable_worker_prestart="0", RAY_prestart_worker_first_driver="0")  # no idle workers to start
    start = [RAY, "start", "--head", f"--port={port}", "--num-cpus=2", "--num-gpus=0", "--include-dashboard=false"]
    pipe = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    starting = subprocess.Popen([*start, "--disable-usage-stats", f"--temp-dir={temp}"], env=head, **pipe)
    try:
        t = without_batch_norm(trainer_module, lambda: Trainer(one, log=quiet))
        single = ([h.loss for h in t.fit().history], t.net.state_dict())
        _, err = starting.communicate(timeout=180)
        assert starting.returncode == 0, err[-2000:]
        cmd = [sys.executable, "-c", DRIVER, str(tmp / "ray2" / "params.yaml"), f"127.0.0.1:{_free_port()}"]
        return subprocess.run(
            cmd, cwd=ROOT, env=dict(env, RAY_ADDRESS=f"127.0.0.1:{port}"), timeout=300, **pipe
        ), single
    finally:
        starting.kill()
        _stop(temp)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ray")
    ds = make_dataset(tmp / "ds", identities=8, per_identity=6)  # 48 images: 3 global batches of 16 per epoch
    exact = {"dataset": str(ds), "batch_size": 8, "flip_prob": 0.0, "amp": False}
    # the run's MLflow store in memory when there is a tmpfs: SQLite commits there cost no fsync (seconds each here)
    store = Path(tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else tmp))
    base = {"device": "cpu", "tracking_uri": f"sqlite:///{store}/mlflow.db"}
    tiny_config(tmp / "ray2", base=base, train={**exact, "launcher": "ray"})
    one = tiny_config(tmp / "one", base={"device": "cpu"}, train={**exact, "batch_size": 16})
    try:
        driver, single = _head_and_driver(tmp, one)
        assert driver.returncode == 0, driver.stderr[-4000:]
        lines = driver.stderr.splitlines()
        exits = [(int(ln.split()[1]), float(ln.split()[2])) for ln in lines if ln.startswith("EXIT ")]
        errors = [ln for ln in lines if ln.startswith("error: ")]
        yield tmp, store / "mlflow.db", exits, errors, single
    finally:
        shutil.rmtree(store, ignore_errors=True)


@pytest.mark.services
def test_two_ray_workers_train_the_stage_like_one_process_with_the_same_global_batch(trained):
    tmp, db, exits, _, (losses, weights) = trained
    assert exits[0][0] == 0
    out = tmp / "ray2" / "train"
    assert (out / "model").is_dir() and not (out / ray_train.RAY_DIR).exists()  # Ray's run folder removed
    with sqlite3.connect(db) as store:
        runs = store.execute("SELECT run_uuid, status FROM runs").fetchall()
        tags = dict(store.execute("SELECT key, value FROM tags WHERE run_uuid = ?", runs[0][:1]).fetchall())
    assert len(runs) == 1 and runs[0][1] == "FINISHED" and tags["facefoundry.processes"] == "2"
    assert json.loads((out / "mlflow_run.json").read_text())["run_id"] == runs[0][0]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["loss"] == pytest.approx(losses[-1], rel=LOSS_RTOL)
    state = torch.load(out / CHECKPOINT, weights_only=True)
    assert [h["loss"] for h in state["history"]] == pytest.approx(losses, rel=LOSS_RTOL)
    for k, v in weights.items():
        assert torch.allclose(state["net"][k], v, atol=WEIGHT_ATOL, rtol=0), (k, (state["net"][k] - v).abs().max())


@pytest.mark.services
def test_a_cluster_too_small_or_unreachable_is_one_line(trained):
    _, _, exits, errors, _ = trained
    assert [code for code, _ in exits[1:]] == [2, 2]
    assert max(seconds for _, seconds in exits[1:]) < 20  # at once: not after Ray Train's 60 s wait for workers
    assert errors[0] == "error: train.launcher=ray: 3 workers need 3 CPU; the Ray cluster has at most 2 CPU"
    assert errors[1].startswith("error: train.launcher=ray: cannot connect to the Ray cluster at 127.0.0.1:")
    assert len(errors) == 2


# -- without a cluster ----------------------------------------------------------------------------------------------
def test_plan_takes_gpus_when_asked_and_there():
    plan = ray_train.plan
    assert plan("cpu", 2, 0, {"CPU": 4, "GPU": 2}) == (False, {"CPU": 1.0})
    assert plan("auto", 2, 3, {"CPU": 8, "GPU": 2}) == (True, {"CPU": 3.0, "GPU": 1.0})
    assert plan("auto", 2, 0, {"CPU": 8}) == (False, {"CPU": 1.0})
    with pytest.raises(FaceFoundryError, match=r"^train.launcher=ray: 4 workers need 4 GPU; .* at most 8 CPU, 2 GPU$"):
        plan("cuda", 4, 0, {"CPU": 8, "GPU": 2})
    with pytest.raises(FaceFoundryError, match="names one GPU"):
        plan("cuda:0", 2, 0, {"CPU": 8, "GPU": 2})


def test_cli_train_with_launcher_ray_hands_the_stage_to_ray(tmp_path, monkeypatch):
    from facefoundry import cli

    calls = []
    monkeypatch.setattr(ray_train, "launch", lambda *a, **k: calls.append((a, k)) or {})
    monkeypatch.setattr(os, "execv", lambda *a: pytest.fail("torchrun was started"))
    tiny_config(tmp_path, base={"device": "cpu"}, train={"launcher": "ray"})
    argv = ["facefoundry", "-p", str(tmp_path / "params.yaml"), "train", "--nproc", "2", "--stop-after", "1"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as end:
        cli.main()
    assert end.value.code == 0 and len(calls) == 1
    (cfg, nproc, stop_after), kw = calls[0]
    assert (cfg.train.launcher, nproc, stop_after) == ("ray", 2, 1)
    assert kw == {"products": os.path.join(str(tmp_path / "train"), "plots")}


def test_launcher_is_a_runtime_setting(tiny):
    from facefoundry.train.checkpoint import fingerprint

    ray_cfg = load_config(Path(tiny.train.out).parent / "params.yaml", sets=["train.launcher=ray"])
    assert fingerprint(ray_cfg, "d", world=2) == fingerprint(tiny, "d", world=2)  # the same N, the same training
