"""A sweep trial that trains in N Ray Train workers (``resources: {gpu: N}`` with N > 1, or ``resources.workers``).

The trial stays what it is (a Ray Tune function trainable: its dataset, its MLflow run, evaluation, the reports to
Ray Tune) and hands only the train stage to :func:`facefoundry.sweep.ray_train.launch`, as ``train.launcher: ray``
does: Ray Train's ``TorchTrainer`` (V2) starts N workers with their own resources, the way Ray Train runs inside
Ray Tune. So the trial holds ``resources.cpu`` CPUs and no GPU, and each worker ``resources.cpu`` CPUs plus one
GPU when they train on GPUs; the trial's dataset and its evaluation run on CPU in the trial itself.

Every epoch's validation reaches Ray Tune as with one process: rank 0 (the one that calls the train stage's epoch
hook) scores its backbone with the :class:`~facefoundry.sweep.scorer.EpochScorer`, logs it into the training run,
and sends the epoch's numbers to the trial through a small mailbox actor; the trial reports them to Ray Tune and
answers. Rank 0 waits for the answer, so ASHA's stop meets training where it meets a one-process trial: the answer
is then "stop", rank 0 raises, Ray Train ends every worker, and the trial ends as a stopped one.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from facefoundry.config import Config
from facefoundry.errors import FaceFoundryError
from facefoundry.sweep.spec_model import SweepSpec

GO, STOP = "go", "stop"
JOIN_SECONDS = 120.0  # how long a stopped trial waits for Ray Train to end its workers


class TrialStopped(Exception):
    """Raised in rank 0 when Ray Tune ended the trial: Ray Train then ends every worker."""


# -- resources -------------------------------------------------------------------------------------------------
def trial_resources(spec: SweepSpec, gpu: float) -> tuple[dict[str, float], dict[str, float]]:
    """(what the trial's own actor holds, what each Ray Train worker holds) for a trial of N > 1 workers; ``gpu``:
    ``resources.gpu`` resolved (``auto``: 1 when the cluster has GPUs, else 0)."""
    cpu = spec.resources.cpu
    return {"cpu": cpu, "gpu": 0.0}, {"CPU": cpu, **({"GPU": 1.0} if gpu else {})}


def concurrency(spec: SweepSpec, gpu: float, capacity: dict[str, float]) -> int:
    """How many trials of N > 1 workers run at once: ``budget.max_concurrent``, capped to what the cluster can hold
    (or scale to), so no trial's workers wait for another's; one line when not even one fits."""
    n = spec.resources.train_workers
    actor, each = trial_resources(spec, gpu)
    need = {"CPU": actor["cpu"] + n * each["CPU"], **({"GPU": n * each["GPU"]} if "GPU" in each else {})}
    fits = min(math.floor(capacity.get(k, 0.0) / v + 1e-9) for k, v in need.items())
    if fits < 1:
        has = ", ".join(f"{capacity.get(k, 0.0):g} {k}" for k in need)
        raise FaceFoundryError(
            f"resources: a trial of {n} Ray Train workers needs {' and '.join(f'{v:g} {k}' for k, v in need.items())} "
            f"(the trial {actor['cpu']:g} CPU, each worker {', '.join(f'{v:g} {k}' for k, v in each.items())}); "
            f"the Ray cluster has at most {has}"
        )
    return min(spec.budget.max_concurrent, fits)


def describe(spec: SweepSpec, gpu: float) -> str:
    """The sweep's line about each trial's resources."""
    _, each = trial_resources(spec, gpu)
    return (
        f"{spec.resources.cpu:g} CPU each + {spec.resources.train_workers} Ray Train workers × "
        f"{' + '.join(f'{v:g} {k}' for k, v in each.items())}"
    )


# -- in the trial ----------------------------------------------------------------------------------------------
def _mailbox():
    """A 0-CPU actor owned by the trial (it ends with it): rank 0's epoch results in, the trial's answers out."""
    import asyncio

    import ray

    @ray.remote(num_cpus=0)
    class Mailbox:
        def __init__(self) -> None:
            self.results: asyncio.Queue = asyncio.Queue()
            self.answers: asyncio.Queue = asyncio.Queue()

        async def put(self, item: Any) -> None:
            await self.results.put(item)

        async def get(self) -> Any:
            return await self.results.get()

        async def answer(self, word: str) -> None:
            await self.answers.put(word)

        async def wait_answer(self) -> str:
            return await self.answers.get()

    return Mailbox.remote()


def train_in_workers(
    cfg: Config,
    workers: int,
    cpus: float,
    validation: dict[str, Any],
    on_epoch: Callable[[dict[str, Any]], None],
    log: Path | None = None,
) -> dict:
    """Run the train stage of ``cfg`` in ``workers`` Ray Train workers of ``cpus`` CPUs each and wait; call
    ``on_epoch(numbers)`` in this thread for every epoch rank 0 finishes (it may raise: Ray Tune ended the trial,
    and the workers are then stopped before it is raised here). Rank 0's result (``run_train``'s dict).
    ``log``: the trial's log, which rank 0's output joins (rank k's: ``worker<k>.log`` beside it).

    ``validation``: the scorer's settings (``name``, ``path``, ``pairs``, ``flip``), for rank 0."""
    import ray

    from facefoundry.sweep import ray_train

    box = _mailbox()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            loop = functools.partial(rank0_scores, box, validation)
            outcome["result"] = ray_train.launch(cfg, workers, loop=loop, cpus=cpus, log=log)
        except BaseException as exc:  # re-raised in the trial's thread
            outcome["error"] = exc
        finally:
            ray.get(box.put.remote(None))  # the end, however it came

    thread = threading.Thread(target=run, name="ray-train", daemon=True)
    thread.start()
    stopped: BaseException | None = None
    try:
        while (item := ray.get(box.get.remote())) is not None:
            if stopped is not None:  # an epoch finished before rank 0 heard: stop again
                box.answer.remote(STOP)
                continue
            try:
                on_epoch(item)
            except BaseException as exc:  # Ray Tune ended the trial inside its report (or the hook failed)
                stopped = exc
                box.answer.remote(STOP)
                continue
            box.answer.remote(GO)
    finally:
        thread.join(JOIN_SECONDS if stopped is not None else None)
        ray.kill(box)
    if stopped is not None:
        raise stopped
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("result") or {}


# -- in each Ray Train worker ----------------------------------------------------------------------------------
def rank0_scores(box, validation: dict[str, Any], job: dict[str, Any]) -> dict:
    """What each Ray Train worker runs: the train stage (:func:`facefoundry.sweep.ray_train.worker`) with an epoch
    hook, which only rank 0 calls: score, log into the training run, send to the trial, wait for its answer."""
    import ray

    from facefoundry.sweep import ray_train

    scorer: list = []

    def on_epoch(stats, trainer) -> None:
        from facefoundry.sweep.scorer import EpochScorer
        from facefoundry.tracking import log_metrics

        if not scorer:
            v = validation
            scorer.append(EpochScorer(job["cfg"], v["name"], v["path"], v["pairs"], v["flip"]))
        before = scorer[0].seconds
        acc = scorer[0](trainer)
        log_metrics({f"val/{validation['name']}_accuracy": acc}, step=stats.epoch)  # into the training run
        numbers = {
            "epoch": stats.epoch,
            "val_accuracy": acc,
            "train_loss": stats.loss,
            "train_accuracy": stats.accuracy,
            "validation_seconds": scorer[0].seconds - before,
        }
        ray.get(box.put.remote(numbers))
        if ray.get(box.wait_answer.remote()) == STOP:
            raise TrialStopped(f"the trial was stopped by Ray Tune after epoch {stats.epoch}")

    return ray_train.worker(job, epoch_hook=on_epoch)
