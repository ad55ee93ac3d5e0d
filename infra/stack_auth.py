"""The authenticated stack (``infra/up.sh --auth``): its secrets, MLflow's basic-auth configuration, its users.

Secrets live in one store per stack, ``<stack>/secrets.env`` (mode 0600, ``NAME=value`` lines), made on the
first ``up --auth``; an environment variable of the same name wins over the file (and is never written to it):

    FACEFOUNDRY_MLFLOW_ADMIN_PASSWORD   MLflow's ``admin`` (basic-auth bootstraps the user with it)
    FACEFOUNDRY_POSTGRES_PASSWORD       PostgreSQL's ``postgres`` role (scram-sha-256, 127.0.0.1 only)
    FACEFOUNDRY_S3_ACCESS_KEY / _SECRET_KEY   this stack's own S3 keys
    FACEFOUNDRY_FLASK_SECRET_KEY        the MLflow server's CSRF key (MLFLOW_FLASK_SERVER_SECRET_KEY)
    FACEFOUNDRY_RAY_NODES_PASSWORD      the ``ray-nodes`` MLflow user the Ray nodes log trials as
    FACEFOUNDRY_RAY_TOKEN               the compose cluster's Ray token (``up`` keeps its own in ray_token)

``infra/docker-compose.yml`` reads the same names (``--env-file .stack/secrets.env``).

No secret is ever printed in full (:func:`mask`), put on a command line, or written outside a 0600 file:
PostgreSQL's password reaches libpq as PGPASSWORD, MLflow's admin password as MLFLOW_AUTH_ADMIN_PASSWORD, both
in the server process's environment only.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from stack_base import HOST, StackError

NAMES = (
    "FACEFOUNDRY_MLFLOW_ADMIN_PASSWORD",
    "FACEFOUNDRY_POSTGRES_PASSWORD",
    "FACEFOUNDRY_S3_ACCESS_KEY",
    "FACEFOUNDRY_S3_SECRET_KEY",
    "FACEFOUNDRY_FLASK_SECRET_KEY",
    "FACEFOUNDRY_RAY_NODES_PASSWORD",
    "FACEFOUNDRY_RAY_TOKEN",
)
ADMIN = "admin"
RAY_NODES_USER = "ray-nodes"  # the MLflow user (researcher) a cluster's trials log as
AUTH_DATABASE = "mlflow_auth"  # basic-auth's users and permissions, beside MLflow's own database


def mask(secret: str) -> str:
    """What a person may see of a secret: its first 3 characters and its length."""
    return f"{secret[:3]}… ({len(secret)} chars)"


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` with mode 0600 from the start (never a moment readable by others)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def check_private(path: Path) -> None:
    """A secrets file others can read is refused (one line: the file and the fix)."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise StackError(f"{path} holds secrets but is mode {mode:o}: run `chmod 600 {path}` and start again")


class Secrets:
    """``<stack>/secrets.env``: each secret from the environment, else the file, else generated and saved."""

    def __init__(self, folder: Path):
        self.path = Path(folder).resolve() / "secrets.env"

    def _load(self) -> dict[str, str]:
        if not self.path.is_file():
            return {}
        check_private(self.path)
        out = {}
        for line in self.path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.lstrip().startswith("#"):
                out[key.strip()] = value.strip()
        return out

    def get(self, name: str) -> str:
        if name not in NAMES:
            raise KeyError(name)
        if os.environ.get(name):
            return os.environ[name]
        stored = self._load()
        if not stored.get(name):
            stored[name] = secrets.token_hex(32) if name.endswith("TOKEN") else secrets.token_urlsafe(24)
            body = "".join(f"{k}={v}\n" for k, v in stored.items())
            write_private(self.path, "# this stack's secrets (infra/stack_auth.py); keep mode 0600\n" + body)
        return stored[name]

    def all(self) -> dict[str, str]:
        """Every secret, made when missing (for ``infra/docker-compose.yml``'s env file)."""
        return {name: self.get(name) for name in NAMES}

    def s3_keys(self) -> tuple[str, str]:
        return self.get("FACEFOUNDRY_S3_ACCESS_KEY"), self.get("FACEFOUNDRY_S3_SECRET_KEY")


def auth_config(folder: Path, database: int | str, cache_ttl_s: int = 60) -> Path:
    """MLflow's basic-auth configuration for this stack (``MLFLOW_AUTH_CONFIG_PATH``): users and grants in the
    PostgreSQL on port ``database`` (database ``mlflow_auth``; the password from PGPASSWORD), or in the SQLAlchemy
    database ``database`` names when it is a URI (a one-machine server on SQLite), no permission without a role
    (``default_permission = NO_PERMISSIONS``: a signed-in user with no role reads nothing). The admin's password
    is not in it. ``auth_cache_ttl_seconds``: MLflow's own cache of a verified password (PBKDF2 per request
    otherwise); one server worker, so a changed password takes effect at once."""
    if not isinstance(database, str):
        database = f"postgresql+psycopg2://postgres@{HOST}:{database}/{AUTH_DATABASE}"
    text = (
        "[mlflow]\n"
        "default_permission = NO_PERMISSIONS\n"
        f"database_uri = {database}\n"
        f"admin_username = {ADMIN}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        f"auth_cache_ttl_seconds = {cache_ttl_s}\n"
    )
    return write_private(Path(folder).resolve() / "basic_auth.ini", text)


def server_env(store: Secrets, folder: Path, database: int | str) -> dict[str, str]:
    """The environment of an authenticated ``mlflow server --app-name basic-auth`` (``database``: auth_config's)."""
    return {
        "MLFLOW_AUTH_CONFIG_PATH": str(auth_config(folder, database)),
        "MLFLOW_AUTH_ADMIN_PASSWORD": store.get("FACEFOUNDRY_MLFLOW_ADMIN_PASSWORD"),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": store.get("FACEFOUNDRY_FLASK_SECRET_KEY"),
    }


def admin_env(store: Secrets) -> dict[str, str]:
    return {
        "MLFLOW_TRACKING_USERNAME": ADMIN,
        "MLFLOW_TRACKING_PASSWORD": store.get("FACEFOUNDRY_MLFLOW_ADMIN_PASSWORD"),
    }


def ray_nodes_user(url: str, store: Secrets) -> dict[str, str]:
    """The ``ray-nodes`` user (role researcher), made as the admin; returns the env the Ray nodes start with,
    so that trials on the cluster log with it (drivers never ship credentials through Ray's runtime env)."""
    from facefoundry.tracking.access import grant

    password = store.get("FACEFOUNDRY_RAY_NODES_PASSWORD")
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    os.environ.update(admin_env(store))
    try:
        grant(url, RAY_NODES_USER, "researcher", password=password)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return {"MLFLOW_TRACKING_USERNAME": RAY_NODES_USER, "MLFLOW_TRACKING_PASSWORD": password}


def client_env_file(folder: Path, env: dict[str, str]) -> Path:
    """``<stack>/client.env`` (0600): what a shell sources (``set -a; . .stack/client.env; set +a``) to act as
    the admin, with the stack's S3 keys. Printed by ``up`` as a path, never as values."""
    return write_private(Path(folder).resolve() / "client.env", "".join(f"{k}={v}\n" for k, v in env.items()))
