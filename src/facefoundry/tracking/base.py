"""MLflow itself, imported lazily and quietly, and the two facts about this process every run records:
whether an MLflow run is open, and the git commit of the code; and a tracking URI made absolute for other
processes. The lowest module of the package: the
others import from it, it imports none of them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from facefoundry.errors import FaceFoundryError


def run_active() -> bool:
    """An MLflow run is open in this process (without importing mlflow when nothing has)."""
    mlflow = sys.modules.get("mlflow")
    return mlflow is not None and mlflow.active_run() is not None


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _mlflow():  # imported lazily: mlflow takes seconds to import
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import logging

    import mlflow

    if not os.environ.get("FACEFOUNDRY_MLFLOW_INFO"):  # "creating tables…" notes would bury the stage's own lines
        for name in ("mlflow", "alembic"):
            if logging.getLogger(name).level in (logging.NOTSET, logging.INFO):
                logging.getLogger(name).setLevel(logging.WARNING)
        # a Ctrl-C that lands inside a store query makes SQLAlchemy log "Error closing cursor" with a traceback
        # before the interrupt reaches the CLI, which then says what was kept in one line: the log is noise
        logging.getLogger("sqlalchemy").setLevel(logging.CRITICAL)

    return mlflow


def check_store(uri: str, where: str = "base.tracking_uri") -> None:
    """MLflow 3 refuses a file store (``./mlruns``, ``file:…``) unless ``MLFLOW_ALLOW_FILE_STORE`` is true: one
    line before any stage starts, instead of its traceback in the middle of one."""
    file_store = uri.startswith(("file:", "/", ".", "~")) or ("/" in uri and ":" not in uri) or uri == "mlruns"
    if file_store and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").strip().lower() not in ("true", "1", "yes"):
        raise FaceFoundryError(
            f"{where} {uri} is a file store, which MLflow 3 no longer opens: use sqlite:///mlflow.db (`mlflow "
            "migrate-filestore` moves existing runs) or a server, or set MLFLOW_ALLOW_FILE_STORE=true"
        )


def absolute_uri(uri: str) -> str:
    """Trials run in other processes (and folders): a relative SQLite or file store made absolute."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri[len("sqlite:///") :]).resolve())
    if uri.startswith("file:") or "://" not in uri:
        path = uri[len("file:") :] if uri.startswith("file:") else uri
        if not path.startswith("/"):
            return "file:" + str(Path(path).resolve())
    return uri
