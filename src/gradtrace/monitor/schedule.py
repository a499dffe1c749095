"""When the monitor measures: schedules of training steps.

A schedule is a predicate on the step number with a description in words:

    every(10)              steps 0, 10, 20, ...
    every(10, start=5)     steps 5, 15, 25, ...
    log_spaced(4)          about 4 steps per decade: 0, 1, 2, 3, 5, 10, 17, 31, 56, 100, ...
    when(lambda s: ...)    a user's predicate
    never()                no step

Each fires on exactly the steps it promises (`tests/test_monitor.py` checks them), and costs one
integer test per step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from gradtrace.errors import check


def _whole(value: object, name: str, least: int) -> int:
    check(
        isinstance(value, int) and not isinstance(value, bool) and value >= least,
        f"`{name}` must be a whole number of at least {least}, got {value!r}",
    )
    assert isinstance(value, int)  # for the type checker
    return value


@dataclass(frozen=True)
class Schedule:
    """A predicate on step numbers (>= 0) and its description."""

    fires: Callable[[int], bool]
    description: str

    def __call__(self, step: int) -> bool:
        return bool(self.fires(step))

    def __str__(self) -> str:
        return self.description


def every(n: int, start: int = 0) -> Schedule:
    """Steps start, start + n, start + 2n, ...

    Raises:
        GradtraceError: unless n >= 1 and start >= 0 are whole numbers.
    """
    _whole(n, "n", 1)
    _whole(start, "start", 0)
    return Schedule(lambda s: s >= start and (s - start) % n == 0, f"every {n} steps from {start}")


def log_spaced(per_decade: int = 4) -> Schedule:
    """Steps 0 .. 3, then about `per_decade` steps per decade: the integers floor(10^(j /
    per_decade)) for j = 0, 1, 2, ... (each once), the usual schedule for a long run.

    Raises:
        GradtraceError: unless per_decade >= 1 is a whole number.
    """
    _whole(per_decade, "per_decade", 1)

    def fires(step: int) -> bool:
        if step < 4:
            return True
        j = math.floor(math.log10(step) * per_decade)
        # step is on the schedule if it is floor(10^(j / d)) for its j or the next one
        return any(math.floor(10 ** (i / per_decade) + 1e-9) == step for i in (j, j + 1))

    return Schedule(fires, f"log-spaced, {per_decade} per decade")


def when(predicate: Callable[[int], bool], description: str = "a user's predicate") -> Schedule:
    """The steps where `predicate(step)` is true.

    Raises:
        GradtraceError: if `predicate` is not callable.
    """
    check(callable(predicate), f"`predicate` must be callable, got {type(predicate).__name__}")
    return Schedule(predicate, description)


def never() -> Schedule:
    """No step."""
    return Schedule(lambda s: False, "never")


def as_schedule(value: Schedule | int | Callable[[int], bool] | None, name: str) -> Schedule:
    """A schedule from a `Schedule`, a whole number n (every n steps), a predicate or None
    (never).

    Raises:
        GradtraceError: for anything else.
    """
    if isinstance(value, Schedule):
        return value
    if value is None:
        return never()
    if isinstance(value, int) and not isinstance(value, bool):
        check(value >= 1, f"`{name}` must be at least 1 (every n steps), got {value}")
        return every(value)
    check(
        callable(value) and not isinstance(value, bool),
        f"`{name}` must be a schedule (gradtrace.every(n), log_spaced(), when(f)), a number "
        f"of steps or None, got {type(value).__name__}",
    )
    assert callable(value)  # for the type checker
    return when(value)
