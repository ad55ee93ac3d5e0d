"""Ray Tune's hooks into the sweep driver: trial names and folders, and one line per trial event, with the
trial's ``status.json`` kept current and the MLflow runs of stopped or failed trials closed.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from facefoundry.io import atomic_write_json, read_json
from facefoundry.stages.common import log
from facefoundry.sweep.keys import trial_key
from facefoundry.sweep.results import _fmt
from facefoundry.sweep.trial import COMPLETED, FAILED, STOPPED, TRIAL_STATUS
from facefoundry.sweep.trial_run import find_trial_run

INTERRUPT_ENV = "FACEFOUNDRY_SWEEP_INTERRUPT_AFTER"  # tests: Ctrl-C the sweep after this many trials ended


def trial_name(trial) -> str:  # Ray's Trial
    return f"trial_{trial_key(trial.experiment_tag, trial.trial_id)}"


def trial_dirname(trial) -> str:
    return trial_key(trial.experiment_tag, trial.trial_id)


class SweepCallback:
    """Driver-side bookkeeping, one line per trial event; closes the MLflow runs of stopped trials.

    Plain attributes only: Ray pickles it with the experiment (``Tuner.restore`` brings it back).
    """

    def __init__(self, out: str, uri: str, experiment_id: str, sweep_id: str, total: int):
        self.out, self.uri, self.experiment_id, self.sweep_id, self.total = out, uri, experiment_id, sweep_id, total
        self.ended = 0
        self.interrupt_after = 0

    # Ray calls these on a ray.tune.Callback; _tune_callback below wraps this object in one
    def setup(self, **info: Any) -> None:
        self.ended = 0
        self.interrupt_after = int(os.environ.get(INTERRUPT_ENV, "0") or 0)

    def _status(self, trial, **update: Any) -> dict:
        path = Path(self.out) / "trials" / trial_key(trial.experiment_tag, trial.trial_id) / TRIAL_STATUS
        status = {**read_json(path), **update}
        atomic_write_json(path, status)
        return status

    def on_trial_start(self, trial) -> None:
        st = read_json(Path(self.out) / "trials" / trial_key(trial.experiment_tag, trial.trial_id) / TRIAL_STATUS)
        self._status(trial, status="running", started=st.get("started") or time.time(), starts=st.get("starts", 0) + 1)

    def on_trial_recover(self, trial) -> None:
        log(f"trial {trial_key(trial.experiment_tag, trial.trial_id)} failed; retrying ({_error_line(trial)})")

    def on_trial_complete(self, trial) -> None:
        r = trial.last_result or {}
        if r.get("final"):
            status, note = COMPLETED, f"objective {r.get('objective', float('nan')):.4f}"
        else:
            status, note = STOPPED, f"stopped early by ASHA after epoch {r.get('epoch', 0)}"
            self._close_runs(trial.trial_id, "FINISHED", STOPPED, r)
        self._status(trial, status=status, ended=time.time(), epoch=r.get("epoch"), objective=r.get("objective"))
        self._ended(trial, f"{status}: {note}")

    def on_trial_error(self, trial) -> None:
        err = _error_line(trial)
        self._status(trial, status=FAILED, ended=time.time(), error=err)
        self._close_runs(trial.trial_id, "FAILED", FAILED, trial.last_result or {}, err)
        self._ended(
            trial,
            f"failed after {trial.num_failures} attempt(s): {err} "
            f"(log: {Path(self.out) / 'trials' / trial_key(trial.experiment_tag, trial.trial_id) / 'trial.log'})",
        )

    def _ended(self, trial, what: str) -> None:
        self.ended += 1
        params = ", ".join(f"{k.rsplit('.', 1)[-1]}={_fmt(v)}" for k, v in trial.config.items())
        log(f"trial {trial_key(trial.experiment_tag, trial.trial_id)} ({params}) {what}")
        if self.interrupt_after and self.ended >= self.interrupt_after:
            log(f"{INTERRUPT_ENV}={self.interrupt_after}: interrupting the sweep (as Ctrl-C would)")
            self.interrupt_after = 0
            os.kill(os.getpid(), signal.SIGINT)

    def _close_runs(self, trial_id: str, status: str, trial_status: str, last: dict, error: str = "") -> None:
        """The trial's run (and its stage runs left open when Ray ended the process) get a final status."""
        try:
            from facefoundry.sweep.trial_run import _client

            client = _client(self.uri)
            run_id = last.get("mlflow_run_id") or find_trial_run(client, self.experiment_id, self.sweep_id, trial_id)
            if not run_id:
                return
            for child in client.search_runs(
                [self.experiment_id], f"tags.`mlflow.parentRunId` = '{run_id}' and attributes.status = 'RUNNING'"
            ):
                client.set_tag(child.info.run_id, "facefoundry.stopped", f"trial {trial_status}")
                client.set_terminated(child.info.run_id, "KILLED")
            client.set_tag(run_id, "facefoundry.trial_status", trial_status)
            if error:
                client.set_tag(run_id, "facefoundry.failure", error[:4000])
            if last.get("objective") is not None:
                client.log_metric(run_id, "objective", float(last["objective"]))
            if client.get_run(run_id).info.status == "RUNNING":
                client.set_terminated(run_id, status)
        except Exception as exc:  # bookkeeping must never end the sweep
            log(f"note: could not close the MLflow run of trial {trial_id}: {type(exc).__name__}: {exc}")


def _tune_callback(cb: SweepCallback):
    from ray.tune import Callback

    class _Cb(Callback):
        def __init__(self, inner: SweepCallback):
            self.inner = inner

        def setup(self, **info: Any) -> None:  # type: ignore[override]  # Ray passes keywords only
            self.inner.setup(**info)

        def on_trial_start(self, iteration, trials, trial, **info) -> None:
            self.inner.on_trial_start(trial)

        def on_trial_recover(self, iteration, trials, trial, **info) -> None:
            self.inner.on_trial_recover(trial)

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            self.inner.on_trial_complete(trial)

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            self.inner.on_trial_error(trial)

    return _Cb(cb)


def _error_line(trial) -> str:
    """The last meaningful line of a trial's error (Ray keeps the traceback in error.txt)."""
    text = ""
    try:
        path = trial.error_file or ""
        if path and Path(path).is_file():
            text = Path(path).read_text()
    except Exception:
        pass
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "see the trial's error.txt"
