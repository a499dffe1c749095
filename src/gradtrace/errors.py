"""The one exception type gradtrace raises for bad input.

Every message is one sentence that names the argument, shows what was received and says what
was expected, for example "`W_hh` must be square, got shape (5, 4)". The CLI prints it as
``gradtrace: error: ...`` and exits with status 2.
"""

from __future__ import annotations


class GradtraceError(ValueError):
    """Bad input to a gradtrace function: the message says which argument and why."""


def check(condition: bool, message: str) -> None:
    """Raise `GradtraceError(message)` unless `condition` holds."""
    if not condition:
        raise GradtraceError(message)
