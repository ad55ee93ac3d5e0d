"""The stack's MLflow tracking server (``mlflow server``), open or with MLflow's basic-auth app."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from stack_base import BIN, HOST, _spawn, free_port, http_ok, stop_pid, wait_for


@dataclass
class MlflowServer:
    """``mlflow server``: ``backend`` store (PostgreSQL URL), artifacts proxied to ``artifacts`` (s3://…).
    ``app``: ``basic-auth`` for MLflow's authentication (its configuration and secrets in ``env``: stack_auth)."""

    folder: Path
    backend: str
    artifacts: str
    env: dict[str, str] = field(default_factory=dict, repr=False)
    port: int = 0
    pid: int | None = None
    app: str | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, timeout: float = 90) -> MlflowServer:
        self.folder = Path(self.folder).resolve()
        self.port = self.port or free_port()
        log = self.folder / "mlflow.log"
        cmd = [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            self.backend,
            "--artifacts-destination",
            self.artifacts,
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--workers",
            "1",
            *(["--app-name", self.app] if self.app else []),
        ]
        # MLflow's GenAI job runner (7 huey processes) serves nothing the platform uses: off unless asked for
        jobs = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": os.environ.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")}
        proc = _spawn(cmd, log, {**jobs, **self.env})
        self.pid = proc.pid
        wait_for(lambda: http_ok(self.url + "/health"), f"MLflow server on {self.url}", timeout, proc, log)
        return self

    def stop(self) -> None:
        stop_pid(self.pid)
        self.pid = None
