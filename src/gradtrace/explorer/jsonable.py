"""Numbers as the panels send them: plain JSON, non-finite floats the house's way.

A panel returns a dict of str, int, bool, None, lists and floats, where a non-finite float is
the string "Infinity", "-Infinity" or "NaN" (`gradtrace.records.codec.encode_float`), exactly
as every record's JSON writes it; the page turns those strings back into numbers. Tensors go
out as (nested) lists of such floats, in float64.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from gradtrace.records.codec import encode_float

Number = float | str


def number(x: float | int | None) -> Number | int | None:
    """One number: an int as is, a float finite or as its string, None as null."""
    if x is None or isinstance(x, bool | int):
        return x
    return encode_float(float(x))


def floats(t: Tensor | list[float] | tuple[float, ...]) -> list[Any]:
    """A tensor (any shape) or a sequence as nested lists of JSON numbers, in float64."""
    values = t.detach().to("cpu", torch.float64).tolist() if isinstance(t, Tensor) else list(t)
    return _walk(values)


def _walk(values: Any) -> Any:
    if isinstance(values, list):
        return [_walk(v) for v in values]
    return encode_float(float(values))


def ints(t: Tensor) -> list[Any]:
    """An integer tensor as nested lists of ints."""
    values: list[Any] = t.detach().to("cpu", torch.int64).tolist()
    return values


def complex_parts(t: Tensor) -> dict[str, list[Any]]:
    """A complex vector as {"re": [...], "im": [...]}."""
    z = t.detach().to("cpu", torch.complex128)
    return {"re": floats(z.real), "im": floats(z.imag)}
