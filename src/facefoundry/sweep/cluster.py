"""Where a sweep's trials run: a Ray cluster (its address checked first, token authentication when a token
is at hand) or Ray started on this machine's cores.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from facefoundry.errors import FaceFoundryError


def _reachable(address: str, timeout: float = 10.0) -> None:
    """A ``host:port`` head address must accept a connection (``auto`` and ``ray://`` are Ray's to resolve)."""
    if address == "auto" or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        raise FaceFoundryError(
            f"cannot connect to the Ray cluster at {address}: "
            f"{getattr(exc, 'strerror', None) or exc} (is its head node running?)"
        ) from None


def cluster_auth(address: str | None) -> None:
    """Ray >= 2.59 starts clusters with token authentication, which a driver uses only under
    ``RAY_AUTH_MODE=token`` — read when ``ray`` is imported, so this runs before that. With a token at
    hand (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token) token mode reaches clusters with and
    without authentication alike; a user's own RAY_AUTH_MODE is left alone."""
    if (address or os.environ.get("RAY_ADDRESS")) and "RAY_AUTH_MODE" not in os.environ and _ray_token_available():
        os.environ["RAY_AUTH_MODE"] = "token"


def _ray_token_available() -> bool:
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")
    return os.path.isfile(path)


def _init_ray(address: str | None, log_to_driver: bool, env: dict[str, str]) -> bool:
    """Connect to a cluster (``address`` / RAY_ADDRESS) or start Ray on this machine's cores.

    Returns True when this process started a local Ray (and so shuts it down)."""
    import ray

    kw: dict[str, Any] = {
        "runtime_env": {"env_vars": env},
        "logging_level": logging.ERROR,
        "log_to_driver": log_to_driver,
        "include_dashboard": False,
        "ignore_reinit_error": True,
    }
    if address or os.environ.get("RAY_ADDRESS"):
        where = address or os.environ["RAY_ADDRESS"]
        _reachable(where)  # Ray itself retries an unreachable head for minutes
        try:
            ray.init(address=address, **kw)
        except (ConnectionError, RuntimeError) as exc:
            text = f"{exc} {exc.__cause__ or ''}"
            if "InvalidAuthToken" in text or "AuthenticationError" in text:
                reason = (
                    "it uses token authentication and this process has no valid token (RAY_AUTH_TOKEN, "
                    "RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)"
                )
            else:
                lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith(" ")]
                reason = lines[-1][:300] if lines else type(exc).__name__
            raise FaceFoundryError(f"cannot connect to the Ray cluster at {where}: {reason}") from None
        return False
    # Ray runs workers at niceness 15 by default: on a shared machine a trial would then crawl beside any other
    # job. Trials get the priority a plain `facefoundry train` has (RAY_worker_niceness=15 restores Ray's).
    os.environ.setdefault("RAY_worker_niceness", "0")
    ray.init(num_cpus=os.cpu_count() or 1, object_store_memory=200 * 1024 * 1024, **kw)
    return True
