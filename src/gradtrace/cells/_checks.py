"""What the cells' weight classes share: argument checks, and moving every tensor at once.

Each check raises `GradtraceError` with one sentence naming the argument. Finiteness is checked
where data enters (weight construction, `replay`), not on every step, because it costs a
device synchronisation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, replace
from typing import TypeVar

import torch
from torch import Tensor

from gradtrace.errors import check


def check_tensor(name: str, t: object, ndim: int) -> Tensor:
    """Check that `t` is a floating-point tensor with `ndim` dimensions and return it."""
    check(isinstance(t, Tensor), f"`{name}` must be a torch.Tensor, got {type(t).__name__}")
    assert isinstance(t, Tensor)  # for the type checker; `check` has just ensured it
    check(
        t.is_floating_point(),
        f"`{name}` must have a floating-point dtype, got {t.dtype}; convert it with `.double()`",
    )
    check(t.ndim == ndim, f"`{name}` must have {ndim} dimensions, got shape {tuple(t.shape)}")
    return t


def check_finite(name: str, t: Tensor) -> None:
    """Check that `t` has no NaN or Inf entries."""
    bad = int((~torch.isfinite(t)).sum().item())
    check(bad == 0, f"`{name}` must be finite, got {bad} NaN/Inf entries")


def check_like(name: str, t: Tensor, ref_name: str, ref: Tensor) -> None:
    """Check that `t` has the dtype and device of `ref`."""
    check(
        t.dtype == ref.dtype and t.device == ref.device,
        f"`{name}` must have the dtype and device of `{ref_name}` ({ref.dtype} on {ref.device}), "
        f"got {t.dtype} on {t.device}; convert it with `.to(...)`",
    )


def check_weights(weights: Mapping[str, Tensor | None]) -> None:
    """Check that all given weights are finite and share the dtype and device of the first."""
    present = [(name, t) for name, t in weights.items() if t is not None]
    ref_name, ref = present[0]
    for name, t in present:
        check_like(name, t, ref_name, ref)
        check_finite(name, t)


def check_step_inputs(
    x: Tensor, s: Tensor, *, state_name: str, input_size: int, state_size: int, like: Tensor
) -> None:
    """Check a cell's batched input `x` (B, I) and state `s` (B, S) against its weights.

    Args:
        x: Input, expected shape (B, I).
        s: State, expected shape (B, S).
        state_name: The state argument's name in the caller (`h` or `s`), used in messages.
        input_size: I, from the weights.
        state_size: S, from the weights.
        like: A weight tensor whose dtype and device `x` and `s` must share.
    """
    # Fast path for every step of a long sequence: one boolean, no message formatted.
    if (
        isinstance(x, Tensor)
        and isinstance(s, Tensor)
        and x.ndim == 2
        and x.shape[1] == input_size
        and s.shape == (x.shape[0], state_size)
        and x.dtype == s.dtype == like.dtype
        and x.device == s.device == like.device
        and x.is_floating_point()
    ):
        return
    check_tensor("x", x, 2)
    check_tensor(state_name, s, 2)
    check(
        x.shape[1] == input_size,
        f"`x` must have shape (B, I = {input_size}) to match the weights, "
        f"got shape {tuple(x.shape)}",
    )
    check(
        s.shape == (x.shape[0], state_size),
        f"`{state_name}` must have shape (B = {x.shape[0]}, {state_size}) to match `x` and the "
        f"weights, got shape {tuple(s.shape)}",
    )
    check_like("x", x, "weights", like)
    check_like(state_name, s, "weights", like)


W = TypeVar("W")


def moved(weights: W, dtype: torch.dtype | None, device: torch.device | str | None) -> W:
    """A copy of a weights dataclass with every tensor field moved to `dtype` and `device`."""
    changes = {
        f.name: value.to(device=device, dtype=dtype)
        for f in fields(weights)  # type: ignore[arg-type]
        if isinstance(value := getattr(weights, f.name), Tensor)
    }
    return replace(weights, **changes)  # type: ignore[type-var]
