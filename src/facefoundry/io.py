"""Atomic writes: a reader never sees a half-written file or dataset folder."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path`` then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600: give the file a normal file's mode
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def read_json(path: str | os.PathLike) -> dict:
    """A JSON object from ``path``, or ``{}`` when it is missing or unreadable (side files, caches)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load_json_file(path: str | os.PathLike, what: str = "JSON file") -> dict:
    """A JSON object from ``path`` that must exist and parse; one-line FaceFoundryError otherwise."""
    from facefoundry.errors import FaceFoundryError

    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FaceFoundryError(f"{path}: missing ({what})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FaceFoundryError(f"{path}: unreadable {what} ({exc.__class__.__name__})") from None
    except ValueError as exc:
        raise FaceFoundryError(f"{path}: not valid JSON ({what}: {exc})") from None
    if not isinstance(data, dict):
        raise FaceFoundryError(f"{path}: a {what} must hold a JSON object, found {type(data).__name__}")
    return data


def ensure_writable(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and prove a file can be written there, before any long work starts."""
    from facefoundry.errors import FaceFoundryError, write_error_message

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        exc.filename = exc.filename or str(folder)
        raise FaceFoundryError(write_error_message(exc) or f"cannot write to {folder}: {exc.strerror}") from None
    return folder


def cache_dir(kind: str) -> Path:
    """The platform's cache for ``kind`` (results keyed by a dataset's hash): ``$FACEFOUNDRY_CACHE`` or
    ``$XDG_CACHE_HOME/facefoundry`` (``~/.cache/facefoundry``)."""
    root = os.environ.get("FACEFOUNDRY_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "facefoundry"
    )
    return Path(root) / kind


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def swap_into_place(ready: Path, path: Path) -> None:
    """Move the finished folder ``ready`` to ``path``, replacing any previous ``path`` whole."""
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    os.replace(ready, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp folder beside ``path``; on success it replaces ``path`` whole.

    On failure the temp folder is removed and any previous ``path`` is untouched,
    so a crashed generation never leaves a half dataset behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    swap_into_place(tmp, path)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path``: concurrent jobs wait here instead of making the same thing twice.

    The OS drops it when the holder dies (e.g. a trial stopped or killed mid-generation), and the next
    one resumes the partial work.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def output_to(path: Path) -> Iterator[None]:
    """This process's stdout/stderr (file descriptors 1 and 2: stage logs, progress) appended to ``path`` (a sweep
    trial's log, a Ray Train worker's) while the block runs, not the console."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    saved = os.dup(1), os.dup(2)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (fd, *saved):
            os.close(f)
