"""One exception type for every user-facing failure, so the CLI can print one line."""


class FaceFoundryError(Exception):
    """A problem with the user's input (file, config, data) that the user can fix.

    The message names the thing at fault and the problem; the CLI prints it on one
    line instead of a traceback.
    """


# errno values that mean "this output cannot be written": a read-only or full disk, no permission
_WRITE_ERRNOS = {
    "EACCES": "permission denied",
    "EPERM": "operation not permitted",
    "EROFS": "read-only file system",
    "ENOSPC": "no space left on the device",
    "EDQUOT": "disk quota exceeded",
}


def write_error_message(exc: OSError) -> str | None:
    """One line for an OSError a user can fix (read-only folder, full disk), or None for any other."""
    import errno

    for name, text in _WRITE_ERRNOS.items():
        if exc.errno == getattr(errno, name, None):
            where = exc.filename or "an output file"
            hint = (
                "free some space and run the same command again to resume"
                if name in ("ENOSPC", "EDQUOT")
                else "choose a writable output folder"
            )
            return f"cannot write {where}: {text} ({hint})"
    return None


# What resumable work has been kept so far in this process, for the Ctrl-C message (latest per kind).
_SAVED: dict[str, str] = {}


def note_saved(kind: str, what: str) -> None:
    """Record that ``what`` (e.g. "epoch 3 checkpoint in out/checkpoint.pt") is safely on disk."""
    _SAVED[kind] = what


def saved_work() -> list[str]:
    return list(_SAVED.values())
