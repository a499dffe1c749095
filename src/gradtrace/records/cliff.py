"""A gradient cliff of a one-unit RNN and gradient descent on it, plain and clipped."""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from gradtrace.errors import check
from gradtrace.records.base import Record


@dataclass(frozen=True, eq=False, repr=False)
class CliffRNN(Record):
    """The one-unit RNN h_t = tanh(w h_{t-1} + b + x), t = 1..T, and its loss
    L = (h_T - target)^2 / 2; `b` is the bias used when only `w` is swept.

    Raises:
        GradtraceError: if a number is not finite or `steps` is below 1.
    """

    w: float = 1.5
    b: float = 0.0
    steps: int = 20
    h0: float = 0.5
    target: float = -0.7
    x: float = 0.0

    def __post_init__(self) -> None:
        check(self.steps >= 1, f"`steps` must be at least 1, got {self.steps}")
        for name in ("w", "b", "h0", "target", "x"):
            value = getattr(self, name)
            check(math.isfinite(value), f"`{name}` must be a finite number, got {value}")


@dataclass(frozen=True, eq=False, repr=False)
class CliffSweep(Record):
    """h_T, L and dL/d(param) over a sweep of one parameter ("b" or "w"), each (P,)."""

    param: str
    values: Tensor
    h_final: Tensor
    loss: Tensor
    grad: Tensor


@dataclass(frozen=True, eq=False, repr=False)
class DescentPath(Record):
    """Gradient descent on b, every iterate recorded.

    Attributes:
        params: (n + 1,) b_0..b_n.
        losses: (n + 1,) L(b_i).
        grads: (n + 1,) the exact dL/db at b_i, before clipping.
        step_lengths: (n,) |b_{i+1} - b_i|.
        clip: eta, or None for plain descent.
        lr: The learning rate.
    """

    params: Tensor
    losses: Tensor
    grads: Tensor
    step_lengths: Tensor
    clip: float | None
    lr: float


@dataclass(frozen=True, eq=False, repr=False)
class CliffReport(Record):
    """A bias sweep with two descents on it, plain and clipped: what `gradtrace cliff` shows."""

    KIND = "cliff_report"

    model: CliffRNN
    sweep: CliffSweep
    plain: DescentPath
    clipped: DescentPath
