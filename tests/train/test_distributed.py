"""DDP on CPU: gloo and 2 real processes (``torch.multiprocessing.spawn``), the sampler's shards, each rank's device,
and ``facefoundry train --nproc N``.

One spawn of 2 processes runs every DDP scenario (``ddp`` fixture), so the processes start once:

- **same global batch**: 2 processes × batch 8 against 1 process × batch 16, 2 epochs of 3 steps. BatchNorm
  normalises with each rank's own batch (no SyncBatchNorm), flips are drawn per rank, and bf16 autocast (``train.amp``
  on a bf16 CPU) rounds differently for another batch size; so this scenario normalises each sample by itself
  (:func:`per_sample_norm`), with flips and AMP off. What is then guaranteed is that every epoch's loss and every
  final weight match within float32 summation order (tolerances below).
- **resume**: 2 processes stop after epoch 1 and resume (real BatchNorm, flips on) against an unbroken 2-process run:
  bit for bit equal.
- **rank 0 writes**: an audit hook in each process records every file it opens for writing, renames or creates
  under the test's folder; rank 1 records none.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from facefoundry.config import load_config
from facefoundry.data.sources import open_source
from facefoundry.errors import FaceFoundryError
from facefoundry.train import distributed
from facefoundry.train.checkpoint import fingerprint
from facefoundry.train.feed import Feeder
from facefoundry.train.trainer import CHECKPOINT, Trainer
from tests.conftest import make_dataset, tiny_config

# float32 sums in another order (DDP averages two half-batch gradients); measured after 6 steps: max |Δw| 6.8e-7,
# epoch loss relative 6.5e-8
WEIGHT_ATOL = 1e-5
LOSS_RTOL = 1e-6


def quiet(_msg):
    pass


def per_sample_norm(net: nn.Module) -> nn.Module:
    """Each BatchNorm normalising every sample by itself (one group over all its channels, with BatchNorm's affine
    weights): a well-scaled network whose output does not depend on which other images share the batch."""
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.forward = lambda x, m=m: F.group_norm(x, 1, m.weight, m.bias, m.eps)  # type: ignore[method-assign]
    return net


def without_batch_norm(trainer_module, fn):
    build = trainer_module.build_backbone
    trainer_module.build_backbone = lambda *a, **k: per_sample_norm(build(*a, **k))
    try:
        return fn()
    finally:
        trainer_module.build_backbone = build


def _writes(root: str, log: list) -> None:
    """Record what this process writes under ``root`` (opens for writing, renames, new folders, SQLite stores)."""
    write = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & write)
        elif event == "os.rename":  # os.replace too: (src, dst, ...)
            path, writing = args[1], True
        elif event in ("os.mkdir", "os.remove", "sqlite3.connect"):
            path, writing = args[0], True
        else:
            return
        if writing and isinstance(path, (str, os.PathLike)) and str(path).startswith(root):
            log.append((event, str(path)))

    sys.addaudithook(hook)


def join_world(rank: int, world: int, port: int) -> None:
    """This process's place in a local gloo world, as torchrun would set it (one thread each)."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)


def three_runs(tmp: Path, trainer_module) -> dict:
    """In a worker: the "same" global batch run (no BatchNorm), one "killed" after epoch 1 and resumed, and an
    "unbroken" one, from the configs under ``tmp``: {scenario: (losses or resumed epoch, final weights)}."""
    out: dict = {}
    same = load_config(tmp / "same2" / "params.yaml")
    t = without_batch_norm(trainer_module, lambda: Trainer(same, log=quiet))
    out["same"] = ([h.loss for h in t.fit().history], t.net.state_dict())
    resumed = load_config(tmp / "resumed" / "params.yaml")
    Trainer(resumed, log=quiet).fit(stop_after=1)  # "killed" after epoch 1
    t = Trainer(resumed, log=quiet)
    out["resumed"] = (t.fit().resumed_from, t.net.state_dict())
    t = Trainer(load_config(tmp / "unbroken" / "params.yaml"), log=quiet)
    out["unbroken"] = ([h.loss for h in t.fit().history], t.net.state_dict())
    return out


def _worker(rank: int, world: int, port: int, root: str) -> None:
    join_world(rank, world, port)
    import facefoundry.train.trainer as trainer_module

    writes: list = []
    _writes(root, writes)
    tmp, out = Path(root), {}
    try:
        out.update(three_runs(tmp, trainer_module))
        out["writes"] = list(writes)
    finally:
        distributed.shutdown()
    torch.save(out, tmp / f"rank{rank}.pt")


def two_processes_and_one(tmp: Path, worker, one) -> tuple[Path, list[dict], tuple[list[float], dict]]:
    """Run ``worker`` in 2 gloo processes (each saves ``rank<r>.pt`` under ``tmp``), then config ``one`` in this
    process without BatchNorm: (tmp, the ranks' records, (epoch losses, final weights) of the one process)."""
    torch.multiprocessing.spawn(worker, args=(2, _free_port(), str(tmp)), nprocs=2, join=True)
    import facefoundry.train.trainer as trainer_module

    t = without_batch_norm(trainer_module, lambda: Trainer(one, log=quiet))
    single = ([h.loss for h in t.fit().history], t.net.state_dict())
    ranks = [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(2)]
    return tmp, ranks, single


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    ds = make_dataset(tmp / "ds", identities=8, per_identity=6)  # 48 images: 3 global batches of 16 per epoch
    exact = {"dataset": str(ds), "batch_size": 8, "flip_prob": 0.0, "amp": False}
    tiny_config(tmp / "same2", train={**exact, "out": str(tmp / "same2" / "train")})
    one = tiny_config(tmp / "same1", train={**exact, "batch_size": 16, "out": str(tmp / "same1" / "train")})
    for name in ("resumed", "unbroken"):
        tiny_config(tmp / name, train={"dataset": str(ds), "batch_size": 8, "out": str(tmp / name / "train")})
    return two_processes_and_one(tmp, _worker, one)


@pytest.mark.slow  # 2 processes start once for all four: ~15 s on 2 cores
def test_two_processes_match_one_process_with_the_same_global_batch(ddp):
    _, ranks, (losses, weights) = ddp
    ddp_losses, ddp_weights = ranks[0]["same"]
    assert ddp_losses == pytest.approx(losses, rel=LOSS_RTOL)  # every epoch's mean over all 48 images
    for k, v in weights.items():
        assert torch.allclose(ddp_weights[k], v, atol=WEIGHT_ATOL, rtol=0), (k, (ddp_weights[k] - v).abs().max())
    assert ranks[1]["same"][0] == ddp_losses  # the epoch's numbers are summed over the ranks: all agree


@pytest.mark.slow  # 2 processes start once for all four: ~15 s on 2 cores
def test_replicas_hold_the_same_weights(ddp):
    _, ranks, _ = ddp
    for scenario in ("same", "resumed", "unbroken"):
        w0, w1 = ranks[0][scenario][1], ranks[1][scenario][1]
        for k, v in w0.items():
            if "running_" not in k and "num_batches" not in k:  # BatchNorm statistics are per rank
                assert torch.equal(v, w1[k]), (scenario, k)


@pytest.mark.slow  # 2 processes start once for all four: ~15 s on 2 cores
def test_resuming_two_processes_equals_an_unbroken_run(ddp):
    _, ranks, _ = ddp
    for rank in ranks:
        resumed_from, weights = rank["resumed"]
        assert resumed_from == 1  # every rank read rank 0's epoch-1 checkpoint
        for k, v in rank["unbroken"][1].items():
            assert torch.equal(weights[k], v), k


@pytest.mark.slow  # 2 processes start once for all four: ~15 s on 2 cores
def test_only_rank_zero_writes(ddp):
    tmp, ranks, _ = ddp
    assert ranks[1]["writes"] == []
    written = {Path(p).name for _, p in ranks[0]["writes"]}
    assert CHECKPOINT in written and (tmp / "resumed" / "train" / CHECKPOINT).is_file()


# -- without processes ------------------------------------------------------------------------------------------------
def test_ranks_shards_make_the_one_process_batches_and_reshuffle_per_epoch(tmp_path):
    source = open_source(make_dataset(tmp_path / "ds", identities=5, per_identity=7))  # 35: the tail is dropped
    one = Feeder(source, 32, 8, 64)
    shards = [Feeder(source, 32, 4, 64, rank=r, world=2) for r in range(2)]
    assert one.steps_per_epoch() == shards[0].steps_per_epoch() == 4
    for seed in (3, 4):
        whole = [set(idx.tolist()) for _, _, idx in one.epoch(seed, indices=True)]
        parts = [[idx for _, _, idx in f.epoch(seed, indices=True)] for f in shards]
        for step, (a, b) in enumerate(zip(*parts)):
            assert not set(a.tolist()) & set(b.tolist())
            assert set(a.tolist()) | set(b.tolist()) == whole[step]  # the same global batch, by dataset index
    assert [i.tolist() for *_, i in shards[0].epoch(3, indices=True)] == [
        i.tolist() for *_, i in shards[0].epoch(3, indices=True)
    ]
    assert [i.tolist() for *_, i in shards[0].epoch(3, indices=True)] != [
        i.tolist() for *_, i in shards[0].epoch(4, indices=True)
    ]


def _fake_cuda(monkeypatch, count: int, calls: dict) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.setdefault("set_device", d))
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda backend: calls.setdefault("backend", backend))


def test_each_rank_takes_the_gpu_of_its_local_rank(monkeypatch):
    calls: dict = {}
    _fake_cuda(monkeypatch, 2, calls)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    rank, world, device = distributed.setup("auto")
    assert (rank, world, device) == (1, 2, torch.device("cuda", 1))
    assert calls == {"set_device": torch.device("cuda", 1), "backend": "nccl"}
    assert distributed.device_ids(device) == [1]
    with pytest.raises(FaceFoundryError, match="names one GPU"):
        distributed.setup("cuda:0")
    calls.clear()
    assert distributed.setup("cpu") == (1, 2, torch.device("cpu"))  # CPU stays CPU: gloo
    assert calls == {"backend": "gloo"} and distributed.device_ids(torch.device("cpu")) is None
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(FaceFoundryError, match="2 CUDA devices"):
        distributed.setup("auto")


def test_one_process_creates_no_group(monkeypatch):
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    assert distributed.setup("cpu") == (0, 1, torch.device("cpu"))
    assert not torch.distributed.is_initialized()
    assert distributed.all_sum([1, 2.5], torch.device("cpu")) == [1.0, 2.5]
    assert distributed.from_rank_zero("x") == "x" and distributed.spread(3, torch.device("cpu")) == (3, 3)


def test_the_number_of_processes_is_part_of_the_fingerprint(tiny):
    one = fingerprint(tiny, "digest")
    assert fingerprint(tiny, "digest", world=1) == one  # one process: as before DDP was counted
    assert fingerprint(tiny, "digest", world=2) != one  # another global batch: no resume across world sizes


def test_torchrun_command(monkeypatch):
    from torch.distributed.run import get_args_parser

    for k in ("LOCAL_RANK", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(k, raising=False)
    assert distributed.torchrun_command(1, "auto", ["train"]) is None
    argv = ["-p", "x.yaml", "-s", "train.lr=0.1", "--set", "a=-1", "train", "--nproc", "2", "--stop-after", "1"]
    cmd = distributed.torchrun_command(2, "cpu", [*argv, "--nproc=2"])
    assert cmd is not None and cmd[:2] == ["-m", "torch.distributed.run"]
    parsed = get_args_parser().parse_args(cmd[2:])  # torchrun's own parser: what each process is started with
    assert parsed.module and parsed.training_script == "facefoundry" and parsed.nproc_per_node == "2"
    assert parsed.training_script_args == [*argv[:7], *argv[9:]]  # all but --nproc 2
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert distributed.torchrun_command(2, "cpu", ["train"]) is None  # a launched process trains itself
    monkeypatch.delenv("LOCAL_RANK")
    _fake_cuda(monkeypatch, 1, {})
    with pytest.raises(FaceFoundryError, match="1 CUDA devices"):
        distributed.torchrun_command(2, "auto", ["train"])
    with pytest.raises(FaceFoundryError, match="names one GPU"):
        distributed.torchrun_command(2, "cuda:0", ["train"])


def test_cli_train_nproc_execs_torchrun(tmp_path, monkeypatch):
    from facefoundry import cli

    for k in ("LOCAL_RANK", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(k, raising=False)
    tiny_config(tmp_path, base={"device": "cpu"})
    argv = ["facefoundry", "-p", str(tmp_path / "params.yaml"), "train", "--nproc", "2"]
    monkeypatch.setattr(sys, "argv", argv)

    class Exec(Exception):
        pass

    def execv(path, args):
        raise Exec(path, args)

    monkeypatch.setattr(os, "execv", execv)
    with pytest.raises(Exec) as got:
        cli.main()
    path, args = got.value.args
    assert path == sys.executable
    assert args[:6] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m"]
    assert args[6:] == ["facefoundry", "-p", str(tmp_path / "params.yaml"), "train"]


# In the worker processes torchrun starts (on PYTHONPATH): rank 1 is killed (SIGKILL) as its epoch 2 begins, after
# rank 0 wrote epoch 1's checkpoint; torchrun then stops rank 0 too, as it does for any dead rank.
KILL_RANK_1 = """
import os, signal
if os.environ.get("RANK") == "1":
    from facefoundry.train import trainer
    track = trainer.track
    def killing_track(*args, **kwargs):
        if str(kwargs.get("desc", "")).startswith("train 2/"):
            os.kill(os.getpid(), signal.SIGKILL)
        return track(*args, **kwargs)
    trainer.track = killing_track
"""


@pytest.mark.slow
def test_facefoundry_train_nproc_2_is_one_stage_and_one_run_and_a_killed_rank_resumes_to_the_same_model(tmp_path):
    """The real launcher: torchrun, 2 gloo processes, the whole stage; MLflow sees one run, rank 0 writes the rest.
    One rank killed mid-run: the same command resumes into the same MLflow run and ends with the unbroken run's
    weights, bit for bit."""
    import json
    import sqlite3
    import subprocess

    ds = make_dataset(tmp_path / "ds", identities=8, per_identity=6)
    cfg = tiny_config(tmp_path, base={"device": "cpu"}, train={"dataset": str(ds), "batch_size": 8})
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "LOCAL_RANK", "WORLD_SIZE")}
    env["GIT_PYTHON_REFRESH"] = "quiet"

    def train(out: Path, extra_env: dict | None = None) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "facefoundry", "-p", str(tmp_path / "params.yaml"), "--set", f"train.out={out}"]
        return subprocess.run(
            [*cmd, "train", "--nproc", "2"],
            env={**env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=300,
        )

    out = Path(cfg.train.out)
    done = train(out)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 2
    assert (out / "model").is_dir() and (out / CHECKPOINT).is_file()
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        runs = db.execute("SELECT run_uuid FROM runs").fetchall()
        tags = dict(db.execute("SELECT key, value FROM tags WHERE run_uuid = ?", runs[0]).fetchall())
    assert len(runs) == 1 and tags["facefoundry.processes"] == "2"
    assert json.loads((out / "mlflow_run.json").read_text())["run_id"] == runs[0][0]

    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(KILL_RANK_1)
    killed_out = tmp_path / "killed"
    killed = train(killed_out, {"PYTHONPATH": os.pathsep.join([str(hook), env.get("PYTHONPATH", "")])})
    assert killed.returncode != 0 and not (killed_out / "model").exists()  # torchrun reports the dead rank
    assert torch.load(killed_out / CHECKPOINT, weights_only=False)["epoch"] == 1  # epoch 1 kept
    run_id = json.loads((killed_out / "mlflow_run.json").read_text())["run_id"]
    resumed = train(killed_out)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr + resumed.stdout
    assert json.loads((killed_out / "mlflow_run.json").read_text())["run_id"] == run_id  # the same MLflow run
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        status = db.execute("SELECT status FROM runs WHERE run_uuid = ?", (run_id,)).fetchone()[0]
    assert status == "FINISHED"
    a = torch.load(out / CHECKPOINT, weights_only=False)["net"]
    b = torch.load(killed_out / CHECKPOINT, weights_only=False)["net"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # the unbroken run's weights
