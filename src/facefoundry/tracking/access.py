"""Who may do what on an authenticated MLflow server (``mlflow server --app-name basic-auth``), over MLflow's
own auth API (``mlflow.server.get_app_client("basic-auth")``): three roles, checks made before any work, and
one line for every refusal.

Roles are MLflow RBAC roles (workspace ``default``), each a permission on every experiment and every
registered model (``*``):

    reader      READ    list and read runs, metrics, artifacts, the registry
    researcher  EDIT    create and log runs, run sweeps, register model versions
    maintainer  MANAGE  all of that, plus ``facefoundry promote`` (the ``champion`` / ``previous`` aliases)

MLflow's server lets whoever may add versions to a registered model (EDIT) set its aliases too. So the champion
gets a registered model of its own (``promote.registered_model``, other than ``train.registered_model``): the
researcher role then holds READ on every registered model and EDIT only on the models researchers register into
(:func:`ensure_roles`), and the server itself refuses a researcher's alias or version on the champion's model (403).
With one model for both (the one-machine default) only ``facefoundry promote`` guards the aliases.
``facefoundry promote`` asks for MANAGE (:func:`require_manage`) before it computes or writes anything. The
server runs with ``default_permission = NO_PERMISSIONS`` (infra/stack_auth.py), so a signed-in user without a role
reads nothing.

Credentials come only from the environment (``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` or
``MLFLOW_TRACKING_TOKEN``) or MLflow's credentials file ``~/.mlflow/credentials``, which must be mode 0600
(:func:`check_credentials`); never from params, experiment files or the command line (:func:`check_uri`).
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from facefoundry.errors import FaceFoundryError

WORKSPACE = "default"  # MLflow's one workspace when workspaces are off
ROLES = {"reader": "READ", "researcher": "EDIT", "maintainer": "MANAGE"}
RESOURCES = ("experiment", "registered_model")
PREFIX = "facefoundry-"  # the MLflow role of `reader` is `facefoundry-reader`
CREDENTIALS = Path("~/.mlflow/credentials")  # MLflow's own credentials file


def _http(uri: str) -> bool:
    return str(uri).startswith(("http://", "https://"))


def current_user() -> str | None:
    from mlflow.utils.credentials import read_mlflow_creds

    return read_mlflow_creds().username


def check_uri(uri: str, where: str = "base.tracking_uri") -> None:
    """A tracking URI never carries a user or password (it is logged, printed and written to files)."""
    if _http(uri) and (urlsplit(uri).username or urlsplit(uri).password):
        raise FaceFoundryError(
            f"{where} holds credentials (user:password@host): remove them and set MLFLOW_TRACKING_USERNAME / "
            "MLFLOW_TRACKING_PASSWORD in the environment or ~/.mlflow/credentials (mode 0600) instead"
        )


def check_credentials(path: Path | None = None) -> None:
    """MLflow's credentials file, when there is one, must be readable by its owner only."""
    path = (path or CREDENTIALS).expanduser()
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return
    if mode & 0o077:
        raise FaceFoundryError(
            f"{path} holds MLflow credentials but is mode {mode:o} (others can read it): run `chmod 600 {path}`"
        )


def write_credentials(path: Path | str, user: str, password: str) -> Path:
    """A credentials file in MLflow's format (``~/.mlflow/credentials``), mode 0600 from the start."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"[mlflow]\nmlflow_tracking_username = {user}\nmlflow_tracking_password = {password}\n")
    os.chmod(path, 0o600)
    return path


# -- one line for a refusal -------------------------------------------------------------------------------------

# endpoint → (what the user tried, the permission it needs, on what, the role that has it)
_NEEDS = (
    (
        r"/runs/(log-|set-tag|delete-tag|update|create)|/logged-models",
        "log to a run",
        "EDIT",
        "experiment",
        "researcher",
    ),
    (r"/experiments/(create|update|set-experiment-tag)", "change an experiment", "EDIT", "experiment", "researcher"),
    (r"/model-versions/(create|update|set-tag)", "register a model version", "EDIT", "registered model", "researcher"),
    (
        r"/registered-models/(create|update|set-tag)",
        "change a registered model",
        "EDIT",
        "registered model",
        "researcher",
    ),
    (r"/registered-models/alias", "move a registry alias", "MANAGE", "registered model", "maintainer"),
    (r"/(delete|delete-tag)\b|/delete", "delete", "MANAGE", "resource", "maintainer"),
    (r"mlflow-artifacts", "write artifacts", "EDIT", "experiment", "researcher"),
    (r"/users/|/roles", "manage users or roles", "admin", "server", "an admin account"),
)


def access_failure(exc: BaseException) -> str | None:
    """One line for an MLflow refusal (HTTP 401 or 403 from an authenticated server), else None."""
    from mlflow.exceptions import MlflowException

    if not isinstance(exc, MlflowException):
        return None
    text = str(exc)
    code = re.search(r"error code (40[13])\b", text)
    status = code.group(1) if code else {"UNAUTHENTICATED": "401", "PERMISSION_DENIED": "403"}.get(exc.error_code)
    if status is None:
        return None
    import mlflow

    uri = mlflow.get_tracking_uri()
    user = current_user()
    if status == "401":
        who = f"the credentials of user {user!r}" if user else "an anonymous request"
        return (
            f"tracking server {uri} refused {who} (401 not authenticated): set MLFLOW_TRACKING_USERNAME / "
            "MLFLOW_TRACKING_PASSWORD (or ~/.mlflow/credentials, mode 0600) to an account of this server"
        )
    endpoint = (re.search(r"endpoint (\S+)", text) or re.search(r"(/api/\S+)", text) or [None, ""])[1]
    what, perm, on, role = "call " + (endpoint or "this API"), "a permission it lacks", "resource", ""
    for pattern, *need in _NEEDS:
        if re.search(pattern, endpoint or ""):
            what, perm, on, role = need
            perm = f"{perm} on the {on}"
            break
    hint = f"; a maintainer grants it: facefoundry access grant {user} {role}" if role.isidentifier() else ""
    return f"user {user!r} may not {what} on {uri} (403 permission denied: needs {perm}){hint}"


# -- the roles, over MLflow's auth API -----------------------------------------------------------------------


def _auth(uri: str):
    if not _http(uri):
        raise FaceFoundryError(f"access control needs an MLflow server (http://…), not {uri}")
    import warnings

    with warnings.catch_warnings():  # mlflow.server imports its FastAPI app, which warns about Starlette's WSGI
        warnings.simplefilter("ignore")
        from mlflow.server import get_app_client

        return get_app_client("basic-auth", tracking_uri=uri)


def _missing(exc: BaseException) -> bool:
    return "RESOURCE_DOES_NOT_EXIST" in str(getattr(exc, "error_code", "")) or "not found" in str(exc).lower()


def ensure_roles(client, protect: str | None = None, research: tuple[str, ...] = ()) -> dict[str, Any]:
    """The three roles, made (with their grants) when missing; name → MLflow Role. ``protect``: the registered
    model the champion lives in, when researchers do not register into it: the researcher role's grant on every
    registered model becomes READ, with EDIT on each of ``research`` only. Protection stays once made (a later
    call without ``protect``, e.g. ``up --auth`` making its ``ray-nodes`` user, keeps it)."""
    have = {r.name: r for r in client.list_roles(WORKSPACE)}
    out = {}
    for role, perm in ROLES.items():
        found = have.get(PREFIX + role) or client.create_role(WORKSPACE, PREFIX + role, f"FaceFoundry {role}: {perm}")
        granted = {(p.resource_type, p.resource_pattern): p for p in client.list_role_permissions(found.id)}
        want = {(resource, "*"): perm for resource in RESOURCES}
        guarded = protect or any(t == "registered_model" and pattern != "*" for t, pattern in granted)
        if role == "researcher" and guarded:
            want[("registered_model", "*")] = ROLES["reader"]
            want.update({("registered_model", m): perm for m in research if m and m != protect})
        for (resource, pattern), level in want.items():
            current = granted.get((resource, pattern))
            if current is None:
                client.add_role_permission(found.id, resource, pattern, level)
            elif current.permission != level:
                client.update_role_permission(current.id, level)
        out[role] = found
    return out


def roles_of(uri: str, user: str) -> list[str]:
    names = {PREFIX + r: r for r in ROLES}
    return [names[r.name] for r in _auth(uri).list_user_roles(user) if r.name in names]


def grant(
    uri: str,
    user: str,
    role: str,
    password: str | None = None,
    models: tuple[str, ...] = (),
    protect: str | None = None,
) -> str | None:
    """Give ``user`` exactly ``role`` (its other FaceFoundry roles are taken away), as the admin whose
    credentials are in the environment. A new user is made with ``password`` (a generated one when None,
    returned). ``models``: registered models made now, owned by the admin, so that no researcher becomes
    their owner (MLflow gives a model's creator MANAGE on it) by registering the first version. ``protect``:
    the champion's own registered model (:func:`ensure_roles`; made too), researchers editing ``models`` only."""
    if role not in ROLES:
        raise FaceFoundryError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    from mlflow.exceptions import MlflowException

    client = _auth(uri)
    roles = ensure_roles(client, protect, models)
    made = None
    try:
        client.get_user(user)
    except MlflowException as exc:
        if not _missing(exc):
            raise
        made = password or secrets.token_urlsafe(18)
        client.create_user(user, made)
    held = {r.id for r in client.list_user_roles(user)}
    for name, r in roles.items():
        if name != role and r.id in held:
            client.unassign_role(user, r.id)
    if roles[role].id not in held:
        client.assign_role(user, roles[role].id)
    ensure_models(uri, tuple(dict.fromkeys((*models, *([protect] if protect else [])))))
    return None if password else made


def ensure_models(uri: str, models: tuple[str, ...]) -> None:
    """Registered models ``models`` exist (made by the caller, who becomes their owner, when new)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    for name in models:
        _create_model(client, name)


def _create_model(client, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code) and "already exists" not in str(exc):
            raise


def revoke(uri: str, user: str) -> list[str]:
    """Take every FaceFoundry role from ``user`` (the account stays, reading nothing); the roles taken."""
    client = _auth(uri)
    roles = ensure_roles(client)
    held = {r.id for r in client.list_user_roles(user)}
    taken = [name for name, r in roles.items() if r.id in held]
    for name in taken:
        client.unassign_role(user, roles[name].id)
    return taken


def require_manage(uri: str, model: str, action: str = "promote") -> None:
    """Before ``promote`` does anything: the signed-in user must hold MANAGE on registered model ``model``
    (the maintainer role) on an authenticated server. A server without basic-auth, or a local store, asks
    nothing. Raises one line naming the missing permission."""
    if not _http(uri):
        return
    from mlflow.exceptions import MlflowException

    user = current_user()
    client = _auth(uri)
    try:
        if user is None:  # no credentials: an open server answers, an authenticated one refuses (401)
            from mlflow import MlflowClient

            MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
            return
        if client.get_user(user).is_admin:
            return
        held = client.get_user_permission(user, "registered_model", model).permission
    except MlflowException as exc:
        if "404" in str(exc) or "ENDPOINT_NOT_FOUND" in str(exc.error_code):
            return  # no basic-auth on this server: nothing to check
        raise
    if held != "MANAGE":
        raise FaceFoundryError(
            f"{action} refused: user {user!r} has {held} on registered model {model!r} and moving its "
            f"champion / previous aliases needs MANAGE (role maintainer: facefoundry access grant {user} "
            "maintainer); nothing was changed"
        )
