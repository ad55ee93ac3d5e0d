"""Training on a Ray cluster: ``train.launcher: ray`` runs the train stage in N Ray Train workers.

``facefoundry --set train.launcher=ray train --nproc N`` connects to the cluster (``RAY_ADDRESS``, else the one
running on this node) and hands the stage to Ray Train's ``TorchTrainer`` (Ray Train V2, the default of Ray 2.60):
N workers, one GPU each when ``base.device`` asks for GPUs and the cluster has them, else gloo on CPU. Ray Train
sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` and initialises the process group before the stage starts, so
:func:`facefoundry.train.distributed.setup` finds it made; from there each worker runs exactly what a torchrun
process runs (:func:`facefoundry.stages.train.run_train`): rank 0 alone opens the MLflow run and writes the
checkpoints, the metrics file and the model folder; N workers train as N torchrun processes do (the same sampler
shards, the same global batch of N × ``train.batch_size``). This process only waits, and returns rank 0's result.

``train.out`` (and every path of the config) must be one folder every node reads: rank 0 writes there and all ranks
resume from its checkpoint; Ray Train's own run folder (``<train.out>/ray_train/<run>``, removed afterwards) checks
that every node reaches it. Relative paths mean what they mean in this process's working directory.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from facefoundry.config import Config
from facefoundry.errors import FaceFoundryError

RAY_DIR = "ray_train"  # under train.out: Ray Train's run folders while they run
# what the workers need from this process's environment (tracking, pipeline grouping); never credentials
_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_S3_ENDPOINT_URL", "GIT_PYTHON_REFRESH")


def _env() -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in _ENV or k.startswith("FACEFOUNDRY_")}
    return {k: v for k, v in keep.items() if not any(s in k for s in ("TOKEN", "PASSWORD", "SECRET", "KEY"))}


def worker(job: dict[str, Any], epoch_hook: Callable | None = None) -> dict:
    """One Ray Train worker: the driver's environment and working directory, its GPU, then the train stage
    (``epoch_hook``: the stage's, which rank 0 calls after each epoch: a sweep trial's, :mod:`.sweep.workers`)."""
    os.environ.update(job["env"])
    if job.get("log"):  # a sweep trial's: its workers' output in the trial folder, not only Ray's session logs
        return _logged(job, epoch_hook)
    if os.path.isdir(job["cwd"]):
        os.chdir(job["cwd"])  # Ray Train starts workers in its own folder; relative paths are the driver's
    if job["gpu"]:  # the GPU Ray assigned (CUDA_VISIBLE_DEVICES holds the node's workers' GPUs): setup() takes it
        from ray.train.torch import get_device

        os.environ["LOCAL_RANK"] = str(get_device().index or 0)
    from facefoundry.stages.train import run_train

    return run_train(job["cfg"], job["stop_after"], epoch_hook=epoch_hook, products=job["products"])


def _logged(job: dict[str, Any], epoch_hook: Callable | None) -> dict:
    """:func:`worker` with its stdout/stderr appended to the trial's log (rank 0) or ``worker<rank>.log`` beside it."""
    from ray.train import get_context

    from facefoundry.io import output_to

    log = Path(job["log"])
    rank = get_context().get_world_rank()
    path = log if rank == 0 else log.with_name(f"worker{rank}.log")
    with output_to(path):
        return worker({**job, "log": None}, epoch_hook)


def _connect(address: str | None) -> bool:
    """Join the cluster (``address``, RAY_ADDRESS, or the one on this node); True when this call connected."""
    import sys

    if "ray" in sys.modules and sys.modules["ray"].is_initialized():  # a sweep trial, or a caller that connected
        return False
    from facefoundry.sweep.cluster import _init_ray, cluster_auth

    where = address or os.environ.get("RAY_ADDRESS") or "auto"
    cluster_auth(where)  # before Ray is imported: it reads RAY_AUTH_MODE then
    try:
        _init_ray(where, True, {})
    except FaceFoundryError as exc:
        if where == "auto":
            raise FaceFoundryError(
                "train.launcher=ray: no Ray cluster to join (RAY_ADDRESS is unset and none runs on this node): "
                "set RAY_ADDRESS=<head>:6379, or start one with `ray start --head`"
            ) from None
        raise FaceFoundryError(f"train.launcher=ray: {exc}") from None
    return True


def _capacity() -> dict[str, float]:
    """The most of each resource the cluster has now or may scale to (its autoscaler's node types)."""
    import ray

    have = dict(ray.cluster_resources())
    try:
        from ray._private.state import state

        top = state.get_max_resources_from_cluster_config() or {}
    except Exception:  # an internal API: without it, what the cluster has now
        top = {}
    return {k: max(float(have.get(k, 0)), float(top.get(k, 0))) for k in {*have, *top}}


def plan(
    device: str, nproc: int, threads: int, capacity: dict[str, float], cpus: float | None = None
) -> tuple[bool, dict[str, float]]:
    """(whether the workers train on GPUs, each worker's resources) for ``nproc`` workers of ``cpus`` CPUs each
    (None: ``max(1, threads)``); a one-line error when the cluster cannot hold them."""
    if device.startswith("cuda:"):
        raise FaceFoundryError(
            f"train.launcher=ray: base.device={device!r} names one GPU; each worker takes its own "
            "(set base.device to auto or cuda)"
        )
    gpu = device == "cuda" or (device == "auto" and capacity.get("GPU", 0) >= 1)
    each = {"CPU": float(cpus or max(1, threads)), **({"GPU": 1.0} if gpu else {})}
    short = [f"{nproc * v:g} {k}" for k, v in each.items() if nproc * v > capacity.get(k, 0)]
    if short:
        has = ", ".join(f"{capacity.get(k, 0):g} {k}" for k in each)
        raise FaceFoundryError(
            f"train.launcher=ray: {nproc} workers need {' and '.join(short)}; the Ray cluster has at most {has}"
        )
    return gpu, each


def _failure(exc: BaseException, nproc: int, each: dict[str, float]) -> BaseException:
    """What a failed TorchTrainer.fit() means to the user: a worker's own error (lowest rank first; a
    FaceFoundryError stays one line), or one line when the workers could not start."""
    failures = getattr(exc, "worker_failures", None)
    if failures:
        err = failures[min(failures)]
        return FaceFoundryError(str(err)) if isinstance(err, FaceFoundryError) else err
    cause = getattr(exc, "controller_failure", None)
    if type(cause).__name__ in ("WorkerGroupStartupTimeoutError", "InsufficientClusterResourcesError"):
        first = str(cause).strip().splitlines()[0]
        return FaceFoundryError(
            f"train.launcher=ray: the cluster did not start {nproc} workers × {each} ({first}); "
            "free or add resources, or wait longer with RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S=<seconds>"
        )
    return exc


def launch(
    cfg: Config,
    nproc: int,
    stop_after: int | None = None,
    products: str | None = None,
    *,
    address: str | None = None,
    loop: Callable[[dict[str, Any]], dict] | None = None,
    cpus: float | None = None,
    log: Path | None = None,
) -> dict:
    """Run the train stage in ``nproc`` Ray Train workers and wait: rank 0's result (``run_train``'s dict).
    ``loop``: the function each worker runs with the job; None: :func:`worker` (tests and sweep trials wrap it).
    ``cpus``: each worker's CPUs (a sweep trial's ``resources.cpu``); None: ``max(1, train.threads)``.
    ``log``: where rank 0's output goes (rank k's to ``worker<k>.log`` beside it); None: Ray's own logs."""
    from facefoundry.train.distributed import launched

    if launched():
        raise FaceFoundryError("train.launcher=ray: this process was started by torchrun; use one launcher")
    connected = _connect(address)
    try:
        gpu, each = plan(cfg.base.device, nproc, cfg.train.threads, _capacity(), cpus)
        if not gpu and cfg.base.device != "cpu":  # the workers' own GPUs are not theirs to take
            cfg = cfg.model_copy(update={"base": cfg.base.model_copy(update={"device": "cpu"})})
        return _fit(cfg, nproc, stop_after, products, gpu, each, loop or worker, log)
    finally:
        if connected:
            import ray

            ray.shutdown()


def _fit(
    cfg: Config,
    nproc: int,
    stop_after: int | None,
    products: str | None,
    gpu: bool,
    each: dict[str, float],
    loop: Callable[[dict[str, Any]], dict],
    log: Path | None = None,
) -> dict:
    from ray.train.v2._internal.constants import is_v2_enabled
    from ray.train.v2.api.config import FailureConfig, RunConfig, ScalingConfig
    from ray.train.v2.api.exceptions import TrainingFailedError
    from ray.train.v2.torch.torch_trainer import TorchTrainer

    if not is_v2_enabled():
        raise FaceFoundryError("train.launcher=ray needs Ray Train V2, Ray's default: unset RAY_TRAIN_V2_ENABLED")
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")  # the workers' lines once, not twice
    storage = Path(cfg.train.out).resolve() / RAY_DIR
    name = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    job = {
        "cfg": cfg,
        "stop_after": stop_after,
        "products": products,
        "cwd": os.getcwd(),
        "env": _env(),
        "gpu": gpu,
        "log": str(Path(log).resolve()) if log else None,
    }
    trainer = TorchTrainer(
        loop,
        train_loop_config=job,
        scaling_config=ScalingConfig(num_workers=nproc, use_gpu=gpu, resources_per_worker=each),
        run_config=RunConfig(
            name=name,
            storage_path=str(storage),
            # a failed worker fails the run (the same command resumes from the checkpoint); a cluster that cannot
            # start the workers fails after RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S (Ray's default 60 s)
            failure_config=FailureConfig(max_failures=0, controller_failure_limit=0),
        ),
    )
    try:
        result = trainer.fit()
    except TrainingFailedError as exc:
        raise _failure(exc, nproc, each) from exc
    finally:
        shutil.rmtree(storage / name, ignore_errors=True)
        if storage.is_dir() and not any(storage.iterdir()):
            storage.rmdir()
    return getattr(result, "return_value", None) or {}  # rank 0's (Ray Train V2's Result)
