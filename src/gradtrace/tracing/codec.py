"""Floats and tensors as strict JSON, without loss.

Finite floats are written as they are (Python writes a float64 exactly and reads it back bit
for bit); the non-finite ones as the strings "Infinity", "-Infinity" and "NaN", so that
`json.dumps(..., allow_nan=False)` accepts the result. A tensor becomes
{"shape": [...], "data": [flat values]} in float64, row-major, so empty dimensions survive.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from gradtrace.errors import GradtraceError, check

_NON_FINITE = {"Infinity": math.inf, "-Infinity": -math.inf, "NaN": math.nan}


def encode_float(x: float | None) -> float | str | None:
    """A float as JSON: itself when finite, "Infinity", "-Infinity" or "NaN" otherwise."""
    if x is None or math.isfinite(x):
        return x
    return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")


def decode_float(v: Any) -> float | None:
    """The inverse of `encode_float`."""
    if v is None:
        return None
    if isinstance(v, str):
        check(
            v in _NON_FINITE,
            f"a float in the record must be a number or one of {', '.join(_NON_FINITE)}, got {v!r}",
        )
        return _NON_FINITE[v]
    return float(v)


def decode_number(v: Any) -> float:
    """`decode_float` for a value that must not be null."""
    x = decode_float(v)
    if x is None:
        raise GradtraceError("a number in the record must not be null, got null")
    return x


def encode_tensor(t: Tensor | None) -> dict[str, Any] | None:
    """A tensor as {"shape": [...], "data": [...]}, float64, row-major."""
    if t is None:
        return None
    flat = t.detach().to("cpu", torch.float64).reshape(-1).tolist()
    return {"shape": list(t.shape), "data": [encode_float(v) for v in flat]}


def decode_tensor(d: dict[str, Any] | None) -> Tensor | None:
    """The inverse of `encode_tensor`: a float64 CPU tensor."""
    if d is None:
        return None
    values = [decode_float(v) for v in d["data"]]
    return torch.tensor(values, dtype=torch.float64).reshape(d["shape"])
