"""One exception type for every input problem a user can cause.

The CLI prints ``AcnError`` as a one-line message (no traceback unless ``--debug``) and exits
non-zero, so every message must name the file (or video) and say what is wrong.
"""


class AcnError(Exception):
    """A problem with the user's input, files or configuration (not a bug in acn)."""
