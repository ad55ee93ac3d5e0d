"""What every launcher of ``infra/stack.py`` shares: the host, the venv's scripts, free ports, waiting for a
server, spawning and stopping a process group. Imported by ``stack`` (and so by the test fixtures) as well as
``stack_auth``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"
BIN = Path(sys.executable).parent  # the venv's console scripts (mlflow, ray, moto_server)


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
