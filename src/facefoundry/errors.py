"""One exception type for every user-facing failure, so the CLI can print one line."""


class FaceFoundryError(Exception):
    """A problem with the user's input (file, config, data) that the user can fix.

    The message names the thing at fault and the problem; the CLI prints it on one
    line instead of a traceback.
    """
