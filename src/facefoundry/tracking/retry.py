"""Bounded retries around MLflow's HTTP calls (``base.tracking_*``), and the one line that names an
unreachable tracking server once they are spent.
"""

from __future__ import annotations

import os
import sys

from facefoundry.config import Config

_RETRY_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "tracking_retries",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "tracking_backoff",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "tracking_timeout",
}


def bound_retries(cfg: Config) -> None:
    """MLflow's HTTP retry settings from ``base.tracking_*`` (a user's own MLFLOW_HTTP_REQUEST_* env wins).

    MLflow's defaults (7 retries, backoff 2, 120 s timeouts) keep a stage waiting for minutes on a dead
    server; the platform's bound is ≈ 15 s, after which :func:`tracking_failure` names the problem."""
    for env, key in _RETRY_ENV.items():
        os.environ.setdefault(env, str(getattr(cfg.base, key)))


def tracking_failure(exc: BaseException) -> str | None:
    """One line for an exception that means "the tracking server cannot be reached", else None.

    MLflow raises ``MlflowException`` ("API request to … failed with exception …") once its retries are
    spent; requests' connection errors can surface directly from artifact uploads."""
    mlflow = sys.modules.get("mlflow")
    if mlflow is None:
        return None
    uri = mlflow.get_tracking_uri()
    if not str(uri).startswith(("http://", "https://")):
        return None
    text = str(exc)
    requests = sys.modules.get("requests")
    network = requests is not None and isinstance(
        exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)
    )
    from mlflow.exceptions import MlflowException

    if not network and not (
        isinstance(exc, MlflowException)
        and "API request to" in text
        and any(
            k in text
            for k in ("Max retries", "Connection", "connect", "timed out", "Read timed out", "502", "503", "504")
        )
    ):
        return None
    reason = (
        "connection refused"
        if "refused" in text.lower()
        else "timed out"
        if "timed out" in text.lower()
        else "no answer"
    )
    retries = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "?")
    from facefoundry.errors import saved_work

    kept = "; ".join(saved_work())
    return (
        f"tracking server {uri} unreachable ({reason}, after {retries} retries): "
        f"{'kept: ' + kept + '; ' if kept else ''}run the same command again when the server is back "
        "(a resumable stage resumes and reopens its MLflow run)"
    )
