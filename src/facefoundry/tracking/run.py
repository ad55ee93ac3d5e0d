"""One MLflow run per pipeline stage: :func:`stage_run` opens (or reopens) it under the right parent, logs
the stage's config, installs the sink :mod:`facefoundry.reporting` sends to, and closes it on SIGTERM;
the run record beside a stage's outputs, and descriptive run names.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np

from facefoundry import reporting
from facefoundry.config import Config, config_sources, flatten
from facefoundry.io import atomic_write_json, read_json
from facefoundry.tracking.base import _mlflow, git_commit
from facefoundry.tracking.log import log_figure, log_image, log_metrics, log_text
from facefoundry.tracking.parent import PARENT_RUN_ENV, _pipeline_parent, pipeline_context
from facefoundry.tracking.products import _products_at
from facefoundry.tracking.retry import bound_retries
from facefoundry.tracking.stale import fail_stale_runs

# The store named before this process started (`mlflow run`, the user's shell) wins over base.tracking_uri.
# Read once: mlflow.set_tracking_uri() writes MLFLOW_TRACKING_URI itself, which would otherwise pin every later
# stage run of this process (another config, e.g. a second test) to the first one's store.
_ENV_TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI")


RUN_FILE = "mlflow_run.json"  # beside a stage's outputs, never a DVC output: run ids stay out of dvc.lock


def read_run_record(folder: str | Path) -> dict:
    """What a stage recorded about its MLflow run in ``folder`` (empty when nothing was)."""
    return read_json(Path(folder) / RUN_FILE)


def write_run_record(folder: str | Path, record: dict) -> None:
    atomic_write_json(Path(folder) / RUN_FILE, record)


def run_name(stage: str, *parts: object) -> str:
    """``stage · part · part`` with empty parts dropped: descriptive names for the runs table."""
    return " · ".join([stage, *[str(p) for p in parts if p not in (None, "")]])


@contextlib.contextmanager
def stage_run(
    cfg: Config,
    stage: str,
    sections: list[str],
    tags: dict[str, str] | None = None,
    run_id: str | None = None,
    name: str | None = None,
    products: str | Path | None = None,
) -> Iterator[Any]:
    """Start (or reopen, with ``run_id``) the MLflow run of a pipeline stage and log its config.

    Runs of one pipeline execution hang under one parent run (the MLflow UI groups them);
    runs outside a pipeline are tagged ad hoc. The run records its pid and host, so a later
    stage marks it FAILED if the process was killed before it could close the run.

    ``products``: the stage's folder of what a person looks at (a declared DVC output). It is
    emptied when the run starts, and every figure, image and text the stage logs with
    :func:`log_figure`, :func:`log_image` or :func:`log_text` is written there first (rendered
    once, deterministic bytes) and then logged as that file, so DVC recreates what MLflow shows.
    """
    mlflow = _mlflow()
    outer = os.environ.pop("MLFLOW_RUN_ID", None)  # `mlflow run` sets it: never merge stages into it
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    uri = _ENV_TRACKING_URI or cfg.base.tracking_uri
    bound_retries(cfg)
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", cfg.base.experiment))
    client = mlflow.MlflowClient()
    stale = fail_stale_runs(client, experiment.experiment_id)
    all_tags = {
        "facefoundry.stage": stage,
        "facefoundry.config": config_sources(cfg),
        "facefoundry.pid": str(os.getpid()),
        "facefoundry.host": socket.gethostname(),
        **(tags or {}),
    }
    commit = git_commit()
    ctx = pipeline_context()
    if ctx is None and outer is not None:
        ctx = {"id": outer[:12], "source": "mlflow", "dvc_exp": "", "name": "mlflow run"}
    parent = os.environ.get(PARENT_RUN_ENV)
    if ctx is not None or parent:
        # _pipeline_parent runs only without a parent run id, so ctx is set then
        all_tags["mlflow.parentRunId"] = parent or _pipeline_parent(
            client, experiment.experiment_id, cast("dict[str, str]", ctx), outer, commit
        )
    if ctx is not None:
        all_tags["facefoundry.pipeline_id"] = ctx["id"]
        if ctx["dvc_exp"]:
            all_tags["facefoundry.dvc_exp"] = ctx["dvc_exp"]
    elif not parent:
        all_tags["facefoundry.adhoc"] = "true"
    if commit:
        all_tags["mlflow.source.git.commit"] = commit
    if run_id is not None:  # reopen a run (a resumed job): only if it still exists
        try:
            if "facefoundry.failure" in client.get_run(run_id).data.tags:
                client.delete_tag(run_id, "facefoundry.failure")
        except Exception:  # deleted or in another store: start a new run
            run_id = None
    with (
        _close_on_signal(),
        _products_at(products),
        reporting.sink(_RunSink()),
        _started(mlflow, run_id=run_id, run_name=None if run_id else (name or stage), tags=all_tags) as run,
    ):
        if stale:
            mlflow.set_tag("facefoundry.marked_stale", ",".join(stale))
        if run_id is None:
            dump = cfg.model_dump(mode="json")
            params = flatten({s: dump[s] for s in ["base", *sections]})
            mlflow.log_params({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in params.items()})
        yield run


@contextlib.contextmanager
def _started(mlflow: Any, **start: Any) -> Iterator[Any]:
    """``mlflow.start_run`` whose closing survives a briefly locked SQLite store.

    A signal (Ctrl-C, SIGTERM) can land while another connection of this process is mid-write; closing the
    run then meets ``database is locked`` until that connection is released. The run is closed as MLflow
    would (FINISHED, else FAILED), retrying a few times, so an interrupted stage still exits 130 with its
    run closed rather than with a traceback.
    """
    run = mlflow.start_run(**start)
    status = "FINISHED"
    try:
        yield run
    except BaseException:
        status = "FAILED"
        raise
    finally:
        active = mlflow.active_run()
        if active is not None and active.info.run_id == run.info.run_id:  # not closed by the stage itself
            _end_run(mlflow, status)


def _end_run(mlflow: Any, status: str, attempts: int = 6) -> None:
    import gc
    import time

    for attempt in range(attempts):
        try:
            mlflow.end_run(status)
            return
        except Exception as exc:  # noqa: PERF203 - a retry loop
            if "database is locked" not in str(exc) or attempt == attempts - 1:
                raise
            gc.collect()  # an interrupted connection's transaction is rolled back when it is collected
            time.sleep(0.5 * (attempt + 1))


@contextlib.contextmanager
def _close_on_signal() -> Iterator[None]:
    """SIGTERM (``kill``, a scheduler's preemption) unwinds like Ctrl-C, so the run is closed as KILLED."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _RunSink:
    """Where :mod:`facefoundry.reporting` sends what lower layers show, while a stage run is open."""

    def image(self, image: np.ndarray, name: str) -> None:
        log_image(image, name)

    def figure(self, fig: Any, name: str) -> None:  # a matplotlib figure
        log_figure(fig, name)

    def metrics(self, values: dict[str, float], step: int | None = None) -> None:
        log_metrics(values, step)

    def text(self, text: str, name: str) -> None:
        log_text(text, name)
