"""The stack's Ray cluster: a head and worker node processes on this machine, with token authentication and
the dashboard off; every port on 127.0.0.1 (the Ray client server listens on the node's IP, 127.0.0.1 here)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from stack_base import BIN, HOST, StackError, free_port


@dataclass
class RayCluster:
    """A head (``ray start --head``) and ``workers`` more node processes joined to it, on this machine."""

    folder: Path
    port: int = 0
    workers: int = 1
    cpus_per_node: int = 1
    temp_dir: str = ""
    node_env: dict[str, str] = field(default_factory=dict, repr=False)  # what every node (and trial) starts with

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def token(self) -> Path:
        return Path(self.folder).resolve() / "ray_token"

    @property
    def env(self) -> dict[str, str]:
        """What a driver needs besides the address: the cluster's token file (Ray >= 2.59 token auth)."""
        return {"RAY_AUTH_TOKEN_PATH": str(self.token)}

    def _ray(self, *args: str) -> subprocess.CompletedProcess:
        """``ray …`` with this cluster's own token (head and every node), whatever ~/.ray holds."""
        import secrets

        if not self.token.is_file():
            self.token.parent.mkdir(parents=True, exist_ok=True)
            self.token.write_text(secrets.token_hex(32))
            self.token.chmod(0o600)
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN")}
        env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token", **self.env, **self.node_env)
        # Ray runs a node's workers at niceness 15: on a machine that does anything else, trials crawl (a 2-trial
        # sweep took 305 s instead of 40 s beside one busy process). These nodes share their machine, so their
        # trials get the priority a plain `facefoundry train` has, as the local Ray's do (RAY_worker_niceness=15
        # in the environment restores Ray's default).
        env.setdefault("RAY_worker_niceness", "0")
        return subprocess.run(
            [str(BIN / "ray"), *args], capture_output=True, text=True, timeout=120, env=env, check=False
        )

    def start(self) -> RayCluster:
        self.folder = Path(self.folder).resolve()
        self.port = self.port or free_port()
        # Ray's session folder path must stay short (unix sockets): one per stack, under /tmp
        self.temp_dir = self.temp_dir or f"/tmp/ff_ray_{self.port}"
        head = self._ray(
            "start",
            "--head",
            f"--node-ip-address={HOST}",
            f"--port={self.port}",
            f"--num-cpus={self.cpus_per_node}",
            "--num-gpus=0",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={self.temp_dir}",
        )
        if head.returncode:
            raise StackError(f"ray start --head failed: {(head.stderr or head.stdout).strip()[-400:]}")
        for _ in range(self.workers):
            w = self._ray(
                "start",
                f"--address={self.address}",
                f"--node-ip-address={HOST}",
                f"--num-cpus={self.cpus_per_node}",
                "--num-gpus=0",
                "--disable-usage-stats",
            )
            if w.returncode:
                raise StackError(f"ray start --address {self.address} failed: {(w.stderr or w.stdout).strip()[-400:]}")
        return self

    def stop(self) -> None:
        self._ray("stop", "--force")
