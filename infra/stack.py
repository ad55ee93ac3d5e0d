"""The local "at scale" stack: PostgreSQL, an S3-compatible store, an MLflow tracking server, a Ray cluster.

Everything listens on 127.0.0.1 on free ports and lives in one state folder (default ``.stack/``):

    python infra/stack.py up   [--dir .stack] [--no-ray] [--auth]   # start all; print the URLs and the env
    python infra/stack.py env  [--dir .stack]              # print the env of a running stack again
    python infra/stack.py down [--dir .stack]              # stop all (keeps the data: a later `up` reuses it)
    python infra/stack.py secrets [--dir .stack]           # make .stack/secrets.env (0600) for docker compose

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
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # stack_base, stack_auth: beside this file

import stack_auth
from stack_base import BIN, HOST, StackError, _spawn, free_port, http_ok, stop_pid, wait_for
from stack_mlflow import MlflowServer
from stack_ray import RayCluster

ACCESS_KEY, SECRET_KEY, REGION = "facefoundry", "facefoundry-secret", "us-east-1"  # a local store's own keys


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
    """A throw-away cluster in ``folder`` on ``port`` (127.0.0.1 only), with one database. Trust authentication,
    or with ``password`` scram-sha-256 for every connection (the password reaches clients as PGPASSWORD, ``env``)."""

    folder: Path
    port: int = 0
    database: str = "mlflow"
    password: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:  # never with the password in it: libpq reads PGPASSWORD
        return f"postgresql+psycopg2://postgres@{HOST}:{self.port}/{self.database}"

    @property
    def env(self) -> dict[str, str]:
        return {"PGPASSWORD": self.password} if self.password else {}

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
        cmd = _as_postgres_user(["test", "-x", str(probe), "-a", "-w", str(probe)])
        return subprocess.run(cmd, capture_output=True, check=False).returncode == 0

    def _initdb(self, home: Path, data: Path) -> None:
        auth = ["--auth=trust"]
        pwfile = home / "pwfile"
        if self.password:  # the password from a 0600 file postgres reads once, never the command line
            stack_auth.write_private(pwfile, self.password + "\n")
            if os.geteuid() == 0:
                shutil.chown(pwfile, "postgres", "postgres")
            auth = ["--auth-host=scram-sha-256", "--auth-local=scram-sha-256", f"--pwfile={pwfile}"]
        cmd = [_pg_bin("initdb"), "-D", str(data), "-U", "postgres", *auth, "-E", "UTF8", "--no-instructions"]
        try:
            out = subprocess.run(_as_postgres_user(cmd), capture_output=True, text=True, check=False)
        finally:
            pwfile.unlink(missing_ok=True)
        if out.returncode:
            raise StackError(f"initdb {data} failed: {out.stderr.strip()[-400:]}")

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
            self._initdb(home, data)
        elif self.password and "trust" in _hba_methods(data):
            raise StackError(f"{data} was made without a password (trust); remove {home} or use another --dir")
        opts = f"-p {self.port} -k {home} -c listen_addresses={HOST} -c fsync=off"
        log = home / "postgres.log"
        cmd = [_pg_bin("pg_ctl"), "-D", str(data), "-o", opts, "-l", str(log), "-w", "-t", "30", "start"]
        out = subprocess.run(_as_postgres_user(cmd), capture_output=True, text=True, check=False)
        if out.returncode:
            raise StackError(
                f"PostgreSQL in {data} did not start: {out.stderr.strip()[-300:]} "
                f"{log.read_text(errors='replace')[-300:] if log.is_file() else ''}"
            )
        self.create_database(self.database)
        return self

    def create_database(self, name: str) -> None:
        import psycopg2

        conn = psycopg2.connect(host=HOST, port=self.port, user="postgres", dbname="postgres", password=self.password)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()

    def stop(self, remove: bool = False) -> None:
        home = self.home
        data = home / "data"
        if (data / "postmaster.pid").is_file():
            cmd = [_pg_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]
            subprocess.run(_as_postgres_user(cmd), capture_output=True, text=True, check=False)
        if remove and home != Path(self.folder).resolve():
            shutil.rmtree(home, ignore_errors=True)


def _hba_methods(data: Path) -> set[str]:
    """The authentication methods pg_hba.conf names (its rows' last word)."""
    try:
        text = subprocess.run(
            _as_postgres_user(["cat", str(data / "pg_hba.conf")]), capture_output=True, text=True, check=False
        ).stdout
    except OSError:
        return set()
    return {ln.split()[-1] for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")}


# -- S3 ------------------------------------------------------------------------------------------


@dataclass
class S3Server:
    """moto's standalone S3 server on ``port``; ``bucket`` created. The platform sees only ``env``."""

    folder: Path
    port: int = 0
    bucket: str = "facefoundry"
    pid: int | None = None
    access_key: str = ACCESS_KEY  # per stack under --auth (stack_auth.Secrets); moto accepts any, MinIO checks
    secret_key: str = field(default=SECRET_KEY, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": REGION,
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
            "AWS_ENDPOINT_URL_S3": self.endpoint,
        }

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
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


# -- the whole stack (infra/up.sh, infra/down.sh) ------------------------------------------------


SECRET_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")  # under --auth: in client.env (0600), never printed


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


def up(folder: Path, ray: bool = True, auth: bool = False) -> dict:
    """Start the stack in ``folder`` (or find it running). ``auth``: MLflow's basic-auth, PostgreSQL with a
    password, this stack's own S3 keys, all from ``stack_auth.Secrets``; without it, a one-person local stack."""
    folder = Path(folder).resolve()
    state_file = folder / "state.json"
    if state_file.is_file():
        state = json.loads(state_file.read_text())
        running = http_ok(state["mlflow"] + "/health") or _restart_mlflow(folder, state)
        if running:
            if bool(state.get("auth")) != auth:
                raise StackError(
                    f"the stack in {folder} runs {'with' if state.get('auth') else 'without'} --auth: stop it "
                    "first (infra/down.sh)"
                )
            return state
    store = stack_auth.Secrets(folder) if auth else None
    started: list = []
    try:
        pg = Postgres(folder / "postgres", password=store.get("FACEFOUNDRY_POSTGRES_PASSWORD") if store else None)
        pg.start()
        started.append(pg)
        keys = dict(zip(("access_key", "secret_key"), store.s3_keys())) if store else {}
        s3 = S3Server(folder, **keys).start()
        started.append(s3)
        env = dict(s3.env)
        if store:
            pg.create_database(stack_auth.AUTH_DATABASE)
            env.update({**pg.env, **stack_auth.server_env(store, folder, pg.port)})
        ml = MlflowServer(folder, pg.url, f"s3://{s3.bucket}/mlflow", env, app="basic-auth" if store else None)
        ml.start()
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
            "auth": auth,
        }
        if store:
            state["s3_env"] = {k: v for k, v in s3.env.items() if k not in SECRET_ENV}
            secret = {k: v for k, v in s3.env.items() if k in SECRET_ENV}
            stack_auth.client_env_file(folder, {**secret, **stack_auth.admin_env(store)})
        if ray:
            rc = RayCluster(folder, node_env=stack_auth.ray_nodes_user(ml.url, store) if store else {})
            started.append(rc)
            rc.start()
            state["ray"] = rc.address
            state["ray_token"] = str(rc.token)
    except BaseException:
        for part in reversed(started):  # nothing half-started is left behind
            part.stop()
        raise
    stack_auth.write_private(state_file, json.dumps(state, indent=1))
    return state


def _restart_mlflow(folder: Path, state: dict) -> bool:
    """The MLflow server of a stack whose PostgreSQL and S3 store still run has stopped (killed, out of memory):
    start it again on its own port with the same stores and secrets, so clients' URLs stay valid and a stage that
    failed on the outage resumes with the same command. False when the rest of the stack is gone too."""
    from urllib.parse import urlsplit

    store = stack_auth.Secrets(folder) if state.get("auth") else None
    password = store.get("FACEFOUNDRY_POSTGRES_PASSWORD") if store else None
    pg = Postgres(Path(state["postgres_folder"]), port=urlsplit(state["postgres"]).port or 0, password=password)
    try:
        if not http_ok(state["s3"] + "/"):
            return False
        pg.create_database(pg.database)  # PostgreSQL answers (the database is there)
    except Exception:  # psycopg2's connection errors: the rest of the stack is down
        return False
    env = dict(state["s3_env"])
    if store:
        env.update(zip(SECRET_ENV, store.s3_keys()))
        env.update({**pg.env, **stack_auth.server_env(store, folder, pg.port)})
    port = urlsplit(state["mlflow"]).port
    ml = MlflowServer(
        folder, state["postgres"], f"s3://{state['bucket']}/mlflow", env, port=port, app="basic-auth" if store else None
    ).start()
    state["mlflow_pid"] = ml.pid
    stack_auth.write_private(folder / "state.json", json.dumps(state, indent=1))
    return True


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


def print_env(state: dict, folder: Path) -> None:
    auth = bool(state.get("auth"))
    print(f"# PostgreSQL  {state['postgres']}  (MLflow's backend store{'; scram-sha-256 password' if auth else ''})")
    print(f"# S3          {state['s3']}  bucket {state['bucket']}  (artifacts under s3://{state['bucket']}/mlflow)")
    if auth:
        admin = stack_auth.Secrets(folder).get("FACEFOUNDRY_MLFLOW_ADMIN_PASSWORD")
        print(
            f"# MLflow UI   {state['mlflow']}  (basic-auth: user {stack_auth.ADMIN}, password {stack_auth.mask(admin)})"
        )
    else:
        print(f"# MLflow UI   {state['mlflow']}  (no authentication: this machine only, 127.0.0.1)")
    if state.get("ray"):
        print(f"# Ray         {state['ray']}  (head + 1 worker node; token authentication)")
    print("# export these, then run stages, sweeps and `dvc push` against the stack:")
    for k, v in stack_env(state).items():
        print(f"export {k}={v}")
    if auth:
        env_file = Path(folder).resolve() / "client.env"
        print(f"# and the admin's credentials and S3 keys (mode 0600, not printed): set -a; . {env_file}; set +a")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("action", choices=["up", "down", "env", "secrets"])
    p.add_argument("--dir", default=".stack", type=Path)
    p.add_argument("--no-ray", action="store_true")
    p.add_argument("--auth", action="store_true", help="a team server: MLflow basic-auth, PostgreSQL password")
    a = p.parse_args(argv)
    try:
        if a.action == "up":
            print_env(up(a.dir, ray=not a.no_ray, auth=a.auth), a.dir)
        elif a.action == "down":
            down(a.dir)
        elif a.action == "secrets":  # the env file infra/docker-compose.yml reads; values masked
            store = stack_auth.Secrets(a.dir)
            for name, value in store.all().items():
                print(f"# {name} = {stack_auth.mask(value)}")
            print(
                f"# in {store.path} (mode 0600): docker compose --env-file {store.path} -f infra/docker-compose.yml up -d"
            )
        else:
            state_file = a.dir / "state.json"
            if not state_file.is_file():
                print(f"error: {state_file}: no running stack (run infra/up.sh)", file=sys.stderr)
                return 2
            print_env(json.loads(state_file.read_text()), a.dir)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["MlflowServer", "Postgres", "RayCluster", "S3Server", "StackError", "asdict", "down", "free_port", "up"]
