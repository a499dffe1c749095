"""The explorer's parameters: one spec per control, the one parser, and the page's schema.

Every panel declares its parameters as a tuple of `Param`s beside its function. The same specs
check a request (`parse`: query text in, typed values out, or a `GradtraceError` naming the
parameter in the house style: what it is, what was received, what is expected) and build the
page's controls (`schema`), so a slider's range is the range the server accepts.

The ranges are the explorer's caps: no single update can take the machine. Where a panel's
cost depends on several parameters at once, it also checks the library's own cost estimate
(`gradtrace.budgets.Work`) against `UPDATE_SECONDS` and `UPDATE_MEMORY` (`check_update`),
below the general budget of `gradtrace.budgets`, which the library checks as well.

Parameter names are the library's Python argument names (`hidden_size`, `steps`), so a message
raised by the library names the same parameter the page sent.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gradtrace import budgets
from gradtrace.errors import GradtraceError, check

UPDATE_SECONDS = 3.0  # estimated work one update may take (the cost model of `budgets`)
UPDATE_MEMORY = 512e6  # bytes one update may hold at once
MAX_TEXT = 200  # characters of one parameter's value (a run's name, at most)
KINDS = ("int", "float", "choice", "bool", "text")
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


@dataclass(frozen=True)
class Param:
    """One parameter of a panel, and the control that sets it.

    Attributes:
        name: The query parameter (the library's argument name).
        kind: "int", "float", "choice", "bool" or "text" (a name the panel checks itself,
            such as a run's, among what exists when the request comes).
        default: Its value when the request leaves it out.
        lo: The smallest value accepted (int, float).
        hi: The largest value accepted (int, float).
        choices: The accepted values (choice).
        step: The slider's step on the page (int, float).
        label: What the page calls it, with its unit.
        log: Whether the page's slider moves on a log scale (positive floats).
    """

    name: str
    kind: str
    default: Any
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    step: float | None = None
    label: str = ""
    log: bool = False

    def expected(self) -> str:
        """What a valid value is, in words: "a whole number from 1 to 256"."""
        if self.kind == "int":
            return f"a whole number from {self.lo:g} to {self.hi:g}"
        if self.kind == "float":
            return f"a finite number from {self.lo:g} to {self.hi:g}"
        if self.kind == "bool":
            return "true or false"
        if self.kind == "text":
            return f"a name of at most {MAX_TEXT} characters"
        return f"one of {', '.join(self.choices)}"

    def read(self, text: str) -> Any:
        """The typed value of `text`; GradtraceError naming the parameter otherwise."""
        shown = text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "..."
        wrong = f"`{self.name}` must be {self.expected()}, got {shown!r}"
        check(len(text) <= MAX_TEXT, wrong)
        if self.kind == "text":
            return text
        if self.kind == "choice":
            check(text in self.choices, wrong)
            return text
        if self.kind == "bool":
            check(text.lower() in _TRUE + _FALSE, wrong)
            return text.lower() in _TRUE
        value = _number(text, integer=self.kind == "int")
        check(value is not None, wrong)
        assert value is not None and self.lo is not None and self.hi is not None
        check(self.lo <= value <= self.hi, wrong)
        return value

    def spec(self) -> dict[str, Any]:
        """This parameter as the page's schema entry."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "default": self.default}
        out["label"] = self.label or self.name
        if self.kind in ("int", "float"):
            out |= {"lo": self.lo, "hi": self.hi, "step": self.step or 1, "log": self.log}
        if self.kind == "choice":
            out["choices"] = list(self.choices)
        return out


def _number(text: str, *, integer: bool) -> float | int | None:
    """A finite int or float from `text`, or None (no NaN, Infinity, hex or empty text)."""
    if integer:
        return int(text) if re.fullmatch(r"[+-]?\d{1,12}", text.strip()) else None
    if not re.fullmatch(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d{1,3})?\s*", text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def integer(name: str, default: int, lo: int, hi: int, label: str = "") -> Param:
    """A whole-number parameter in [lo, hi]."""
    return Param(name, "int", default, lo, hi, step=1, label=label)


def real(
    name: str, default: float, lo: float, hi: float, step: float, label: str = "", log: bool = False
) -> Param:
    """A finite real parameter in [lo, hi]."""
    return Param(name, "float", default, lo, hi, step=step, label=label, log=log)


def choice(name: str, default: str, choices: Iterable[str], label: str = "") -> Param:
    """A parameter that takes one of `choices`."""
    return Param(name, "choice", default, choices=tuple(choices), label=label)


def flag(name: str, default: bool, label: str = "") -> Param:
    """A true/false parameter."""
    return Param(name, "bool", default, label=label)


def text(name: str, label: str = "") -> Param:
    """A name that the panel checks against what exists (empty: the panel's own choice)."""
    return Param(name, "text", "", label=label)


def parse(pairs: Iterable[tuple[str, str]], params: tuple[Param, ...], panel: str) -> dict:
    """Checked values of every parameter of `panel`, defaults filled in.

    Args:
        pairs: (name, text) of the request, repeats included.
        params: The panel's parameters.
        panel: The panel's name, for messages.

    Raises:
        GradtraceError: on an unknown or repeated parameter or a value out of range, naming it.
    """
    known = {p.name: p for p in params}
    seen: dict[str, str] = {}
    for name, text in pairs:
        shown = name if len(name) <= MAX_TEXT else name[:MAX_TEXT] + "..."
        check(
            name in known,
            f"`{shown}` is not a parameter of the {panel} panel; expected one of "
            f"{', '.join(known) or 'none'}",
        )
        check(name not in seen, f"`{name}` must be given once, got it twice")
        seen[name] = text
    return {p.name: p.read(seen[p.name]) if p.name in seen else p.default for p in params}


def defaults(params: tuple[Param, ...]) -> dict[str, Any]:
    """Every parameter at its default."""
    return {p.name: p.default for p in params}


def check_update(work: budgets.Work, names: str) -> None:
    """Refuse an update whose estimated cost is over the explorer's limit for one update.

    Raises:
        GradtraceError: naming `names`, the estimate and the limit.
    """
    check(
        work.memory <= UPDATE_MEMORY,
        f"this update needs about {work.memory / 1e6:.3g} MB of memory, over the explorer's "
        f"limit of {UPDATE_MEMORY / 1e6:.3g} MB per update; lower {names}",
    )
    check(
        work.seconds <= UPDATE_SECONDS,
        f"this update needs about {work.seconds:.3g} s of work, over the explorer's limit of "
        f"{UPDATE_SECONDS:g} s per update; lower {names}",
    )


def named_parameter(message: str, params: tuple[Param, ...]) -> str | None:
    """The parameter a message is about: the first of `params` it names in backticks, else
    the first name in backticks at all (an unknown parameter), else None."""
    names = re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", message)
    known = [n for n in names if n in {p.name for p in params}]
    return (known or names or [None])[0]


def error_body(err: GradtraceError, params: tuple[Param, ...]) -> dict[str, Any]:
    """The JSON body of a refused request: the sentence and the parameter it names."""
    message = str(err).rstrip(".") + "."
    return {"error": message, "parameter": named_parameter(message, params)}


def check_order(lo_name: str, lo: float, hi_name: str, hi: float) -> None:
    """Refuse an interval whose ends are not in order, naming the upper end."""
    if not lo < hi:
        raise GradtraceError(f"`{hi_name}` must be above `{lo_name}` = {lo:g}, got {hi:g}")
