"""Run the real ``facefoundry`` CLI with a disk fault under one folder (tests only).

    python -m tests.faults readonly DIR -- <facefoundry args>   every write under DIR: EACCES
    python -m tests.faults full DIR N -- <facefoundry args>      the first N file writes under DIR
                                                                 succeed, later ones: ENOSPC

A real read-only folder (chmod) does not stop root, and a full disk needs a mount; this injects
the same OSError the kernel would raise, at the same calls (open for writing, mkdir, mkstemp).
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import sys
import tempfile


def _install(kind: str, root: str, budget: int) -> None:
    root = os.path.realpath(root)
    left = [budget]

    def hit(path: object) -> bool:
        try:
            return (
                os.path.realpath(os.fspath(path)).startswith(root + os.sep) or os.path.realpath(os.fspath(path)) == root
            )
        except TypeError:
            return False

    def fail(path: object) -> None:
        if kind == "readonly":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
        if left[0] <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path))
        left[0] -= 1

    real_open, real_os_open, real_mkdir, real_mkstemp = builtins.open, os.open, os.mkdir, tempfile.mkstemp

    def fake_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+") and hit(file):
            fail(file)
        return real_open(file, mode, *args, **kwargs)

    def fake_os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and hit(path):
            fail(path)
        return real_os_open(path, flags, *args, **kwargs)

    def fake_mkdir(path, *args, **kwargs):
        if kind == "readonly" and hit(path):
            fail(path)
        return real_mkdir(path, *args, **kwargs)

    def fake_mkstemp(*args, **kwargs):
        d = kwargs.get("dir") or (args[2] if len(args) > 2 else None)
        if d is not None and hit(d):
            fail(os.path.join(os.fspath(d), "tmp"))
        return real_mkstemp(*args, **kwargs)

    builtins.open = io.open = fake_open
    os.open, os.mkdir, tempfile.mkstemp = fake_os_open, fake_mkdir, fake_mkstemp


def main() -> None:
    args = sys.argv[1:]
    sep = args.index("--")
    head, rest = args[:sep], args[sep + 1 :]
    kind, root = head[0], head[1]
    _install(kind, root, int(head[2]) if len(head) > 2 else 0)
    sys.argv = ["facefoundry", *rest]
    from facefoundry.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
