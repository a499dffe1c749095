"""The one codec: records to strict JSON and back, losing nothing.

Every value a record holds is written by these rules, and read back by the field's type:

    finite float        the number itself (Python writes a float64 exactly and reads it back
                        bit for bit)
    non-finite float    the strings "Infinity", "-Infinity" and "NaN", so that the output is
                        strict JSON (json.dumps(..., allow_nan=False) accepts it; the bare
                        tokens Python writes by default are not JSON)
    tensor              {"dtype": "float64", "shape": [...], "data": [...]}, the values flat in
                        row-major order (so empty dimensions survive); complex entries are
                        [real, imag] pairs
    int, str, bool      themselves; None is null
    tuple, list         a JSON list
    dict                a JSON object (keys are strings)
    record              a JSON object of its fields (see `gradtrace.records.base`)

Decoding is driven by the dataclass field types, so a record's class is its schema.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Union

import torch
from torch import Tensor

from gradtrace.errors import GradtraceError, check

_NON_FINITE = {"Infinity": math.inf, "-Infinity": -math.inf, "NaN": math.nan}
_DTYPES = {
    str(t).removeprefix("torch."): t
    for t in (
        torch.float64,
        torch.float32,
        torch.float16,
        torch.bfloat16,
        torch.int64,
        torch.int32,
        torch.int16,
        torch.int8,
        torch.uint8,
        torch.bool,
        torch.complex128,
        torch.complex64,
    )
}


def encode_float(x: float) -> float | str:
    """A float as JSON: itself when finite, "Infinity", "-Infinity" or "NaN" otherwise."""
    if math.isfinite(x):
        return x
    return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")


def decode_float(v: Any, where: str = "a number") -> float:
    """The inverse of `encode_float`.

    Raises:
        GradtraceError: if `v` is neither a number nor one of the three strings.
    """
    if isinstance(v, str):
        check(
            v in _NON_FINITE,
            f"{where} must be a number or one of {', '.join(_NON_FINITE)}, got {v!r}",
        )
        return _NON_FINITE[v]
    check(
        isinstance(v, int | float) and not isinstance(v, bool),
        f"{where} must be a number, got {v!r}",
    )
    return float(v)


def encode_tensor(t: Tensor) -> dict[str, Any]:
    """A tensor as {"dtype", "shape", "data"} (see the module docstring)."""
    flat = t.detach().to("cpu").reshape(-1)
    if flat.is_complex():
        data: list[Any] = [
            [encode_float(re), encode_float(im)]
            for re, im in torch.view_as_real(flat.to(torch.complex128)).tolist()
        ]
    elif flat.is_floating_point():
        data = [encode_float(v) for v in flat.to(torch.float64).tolist()]
    else:
        data = flat.tolist()
    return {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape), "data": data}


def decode_tensor(d: Any, where: str = "a tensor") -> Tensor:
    """The inverse of `encode_tensor`: a CPU tensor of the recorded dtype and shape."""
    check(
        isinstance(d, dict) and {"dtype", "shape", "data"} <= d.keys(),
        f"{where} must be an object with dtype, shape and data, got {_show(d)}",
    )
    dtype = _DTYPES.get(d["dtype"])
    check(dtype is not None, f"{where} has an unknown dtype {d['dtype']!r}")
    assert dtype is not None  # for the type checker
    shape = d["shape"]
    check(
        isinstance(shape, list) and all(isinstance(n, int) and n >= 0 for n in shape),
        f"{where} must have a shape of whole numbers, got {shape!r}",
    )
    data = d["data"]
    check(isinstance(data, list), f"{where} must hold its data as a list, got {_show(data)}")
    check(
        len(data) == math.prod(shape),
        f"{where} must hold {math.prod(shape)} values for shape {shape}, got {len(data)}",
    )
    if dtype.is_complex:
        pairs = [[decode_float(re, where), decode_float(im, where)] for re, im in data]
        real = torch.tensor(pairs, dtype=torch.float64).reshape(*shape, 2)
        return torch.view_as_complex(real).to(dtype)
    if dtype.is_floating_point:
        values: list[Any] = [decode_float(v, where) for v in data]
        return torch.tensor(values, dtype=torch.float64).to(dtype).reshape(shape)
    return torch.tensor(data, dtype=dtype).reshape(shape)


def encode(value: Any) -> Any:
    """Any value a record holds, as JSON-ready Python (see the module docstring)."""
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return encode_float(value)
    if isinstance(value, Tensor):
        return encode_tensor(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    raise TypeError(f"a record cannot hold a {type(value).__name__}")


def decode(data: Any, hint: Any, where: str = "`data`") -> Any:
    """The value of type `hint` that `encode` wrote as `data`.

    Raises:
        GradtraceError: naming the field (`where`) whose value does not fit its type.
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return data
    if origin in (Union, types.UnionType):
        if data is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        for option in options[:-1]:  # a union of several: the first type that fits
            try:
                return decode(data, option, where)
            except GradtraceError:
                continue
        return decode(data, options[-1], where)
    if hint is float:
        return decode_float(data, where)
    if hint in (int, str, bool):
        ok = isinstance(data, hint) and (hint is bool or not isinstance(data, bool))
        check(ok, f"{where} must be {hint.__name__}, got {_show(data)}")
        return data
    if hint is Tensor:
        return decode_tensor(data, where)
    if origin in (tuple, list):
        check(isinstance(data, list), f"{where} must be a list, got {_show(data)}")
        if origin is list:
            return [decode(v, args[0], f"{where}[{i}]") for i, v in enumerate(data)]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(decode(v, args[0], f"{where}[{i}]") for i, v in enumerate(data))
        check(len(data) == len(args), f"{where} must hold {len(args)} items, got {len(data)}")
        pairs = enumerate(zip(data, args, strict=True))
        return tuple(decode(v, a, f"{where}[{i}]") for i, (v, a) in pairs)
    if origin is dict:
        check(isinstance(data, dict), f"{where} must be an object, got {_show(data)}")
        return {k: decode(v, args[1], f"{where}.{k}") for k, v in data.items()}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return decode_fields(hint, data, where)
    raise TypeError(f"no codec for the type {hint!r}")


def decode_fields(cls: type, data: Any, where: str = "`data`") -> Any:
    """An instance of dataclass `cls` from the dict of its encoded fields.

    A field missing from `data` takes its default (so records written before a field was
    added still read); a field without a default must be there. Unknown keys are ignored.

    Raises:
        GradtraceError: if `data` is not a dict, lacks a field or a field does not fit.
    """
    check(
        isinstance(data, dict), f"{where} of a {cls.__name__} must be an object, got {_show(data)}"
    )
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    missing = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.name in data:
            kwargs[f.name] = decode(data[f.name], hints[f.name], f"{where}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            missing.append(f.name)
    if missing:
        raise GradtraceError(f"{where} of a {cls.__name__} is missing the keys {missing}")
    return cls(**kwargs)


def same(a: Any, b: Any) -> bool:
    """Whether two record values are equal: tensors bit for bit with NaN equal to NaN."""
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        if not (isinstance(a, Tensor) and isinstance(b, Tensor)):
            return False
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        x, y = a.detach().cpu(), b.detach().cpu()
        if x.is_complex():
            x, y = torch.view_as_real(x), torch.view_as_real(y)
        if x.is_floating_point():
            if not torch.equal(x.isnan(), y.isnan()):
                return False
            x, y = torch.nan_to_num(x, nan=0.0), torch.nan_to_num(y, nan=0.0)
        return torch.equal(x, y)
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return type(a) is type(b) and all(
            same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a)
        )
    if isinstance(a, tuple | list):
        return (
            isinstance(b, tuple | list)
            and len(a) == len(b)
            and all(same(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"a {type(value).__name__}"
