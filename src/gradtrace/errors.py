"""The one exception type gradtrace raises for bad input, and the checks every layer shares.

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


def described(value: object) -> str:
    """What a received value is, for a message: a tensor's or array's shape, else its type's
    name (never the value itself, which can be a whole data set)."""
    shape = getattr(value, "shape", None)
    if isinstance(shape, tuple):  # torch.Size is a tuple; numpy's shape is one
        return f"shape {tuple(shape)}"
    return type(value).__name__


SEED_MAX = 2**63 - 1  # torch.Generator.manual_seed takes a signed 64-bit integer


def check_seed(seed: object, name: str = "seed") -> int:
    """Return `seed` if it is an integer torch can seed with (0 <= seed < 2**63)."""
    check(
        isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed <= SEED_MAX,
        f"`{name}` must be a whole number from 0 to 2**63 - 1, got {seed!r}",
    )
    assert isinstance(seed, int)  # for the type checker
    return seed
