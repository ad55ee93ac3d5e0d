"""A trial's MLflow run, a child of the sweep's run (client API; the stages' runs, fluent API, nest under
it): found again on a retry or a resumed sweep, params, per-epoch and final metrics, its final status.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from typing import Any

from facefoundry.config import Config, flatten


def _client(uri: str):
    from facefoundry.tracking.base import _mlflow

    return _mlflow().MlflowClient(tracking_uri=uri)


def find_trial_run(client, experiment_id: str, sweep_id: str, trial_id: str) -> str | None:
    found = client.search_runs(
        [experiment_id],
        f"tags.`facefoundry.sweep_id` = '{sweep_id}' and "
        f"tags.`facefoundry.trial_id` = '{trial_id}' and tags.`facefoundry.role` = 'trial'",
        max_results=1,
    )
    return found[0].info.run_id if found else None


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def trial_run_name(number: int, params: dict[str, Any]) -> str:
    return f"trial {number:02d} · " + ", ".join(f"{k.rsplit('.', 1)[-1]}={_fmt(v)}" for k, v in params.items())


class TrialRun:
    """The trial's MLflow run (client API: the stages' runs use the fluent API inside it)."""

    def __init__(self, ctx: dict, trial_id: str, number: int, params: dict[str, Any], cfg: Config):
        from facefoundry.tracking import git_commit

        self.client = _client(ctx["tracking_uri"])
        self.ctx = ctx
        exp = ctx["experiment_id"]
        run_id = find_trial_run(self.client, exp, ctx["sweep_id"], trial_id)
        if run_id is not None:  # a retry, or a resumed sweep: the same run continues
            self.client.update_run(run_id, status="RUNNING")
            for tag in ("facefoundry.failure", "facefoundry.trial_status"):
                with contextlib.suppress(Exception):
                    self.client.delete_tag(run_id, tag)
            self.client.set_tag(run_id, "facefoundry.pid", str(os.getpid()))
        else:
            tags = {
                "facefoundry.role": "trial",
                "mlflow.parentRunId": ctx["sweep_run_id"],
                "facefoundry.sweep_id": ctx["sweep_id"],
                "facefoundry.sweep": ctx["sweep"]["name"],
                "facefoundry.trial_id": trial_id,
                "facefoundry.trial_number": str(number),
                "facefoundry.pid": str(os.getpid()),
                "facefoundry.host": socket.gethostname(),
                "facefoundry.config": cfg._sources,
            }
            commit = git_commit()
            if commit:
                tags["mlflow.source.git.commit"] = commit
            run = self.client.create_run(exp, run_name=trial_run_name(number, params), tags=tags)
            run_id = run.info.run_id
            self._log_params(run_id, params, cfg)
        self.run_id = run_id

    def _log_params(self, run_id: str, params: dict[str, Any], cfg: Config) -> None:
        from mlflow.entities import Param

        dump = cfg.model_dump(mode="json")
        flat = flatten({s: dump[s] for s in ("base", "generate", "train", "evaluate")})
        flat = {k: v for k, v in flat.items() if k not in params}
        flat.update({f"sweep.{k}": v for k, v in params.items()})  # the swept ones, sortable together
        flat.update(params)
        items = [Param(k, (json.dumps(v) if isinstance(v, (list, dict)) else str(v))[:6000]) for k, v in flat.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i : i + 100])

    def metrics(self, values: dict[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        from facefoundry.tracking.log import _clean

        now = int(time.time() * 1000)
        ms = [Metric(k, v, now, step) for k, v in _clean(values).items()]
        for i in range(0, len(ms), 500):
            self.client.log_batch(self.run_id, metrics=ms[i : i + 500])

    def tags(self, values: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in values.items()])

    def close_children(self, status: str, note: str) -> None:
        """Stage runs of this trial still open (or failed by an ended trial): ``status``, with a note."""
        with contextlib.suppress(Exception):
            for r in self.client.search_runs(
                [self.ctx["experiment_id"]], f"tags.`mlflow.parentRunId` = '{self.run_id}'"
            ):
                if r.info.status == "RUNNING" or (note and r.info.status == "FAILED"):
                    if note:
                        self.client.set_tag(r.info.run_id, "facefoundry.stopped", note)
                    self.client.set_terminated(r.info.run_id, status)

    def finish(self, status: str, trial_status: str) -> None:
        self.tags({"facefoundry.trial_status": trial_status})
        self.client.set_terminated(self.run_id, status)
