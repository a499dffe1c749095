"""Results of the dynamics lab's iterated maps: a map report, a bifurcation diagram and the
Mandelbrot set's escape times."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gradtrace.records.base import Record


@dataclass(frozen=True, eq=False, repr=False)
class MapCycle(Record):
    """A periodic orbit x_0..x_{p-1}, starting at its smallest point; p = 1 is a fixed point.

    Attributes:
        points: The cycle's points.
        multiplier: f'(x_0) ... f'(x_{p-1}), the derivative of f^p at each point.
        kind: "sink", "source" or "marginal" (see `gradtrace.records.fixed_points`).
    """

    points: tuple[float, ...]
    multiplier: float
    kind: str

    @property
    def period(self) -> int:
        """p."""
        return len(self.points)


@dataclass(frozen=True, eq=False, repr=False)
class MapLyapunov(Record):
    """A map's Lyapunov exponent: the mean of per-start orbit averages of log |f'(x_t)|.

    Attributes:
        value: The estimate, nats per step.
        stderr: Standard error over the starts; NaN with one start.
        steps: Steps averaged per start.
        starts: How many starts.
    """

    value: float
    stderr: float
    steps: int
    starts: int


@dataclass(frozen=True, eq=False, repr=False)
class Iterates(Record):
    """The compositions f^n for each n in `orders`, on a grid: values[i] = f^orders[i](x)."""

    orders: tuple[int, ...]
    x: Tensor
    values: Tensor


@dataclass(frozen=True, eq=False, repr=False)
class Bifurcation(Record):
    """States visited after a transient for each parameter of a family; NaN where it escaped.

    Attributes:
        family: The map family.
        params: (P,) the parameter values.
        states: (P, K) the K states kept after the transient, for each parameter.
    """

    KIND = "bifurcation"

    family: str
    params: Tensor
    states: Tensor

    def attractor_sizes(self, tol: float = 1e-6) -> Tensor:
        """Number of distinct states (within tol) per parameter, shape (P,); 0 if escaped."""
        ordered = torch.sort(self.states, dim=1).values
        count = 1 + (ordered.diff(dim=1) > tol).sum(dim=1)
        return torch.where(torch.isfinite(self.states).all(dim=1), count, 0)


@dataclass(frozen=True, eq=False, repr=False)
class MapReport(Record):
    """Everything `gradtrace map` shows for one map: orbit, fixed points, attractor, chaos.

    Attributes:
        name: The family ("logistic" or "quadratic").
        param: Its parameter.
        formula: f(x) with the parameter filled in.
        x0: The start of the orbit.
        orbit: (steps + 1,) x_0..x_steps.
        curve: (2, N) x on the window and f(x).
        fixed_points: The fixed points in the window, as 1-cycles.
        attractor: The sink or marginal cycle the orbit of x0 settles on, or None.
        fate: What the orbit of x0 does, in words (settles, lands on a source, wanders).
        lyapunov: The Lyapunov exponent from x0.
        iterates: f^n on the window.
        bifurcation: The bifurcation diagram, when asked for.
    """

    KIND = "map_report"

    name: str
    param: float
    formula: str
    x0: float
    orbit: Tensor
    curve: Tensor
    fixed_points: tuple[MapCycle, ...]
    attractor: MapCycle | None
    fate: str
    lyapunov: MapLyapunov
    iterates: Iterates
    bifurcation: Bifurcation | None

    def __repr__(self) -> str:
        return f"MapReport({self.name} f(x) = {self.formula}, x0 = {self.x0:g}: {self.fate})"


@dataclass(frozen=True, eq=False, repr=False)
class EscapeImage(Record):
    """Escape times of z <- z^2 + c from z_0 = 0 over a grid of c = re + i im.

    Attributes:
        re: (W,) real parts, left to right.
        im: (H,) imaginary parts, bottom to top.
        counts: (H, W) int64 escape time n(c), or `max_iter` for points that never escaped.
        max_iter: The iteration budget.
        inside_fraction: The share of points counted as members of the set.
    """

    KIND = "mandelbrot"

    re: Tensor
    im: Tensor
    counts: Tensor
    max_iter: int
    inside_fraction: float

    @property
    def inside(self) -> Tensor:
        """(H, W) bool: points counted as members of the set."""
        return self.counts >= self.max_iter
