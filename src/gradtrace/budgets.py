"""Work budgets: every entry point estimates what a request costs and refuses it up front.

A request that would take hours or more memory than the machine has is refused before anything
is allocated, in one sentence that names the argument to lower and says how to raise the budget.
The estimate is a cost model, not a measurement: bytes of the largest tensors a request holds at
once, and seconds from its arithmetic (at `FLOPS` float64 operations per second) plus its
Python-level steps (at `STEP_SECONDS` each, the overhead of one small torch call).

The default budget is sized for this kind of machine (a quarter of physical memory and five
minutes of work) and can be changed three ways, the nearest one winning:

    with gradtrace.budget(max_memory="16GB", max_seconds=3600): ...   # in Python, a block
    GRADTRACE_MAX_MEMORY=16GB GRADTRACE_MAX_SECONDS=3600         # in the environment
    gradtrace --max-memory 16GB --max-seconds 3600 curve ...     # on the command line

Example:
    >>> require(Work(memory=8e12), "`hidden_size`")  # doctest: +SKIP
    GradtraceError: this request needs about 8 TB of memory, over the budget of 6 GB; lower
    `hidden_size`, or raise the budget with `max_memory` (or GRADTRACE_MAX_MEMORY)
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from gradtrace.errors import GradtraceError, check

FLOPS = 2e9  # float64 operations per second assumed for a request (two shared cores)
STEP_SECONDS = 2e-5  # one Python-level step: a handful of small torch calls
DEFAULT_SECONDS = 300.0
_UNITS = {"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}
_UNITS |= {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


@dataclass(frozen=True)
class Work:
    """What a request costs: peak bytes held at once, arithmetic, and Python-level steps."""

    memory: float = 0.0
    flops: float = 0.0
    steps: float = 0.0

    @property
    def seconds(self) -> float:
        """Estimated wall time on this kind of machine."""
        return self.flops / FLOPS + self.steps * STEP_SECONDS

    def __add__(self, other: Work) -> Work:
        return Work(
            max(self.memory, other.memory), self.flops + other.flops, self.steps + other.steps
        )


@dataclass(frozen=True)
class Budget:
    """The most memory (bytes) and estimated work (seconds) one request may take."""

    memory: float
    seconds: float


def _physical_memory() -> float:
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # not every platform reports it
        return 16e9


def parse_bytes(text: str | float, name: str = "memory") -> float:
    """ "6GB", "512MiB" or a number of bytes, as bytes.

    Raises:
        GradtraceError: if `text` is not a positive size.
    """
    if isinstance(text, int | float) and not isinstance(text, bool):
        value = float(text)
    else:
        match = re.fullmatch(r"\s*([0-9.]+(?:e[0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
        unit = match.group(2).upper() if match else "?"
        check(
            match is not None and unit in _UNITS,
            f"`{name}` must be a size such as 6GB, 512MiB or a number of bytes, got {text!r}",
        )
        assert match is not None  # for the type checker
        value = float(match.group(1)) * _UNITS[unit]
    check(math.isfinite(value) and value > 0, f"`{name}` must be positive, got {text!r}")
    return value


def parse_seconds(text: str | float, name: str = "seconds") -> float:
    """A positive number of seconds.

    Raises:
        GradtraceError: if `text` is not a positive number.
    """
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise GradtraceError(f"`{name}` must be a number of seconds, got {text!r}") from None
    check(math.isfinite(value) and value > 0, f"`{name}` must be positive, got {text!r}")
    return value


def _from_environment() -> Budget:
    memory = os.environ.get("GRADTRACE_MAX_MEMORY")
    seconds = os.environ.get("GRADTRACE_MAX_SECONDS")
    return Budget(
        parse_bytes(memory, "GRADTRACE_MAX_MEMORY") if memory else _physical_memory() / 4,
        parse_seconds(seconds, "GRADTRACE_MAX_SECONDS") if seconds else DEFAULT_SECONDS,
    )


_stack: list[Budget] = []


def current() -> Budget:
    """The budget in force: the innermost `budget(...)` block, else the environment's."""
    return _stack[-1] if _stack else _from_environment()


@contextmanager
def budget(
    max_memory: str | float | None = None, max_seconds: float | None = None
) -> Iterator[Budget]:
    """Change the budget for the requests made inside the block.

    Args:
        max_memory: The most memory a request may hold, as bytes or a size such as "16GB";
            None keeps the budget in force.
        max_seconds: The most estimated work a request may take, in seconds; None keeps the
            budget in force.

    Example:
        >>> with budget(max_seconds=3600):
        ...     pass  # a long request here is allowed an hour
    """
    base = current()
    inner = Budget(
        base.memory if max_memory is None else parse_bytes(max_memory, "max_memory"),
        base.seconds if max_seconds is None else parse_seconds(max_seconds, "max_seconds"),
    )
    _stack.append(inner)
    try:
        yield inner
    finally:
        _stack.pop()


def _size(n: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n / 1e3:.3g} kB"


def _duration(s: float) -> str:
    if s >= 86400:
        return f"{s / 86400:.3g} days"
    if s >= 3600:
        return f"{s / 3600:.3g} hours"
    return f"{s:.3g} s"


def require(work: Work, names: str) -> None:
    """Refuse `work` if it exceeds the budget in force.

    Args:
        work: The request's estimated cost.
        names: The argument(s) that drive the cost, backticked, e.g. "`hidden_size` or `steps`".

    Raises:
        GradtraceError: naming `names`, the estimate and the budget.
    """
    limit = current()
    if work.memory > limit.memory:
        raise GradtraceError(
            f"this request needs about {_size(work.memory)} of memory, over the budget of "
            f"{_size(limit.memory)}; lower {names}, or raise the budget with `max_memory` "
            "(or GRADTRACE_MAX_MEMORY)"
        )
    if work.seconds > limit.seconds:
        raise GradtraceError(
            f"this request needs about {_duration(work.seconds)} of work, over the budget of "
            f"{_duration(limit.seconds)}; lower {names}, or raise the budget with `max_seconds` "
            "(or GRADTRACE_MAX_SECONDS)"
        )
