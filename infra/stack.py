"""The local "at scale" stack: PostgreSQL, an S3-compatible store, an MLflow tracking server, a Ray cluster.

Everything listens on 127.0.0.1 on free ports and lives in one state folder (default ``.stack/``):

    python infra/stack.py up   [--dir .stack] [--no-ray]   # start all; print the URLs and the env to export
    python infra/stack.py env  [--dir .stack]              # print the env of a running stack again
    python infra/stack.py down [--dir .stack]              # stop all (keeps the data: a later `up` reuses it)

``infra/up.sh`` / ``infra/down.sh`` call this; the test fixtures (``tests/infra/``) import its classes.

The S3 store here is moto's standalone server (``moto[server]``: a real HTTP endpoint, the only S3 server
that installs from the package registries on a bare machine). It is the one moto-specific piece: the
platform itself only ever sees an endpoint URL, a bucket and credentials (``MLFLOW_S3_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, the DVC remote's ``endpointurl``), so AWS S3, MinIO or Ceph
take its place by changing those values. moto keeps objects in memory: a stopped store loses its bucket.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
BIN = Path(sys.executable).parent  # the venv's console scripts (mlflow, ray, moto_server)
ACCESS_KEY, SECRET_KEY, REGION = "facefoundry", "facefoundry-secret", "us-east-1"  # a local store's own keys


class StackError(RuntimeError):
    """A component that could not start (the message names it and says why)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_for(check, what: str, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    """Poll ``check()`` until true; a dead ``proc`` or the timeout raises with the log's tail."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if check():
                return
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-600:].strip() if log is not None and log.is_file() else ""
    tail = tail.splitlines()[-1] if tail else ""  # one line: the last thing it said
    why = (
        f"exited with {proc.returncode}"
        if proc is not None and proc.poll() is not None
        else f"not ready within {timeout:.0f}s"
    )
    raise StackError(f"{what}: {why}{' (' + tail + ')' if tail else ''}; log: {log}")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status < 500
    except OSError:
        return False


def _spawn(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            cmd, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, start_new_session=True
        )


def stop_pid(pid: int | None, timeout: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL after ``timeout``."""
    if not pid:
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
        end = time.monotonic() + wait
        while time.monotonic() < end:
            try:
                os.kill(pid, 0)
                if Path(f"/proc/{pid}/stat").is_file() and Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                    return
            except ProcessLookupError:
                return
            time.sleep(0.1)


# -- PostgreSQL ----------------------------------------------------------------------------------


def _pg_bin(name: str) -> str:
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / name).is_file():
            return str(folder / name)
    found = shutil.which(name)
    if found is None:
        raise StackError(f"PostgreSQL's {name} is not installed (Debian: apt install postgresql)")
    return found


def _as_postgres_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run as the ``postgres`` account then (Debian's package makes it)."""
    if os.geteuid() != 0:
        return cmd
    runuser = shutil.which("runuser")
    if runuser is None:
        raise StackError("PostgreSQL cannot run as root and runuser is missing")
    return [runuser, "-u", "postgres", "--", *cmd]


@dataclass
class Postgres:
    """A throw-away cluster in ``folder`` on ``port`` (trust auth, 127.0.0.1 only), with one database."""

    folder: Path
    port: int = 0
    database: str = "mlflow"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@{HOST}:{self.port}/{self.database}"

    @property
    def home(self) -> Path:
        """Where the cluster lives: ``folder``, or, as root when ``postgres`` cannot reach ``folder`` (pytest's
        private temp folders), a folder under /tmp named after it."""
        folder = Path(self.folder).resolve()
        if os.geteuid() != 0 or self._reachable(folder):
            return folder
        import hashlib

        return Path("/tmp") / f"ff_pg_{hashlib.sha1(str(folder).encode()).hexdigest()[:10]}"

    @staticmethod
    def _reachable(folder: Path) -> bool:
        probe = folder if folder.exists() else folder.parent
        return (
            subprocess.run(
                _as_postgres_user(["test", "-x", str(probe), "-a", "-w", str(probe)]), capture_output=True, check=False
            ).returncode
            == 0
        )

    def start(self) -> Postgres:
        self.folder = Path(self.folder).resolve()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        home = self.home
        data = home / "data"
        home.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(home, "postgres", "postgres")
        if not (data / "PG_VERSION").is_file():
            out = subprocess.run(
                _as_postgres_user(
                    [
                        _pg_bin("initdb"),
                        "-D",
                        str(data),
                        "-U",
                        "postgres",
                        "--auth=trust",
                        "-E",
                        "UTF8",
                        "--no-instructions",
                    ]
                ),
                capture_output=True,
                text=True,
                check=False,
            )
            if out.returncode:
                raise StackError(f"initdb {data} failed: {out.stderr.strip()[-400:]}")
        opts = f"-p {self.port} -k {home} -c listen_addresses={HOST} -c fsync=off"
        out = subprocess.run(
            _as_postgres_user(
                [
                    _pg_bin("pg_ctl"),
                    "-D",
                    str(data),
                    "-o",
                    opts,
                    "-l",
                    str(home / "postgres.log"),
                    "-w",
                    "-t",
                    "30",
                    "start",
                ]
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode:
            log = home / "postgres.log"
            raise StackError(
                f"PostgreSQL in {data} did not start: {out.stderr.strip()[-300:]} "
                f"{log.read_text(errors='replace')[-300:] if log.is_file() else ''}"
            )
        self._create_database()
        return self

    def _create_database(self) -> None:
        import psycopg2

        conn = psycopg2.connect(host=HOST, port=self.port, user="postgres", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{self.database}"')
        conn.close()

    def stop(self, remove: bool = False) -> None:
        home = self.home
        data = home / "data"
        if (data / "postmaster.pid").is_file():
            subprocess.run(
                _as_postgres_user([_pg_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                capture_output=True,
                text=True,
                check=False,
            )
        if remove and home != Path(self.folder).resolve():
            shutil.rmtree(home, ignore_errors=True)


# -- S3 ------------------------------------------------------------------------------------------


@dataclass
class S3Server:
    """moto's standalone S3 server on ``port``; ``bucket`` created. The platform sees only ``env``."""

    folder: Path
    port: int = 0
    bucket: str = "facefoundry"
    pid: int | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
            "AWS_ENDPOINT_URL_S3": self.endpoint,
        }

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )

    def start(self) -> S3Server:
        self.folder = Path(self.folder).resolve()
        self.port = self.port or free_port()
        exe = BIN / "moto_server"
        if not exe.is_file():
            raise StackError("moto_server is not installed (pip install 'moto[server]')")
        log = self.folder / "s3.log"
        proc = _spawn([str(exe), "-H", HOST, "-p", str(self.port)], log)
        self.pid = proc.pid
        wait_for(lambda: http_ok(self.endpoint + "/"), f"S3 server on {self.endpoint}", 30, proc, log)
        client = self.client()
        if self.bucket not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
            client.create_bucket(Bucket=self.bucket)
        return self

    def stop(self) -> None:
        stop_pid(self.pid)
        self.pid = None


# -- MLflow tracking server ----------------------------------------------------------------------


@dataclass
class MlflowServer:
    """``mlflow server``: ``backend`` store (PostgreSQL URL), artifacts proxied to ``artifacts`` (s3://…)."""

    folder: Path
    backend: str
    artifacts: str
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    pid: int | None = None

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
        ]
        proc = _spawn(cmd, log, self.env)
        self.pid = proc.pid
        wait_for(lambda: http_ok(self.url + "/health"), f"MLflow server on {self.url}", timeout, proc, log)
        return self

    def stop(self) -> None:
        stop_pid(self.pid)
        self.pid = None


# -- Ray -----------------------------------------------------------------------------------------


@dataclass
class RayCluster:
    """A head (``ray start --head``) and ``workers`` more node processes joined to it, on this machine."""

    folder: Path
    port: int = 0
    workers: int = 1
    cpus_per_node: int = 1
    temp_dir: str = ""

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
        env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token", **self.env)
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


# -- the whole stack (infra/up.sh, infra/down.sh) ------------------------------------------------


def stack_env(state: dict) -> dict[str, str]:
    env = {
        "MLFLOW_TRACKING_URI": state["mlflow"],
        **state["s3_env"],
        "FACEFOUNDRY_DVC_REMOTE": f"s3://{state['bucket']}/dvc",
    }
    if state.get("ray"):
        env["RAY_ADDRESS"] = state["ray"]
        env["RAY_AUTH_TOKEN_PATH"] = state["ray_token"]
    return env


def up(folder: Path, ray: bool = True) -> dict:
    folder = Path(folder).resolve()
    state_file = folder / "state.json"
    if state_file.is_file():
        state = json.loads(state_file.read_text())
        if http_ok(state["mlflow"] + "/health"):
            return state
    started: list = []
    try:
        pg = Postgres(folder / "postgres").start()
        started.append(pg)
        s3 = S3Server(folder).start()
        started.append(s3)
        ml = MlflowServer(folder, pg.url, f"s3://{s3.bucket}/mlflow", s3.env).start()
        started.append(ml)
        state = {
            "postgres": pg.url,
            "postgres_folder": str(pg.folder),
            "s3": s3.endpoint,
            "s3_pid": s3.pid,
            "bucket": s3.bucket,
            "s3_env": s3.env,
            "mlflow": ml.url,
            "mlflow_pid": ml.pid,
        }
        if ray:
            rc = RayCluster(folder)
            started.append(rc)
            rc.start()
            state["ray"] = rc.address
            state["ray_token"] = str(rc.token)
    except BaseException:
        for part in reversed(started):  # nothing half-started is left behind
            part.stop()
        raise
    folder.mkdir(parents=True, exist_ok=True)
    state_file.write_text(json.dumps(state, indent=1))
    return state


def down(folder: Path) -> None:
    folder = Path(folder).resolve()
    state_file = folder / "state.json"
    if not state_file.is_file():
        print(f"{state_file}: no stack recorded; nothing to stop")
        return
    state = json.loads(state_file.read_text())
    if state.get("ray"):
        RayCluster(folder).stop()
    stop_pid(state.get("mlflow_pid"))
    stop_pid(state.get("s3_pid"))
    Postgres(Path(state["postgres_folder"])).stop()
    state_file.unlink()


def print_env(state: dict) -> None:
    print(f"# PostgreSQL  {state['postgres']}  (MLflow's backend store)")
    print(f"# S3          {state['s3']}  bucket {state['bucket']}  (artifacts under s3://{state['bucket']}/mlflow)")
    print(f"# MLflow UI   {state['mlflow']}")
    if state.get("ray"):
        print(f"# Ray         {state['ray']}  (head + 1 worker node)")
    print("# export these, then run stages, sweeps and `dvc push` against the stack:")
    for k, v in stack_env(state).items():
        print(f"export {k}={v}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("action", choices=["up", "down", "env"])
    p.add_argument("--dir", default=".stack", type=Path)
    p.add_argument("--no-ray", action="store_true")
    a = p.parse_args(argv)
    try:
        if a.action == "up":
            print_env(up(a.dir, ray=not a.no_ray))
        elif a.action == "down":
            down(a.dir)
        else:
            state_file = a.dir / "state.json"
            if not state_file.is_file():
                print(f"error: {state_file}: no running stack (run infra/up.sh)", file=sys.stderr)
                return 2
            print_env(json.loads(state_file.read_text()))
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["MlflowServer", "Postgres", "RayCluster", "S3Server", "StackError", "asdict", "down", "free_port", "up"]
