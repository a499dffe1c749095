"""Chaos and order in an iterated map: Lyapunov exponent, iterates f^n, bifurcation diagram.

    Lyapunov      lambda = lim_n (1/n) sum_t log |f'(x_t)|, the mean log growth rate of
                  dx_n/dx_0: the one-dimensional picture of an exploding (lambda > 0) or a
                  vanishing (lambda < 0) gradient. For f(x) = 4 x (1 - x) it is ln 2.
    iterates      f, f o f, ..., f^n on a grid: the lectures show n = 1, 2, 3, 6; the fixed
                  points of f^n are the points of the n-cycles.
    bifurcation   the attractor's points as the parameter sweeps a range: the logistic map's
                  fixed point gives way to a 2-cycle at r = 3, then 4, 8, ... up to chaos.

Builds on `gradtrace.dynamics.maps` (the maps, orbits and cycles). Precision: float64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from gradtrace.dynamics.maps import (
    DTYPE,
    IteratedMap,
    MapCycle,
    apply,
    attractor,
    checked_output,
    compose,
    fixed_points,
    get_family,
    get_map,
    orbit,
)
from gradtrace.errors import check


@dataclass(frozen=True)
class Lyapunov:
    """A Lyapunov exponent estimated as the mean of per-start orbit averages."""

    value: float
    stderr: float  # standard error over the starts; NaN with one start
    steps: int
    starts: int

    def to_dict(self) -> dict[str, object]:
        value, stderr = (v if math.isfinite(v) else None for v in (self.value, self.stderr))
        return {"value": value, "stderr": stderr, "steps": self.steps, "starts": self.starts}


def lyapunov_exponent(
    m: IteratedMap, x0: float | Sequence[float] | Tensor, *, steps: int = 10_000,
    transient: int = 100,
) -> Lyapunov:  # fmt: skip
    """Estimate lambda = (1/n) sum_t log |f'(x_t)| after a transient, averaged over starts.

    Several starts (a sequence or tensor `x0`) run side by side; their spread gives `stderr`.
    In float64 a chaotic orbit is a pseudo-orbit after about 50 steps, which still samples the
    invariant density; an orbit that lands exactly on a critical point gives -inf.
    """
    check(steps >= 1, f"`steps` must be at least 1, got {steps}")
    x = compose(m, torch.as_tensor(x0, dtype=DTYPE).reshape(-1), transient)  # (N,) starts
    start, total = x, torch.zeros_like(x)
    for _ in range(steps):
        total += torch.log(m.df(x).abs())
        x = m.f(x)
    checked_output(m, start, x)
    check(
        bool(torch.isfinite(x).all()),
        f"the orbit of `{m.name}` escaped to infinity; expected x0 in the window {m.window}",
    )
    per_start = total / steps
    n = per_start.numel()
    stderr = float(per_start.std() / math.sqrt(n)) if n > 1 else math.nan
    return Lyapunov(float(per_start.mean()), stderr, steps, n)


@dataclass(frozen=True)
class Iterates:
    """The compositions f^n for each n in `orders`, evaluated on a grid."""

    orders: tuple[int, ...]
    x: Tensor  # (N,)
    values: Tensor  # (len(orders), N): row i is f^orders[i](x)

    def to_dict(self) -> dict[str, object]:
        return {"orders": list(self.orders), "x": self.x.tolist(), "values": self.values.tolist()}


def iterates(
    m: IteratedMap, orders: Sequence[int] = (1, 2, 3, 6), *, points: int = 801
) -> Iterates:
    """f, f∘f, ... on `points` grid points over the map's window (lecture 003: n = 1, 2, 3, 6)."""
    check(len(orders) > 0 and min(orders) >= 1, f"`orders` must be integers >= 1, got {orders}")
    check(points >= 2, f"`points` must be at least 2, got {points}")
    x = torch.linspace(*m.window, points, dtype=DTYPE)
    return Iterates(tuple(orders), x, torch.stack([compose(m, x, n) for n in orders]))


@dataclass(frozen=True)
class Bifurcation:
    """States visited after a transient for each parameter of a family; NaN where it escaped."""

    family: str
    params: Tensor  # (P,)
    states: Tensor  # (P, K): the K states after the transient, for each parameter

    def attractor_sizes(self, tol: float = 1e-6) -> Tensor:
        """Number of distinct states (within tol) per parameter, shape (P,); 0 if escaped."""
        ordered = torch.sort(self.states, dim=1).values
        count = 1 + (ordered.diff(dim=1) > tol).sum(dim=1)
        return torch.where(torch.isfinite(self.states).all(dim=1), count, 0)

    def to_dict(self) -> dict[str, object]:
        states = [[v if math.isfinite(v) else None for v in row] for row in self.states.tolist()]
        return {"family": self.family, "params": self.params.tolist(), "states": states}


def bifurcation(
    name: str, lo: float, hi: float, *, points: int = 600, transient: int = 2_000, keep: int = 64
) -> Bifurcation:
    """The bifurcation diagram of family `name` over its parameter in [lo, hi].

    All parameters iterate side by side from the critical point, whose orbit finds every
    attracting cycle; `keep` states after `transient` steps are recorded for each.
    """
    family = get_family(name)
    check(lo < hi, f"the parameter range must have lo < hi, got lo = {lo:g}, hi = {hi:g}")
    check(points >= 2 and keep >= 1, f"`points` >= 2 and `keep` >= 1, got {points}, {keep}")
    params = torch.linspace(lo, hi, points, dtype=DTYPE)
    x = torch.full_like(params, family.critical)
    for _ in range(transient):
        x = family.f(x, params)
    kept = []
    for _ in range(keep):
        x = family.f(x, params)
        kept.append(x)
    states = torch.stack(kept, dim=1)  # (P, K)
    states = torch.where(torch.isfinite(states), states, math.nan)
    return Bifurcation(name, params, states)


@dataclass(frozen=True)
class MapReport:
    """Everything `gradtrace map` shows for one map: orbit, fixed points, attractor, chaos."""

    name: str
    param: float
    formula: str
    orbit: Tensor  # (steps + 1,)
    curve: Tensor  # (2, N): x on the window and f(x)
    fixed_points: tuple[MapCycle, ...]
    attractor: MapCycle | None
    lyapunov: Lyapunov
    iterates: Iterates
    bifurcation: Bifurcation | None

    def to_dict(self) -> dict[str, object]:
        return {
            "map": self.name,
            "param": self.param,
            "formula": self.formula,
            "orbit": self.orbit.tolist(),
            "fixed_points": [c.to_dict() for c in self.fixed_points],
            "attractor": None if self.attractor is None else self.attractor.to_dict(),
            "lyapunov": self.lyapunov.to_dict(),
            "iterates": self.iterates.to_dict(),
            "bifurcation": None if self.bifurcation is None else self.bifurcation.to_dict(),
        }


def map_report(
    name: str,
    param: float | None = None,
    *,
    x0: float = 0.2,
    steps: int = 40,
    orders: Sequence[int] = (1, 2, 3, 6),
    bifurcation_range: tuple[float, float] | None = None,
) -> MapReport:
    """Analyse built-in map `name` at `param`: what `gradtrace map` prints and plots.

    The Lyapunov exponent uses 5000 steps from x0; the bifurcation diagram is computed only
    when `bifurcation_range` = (lo, hi) is given.
    """
    family = get_family(name)
    m = get_map(name, param)
    p = family.default if param is None else float(param)
    x = torch.linspace(*m.window, 801, dtype=DTYPE)
    return MapReport(
        name=name,
        param=p,
        formula=family.formula.replace(family.param, f"{p:g}", 1),
        orbit=orbit(m, x0, steps),
        curve=torch.stack([x, apply(m, x)]),
        fixed_points=fixed_points(m),
        attractor=attractor(m, x0),
        lyapunov=lyapunov_exponent(m, x0, steps=5_000),
        iterates=iterates(m, orders),
        bifurcation=None if bifurcation_range is None else bifurcation(name, *bifurcation_range),
    )
