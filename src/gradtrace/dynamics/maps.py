"""Iterated one-dimensional maps x_{t+1} = f(x_t): orbits, fixed points, cycles and chaos.

A one-unit RNN with a constant input is such a map, h_t = tanh(w h_{t-1} + b); the forward
pass iterates f and the backward pass multiplies the derivatives f'(x_t) along the orbit.

    fixed point   x* = f(x*): a sink if |f'(x*)| < 1 (nearby orbits approach it), a source if
                  |f'(x*)| > 1 (they leave it), marginal if |f'(x*)| = 1 (a tangency).
    p-cycle       x_0, ..., x_{p-1} with f(x_i) = x_{(i+1) mod p}; every x_i is a fixed point of
                  the p-fold composition f^p, whose derivative there is the cycle's multiplier
                  m = f'(x_0) f'(x_1) ... f'(x_{p-1}) by the chain rule; a sink if |m| < 1.

Lyapunov exponents, iterates and bifurcation diagrams are in `gradtrace.dynamics.chaos`.

Built-in families, whose keys in `MAPS` are the CLI names:
    logistic    f(x) = r x (1 - x)
    quadratic   f(x) = x^2 + c

Fixed points and cycles come from the one finder, `gradtrace.core.fixed_points`, on f^p from a
grid over the map's window: the sign changes of f^p(x) - x refined by bisection, and Newton from
every grid point for the roots where f^p(x) - x touches zero without changing sign (x^2 + 1/4
at x = 1/2, exactly at a bifurcation). Precision: float64 throughout.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from gradtrace import budgets
from gradtrace.core.fixed_points import classify, find_fixed_points
from gradtrace.errors import GradtraceError, check
from gradtrace.records.maps import MapCycle

DTYPE = torch.float64
MapFn = Callable[[Tensor], Tensor]
FamilyFn = Callable[[Tensor, Tensor | float], Tensor]
_ROOT_RESIDUAL = 1e-8  # |f^p(x) - x| accepted at a cycle point (f^p can be steep there)


@dataclass(frozen=True)
class MapFamily:
    """A one-parameter family f(x; p) with its derivative in x, vectorised over x and p."""

    name: str
    formula: str
    param: str
    default: float
    critical: float  # f'(critical) = 0; its orbit is attracted to every attracting cycle
    f: FamilyFn
    df: FamilyFn
    window: Callable[[float], tuple[float, float]]  # parameter -> interval of bounded orbits


def _logistic(x: Tensor, r: Tensor | float) -> Tensor:
    return r * x * (1 - x)


def _logistic_df(x: Tensor, r: Tensor | float) -> Tensor:
    return r * (1 - 2 * x)


def _quadratic(x: Tensor, c: Tensor | float) -> Tensor:
    return x * x + c


def _quadratic_df(x: Tensor, c: Tensor | float) -> Tensor:
    return 2 * x


def _quadratic_window(c: float) -> tuple[float, float]:
    # |x| > 1/2 + sqrt(1/4 - c) escapes; the 5 % pad keeps that boundary fixed point off the
    # grid's end, where a sign change could be missed.
    radius = 0.5 + math.sqrt(max(0.25 - c, 0.0))
    return (-1.05 * radius, 1.05 * radius)


def _logistic_window(r: float) -> tuple[float, float]:
    return (0.0, 1.0)


MAPS: dict[str, MapFamily] = {
    "logistic": MapFamily(
        "logistic", "r x (1 - x)", "r", 3.5, 0.5, _logistic, _logistic_df, _logistic_window
    ),
    "quadratic": MapFamily(
        "quadratic", "x^2 + c", "c", 0.15, 0.0, _quadratic, _quadratic_df, _quadratic_window
    ),
}


@dataclass(frozen=True)
class IteratedMap:
    """One map f with its derivative and the window [lo, hi] searched for fixed points."""

    name: str
    f: MapFn
    df: MapFn
    window: tuple[float, float]


def get_family(name: str) -> MapFamily:
    """Look up a built-in family by its CLI name; raises GradtraceError if unknown."""
    check(name in MAPS, f"`name` must be one of {', '.join(MAPS)}, got {name!r}")
    return MAPS[name]


def get_map(name: str, param: float | None = None) -> IteratedMap:
    """The built-in map `name` at parameter `param` (the family's default when None)."""
    family = get_family(name)
    p = family.default if param is None else float(param)
    check(math.isfinite(p), f"`param` of map {name!r} must be a finite number, got {p}")
    return IteratedMap(
        f"{name}({family.param}={p:g})",
        lambda x: family.f(x, p),
        lambda x: family.df(x, p),
        family.window(p),
    )


def custom_map(
    f: MapFn,
    df: MapFn | None = None,
    *,
    window: tuple[float, float] = (-1.0, 1.0),
    name: str = "custom",
) -> IteratedMap:
    """Wrap a user callable on float64 tensors as a map.

    Without `df` the derivative comes from autograd when `f` is differentiable by torch and
    from central finite differences (error about 1e-10) otherwise.

    Example:
        >>> m = custom_map(lambda x: torch.cos(x), window=(0.0, 1.0))
    """
    check(window[0] < window[1], f"`window` must have lo < hi, got {window}")
    return IteratedMap(name, f, df or _derivative_of(f), window)


def _derivative_of(f: MapFn) -> MapFn:
    probe = torch.tensor([0.25], dtype=DTYPE, requires_grad=True)
    try:
        differentiable = bool(f(probe).requires_grad)
    except (RuntimeError, TypeError):
        differentiable = False
    if not differentiable:
        return lambda x: _finite_difference(f, x)

    def by_autograd(x: Tensor) -> Tensor:
        with torch.enable_grad():
            leaf = x.detach().clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(f(leaf).sum(), leaf)
        return grad

    return by_autograd


def _finite_difference(f: MapFn, x: Tensor) -> Tensor:
    step = 1e-5 * torch.clamp(x.abs(), min=1.0)  # about eps^(1/3): balances rounding and h^2
    return (f(x + step) - f(x - step)) / (2 * step)


def checked_output(m: IteratedMap, x: Tensor, y: Tensor) -> Tensor:
    """`y` = f(x) if it is a tensor shaped like `x` with no NaN; else a GradtraceError."""
    check(
        isinstance(y, Tensor) and y.shape == x.shape,
        f"map `{m.name}` must return a tensor shaped like its input {tuple(x.shape)}, "
        f"got {getattr(y, 'shape', type(y).__name__)}",
    )
    nan = torch.isnan(y)
    if bool(nan.any()):
        raise GradtraceError(
            f"map `{m.name}` returned NaN for x = {x[nan].flatten()[0].item():.6g}; "
            "expected a real number for every x, so check the formula or the window"
        )
    return y


def apply(m: IteratedMap, x: Tensor) -> Tensor:
    """f(x) elementwise; raises GradtraceError if f returns NaN or the wrong shape."""
    return checked_output(m, x, m.f(x))


def compose(m: IteratedMap, x: Tensor, n: int) -> Tensor:
    """f^n(x) = f(f(...f(x))) with n applications of f, checked once at the end (NaN persists)."""
    y = x
    for _ in range(n):
        y = m.f(y)
    return checked_output(m, x, y)


def orbit(m: IteratedMap, x0: float, steps: int) -> Tensor:
    """The orbit x_0, x_1 = f(x_0), ..., x_steps, shape (steps + 1,).

    Raises:
        GradtraceError: if f returns NaN or the orbit escapes to infinity.
    """
    check(steps >= 1, f"`steps` must be at least 1, got {steps}")
    budgets.require(budgets.Work(memory=200.0 * steps, steps=3.0 * steps), "`steps`")
    xs = [torch.tensor([float(x0)], dtype=DTYPE)]
    for t in range(steps):
        xs.append(apply(m, xs[-1]))
        check(
            bool(torch.isfinite(xs[-1]).all()),
            f"the orbit of `{m.name}` from x0 = {x0:g} escaped to infinity at step {t + 1}; "
            "expected a bounded orbit, so change x0 or the parameter, or take fewer `steps`",
        )
    return torch.cat(xs)


def _make_cycle(m: IteratedMap, points: Tensor, kind: str | None = None) -> MapCycle:
    """The cycle through `points`, from its smallest point; `kind` from its multiplier if None."""
    start = int(torch.argmin(points))
    ordered = torch.roll(points, -start)
    multiplier = float(m.df(ordered).prod())
    if kind is None:
        kind = classify(torch.tensor([multiplier], dtype=torch.complex128))
    return MapCycle(tuple(ordered.tolist()), multiplier, kind)


def _composition(m: IteratedMap, period: int) -> tuple[MapFn, MapFn]:
    """f^p on (B, 1) states and its derivative (B, 1, 1) by the chain rule, unchecked."""

    def step(x: Tensor) -> Tensor:
        for _ in range(period):
            x = m.f(x)
        return x

    def jacobian(x: Tensor) -> Tensor:
        slope = torch.ones_like(x)
        for _ in range(period):
            slope = slope * m.df(x)
            x = m.f(x)
        return slope.unsqueeze(-1)  # (B, 1, 1)

    return step, jacobian


def periodic_orbits(
    m: IteratedMap,
    period: int,
    *,
    points: int = 20_001,
    window: tuple[float, float] | None = None,
    tol: float = 1e-9,
) -> tuple[MapCycle, ...]:
    """All cycles of minimal period `period` whose points lie in the window.

    Args:
        m: the map.
        period: p >= 1; p = 1 gives the fixed points.
        points: grid size over the window; finer grids separate close roots.
        window: (lo, hi) searched; the map's own window when None.
        tol: two points closer than this are the same point.

    Returns:
        The cycles, sorted by their smallest point, each with its multiplier and kind.

    Raises:
        GradtraceError: if f returns NaN on the grid, or an argument is out of range.
    """
    check(period >= 1, f"`period` must be at least 1, got {period}")
    check(points >= 2, f"`points` must be at least 2, got {points}")
    lo, hi = window or m.window
    check(lo < hi, f"`window` must have lo < hi, got {(lo, hi)}")
    budgets.require(budgets.Work(flops=40.0 * period * points, steps=30.0 * period), "`period`")
    grid = torch.linspace(lo, hi, points, dtype=DTYPE)
    compose(m, grid, period)  # refuses a map that returns NaN on its window, naming the x
    step, jacobian = _composition(m, period)
    found = find_fixed_points(
        step, grid.unsqueeze(1), adam_steps=0, tol=_ROOT_RESIDUAL, merge_tol=tol, jacobian=jacobian
    )
    pad = 1e-12 * (hi - lo)
    inside = [p for p in found.points if lo - pad <= float(p.state[0]) <= hi + pad]
    if not inside:
        return ()
    roots = torch.stack([p.state[0] for p in inside])  # (R,)
    kinds = [p.kind for p in inside]  # the finder's, which knows each point's precision
    # Where f^p - x has a multiple root (at a period doubling) a point is only known to about
    # residual^(1/3): a "cycle" whose points are that close to each other is the fixed point.
    floor = max([p.residual for p in inside] + [float(torch.finfo(DTYPE).eps)])
    same = max(tol, 10 * floor ** (1 / 3))
    trips = [roots]
    for _ in range(period - 1):
        trips.append(apply(m, trips[-1]))
    orbits = torch.stack(trips)  # (p, R): column r is the orbit of root r
    minimal = torch.ones_like(roots, dtype=torch.bool)
    for q in (q for q in range(1, period) if period % q == 0):
        minimal &= (orbits[q] - orbits[0]).abs() > same
    cycles: list[MapCycle] = []
    for r in torch.nonzero(minimal).flatten().tolist():
        cycle = _make_cycle(m, orbits[:, r], kinds[r])
        if all(abs(cycle.points[0] - c.points[0]) > tol for c in cycles):
            cycles.append(cycle)
    return tuple(sorted(cycles, key=lambda c: c.points[0]))


def fixed_points(
    m: IteratedMap, *, points: int = 20_001, window: tuple[float, float] | None = None
) -> tuple[MapCycle, ...]:
    """The fixed points x* = f(x*) in the window, as 1-cycles; see `periodic_orbits`."""
    return periodic_orbits(m, 1, points=points, window=window)


def settle(
    m: IteratedMap,
    x0: float,
    *,
    transient: int = 10_000,
    max_period: int = 64,
    tol: float = 1e-9,
    known: tuple[MapCycle, ...] = (),
) -> tuple[MapCycle | None, str]:
    """Where the orbit of x0 ends up: the attracting cycle it settles on (or None), in words.

    The orbit runs `transient` steps, then the smallest p <= max_period with
    |x_{n+p} - x_n| < tol is its period. A cycle counts as an attractor only if it is a sink
    or marginal: an orbit can land exactly on a source (x^2 - 2 from 0 lands on 2, r = 4 from
    1/2 on 0) and stay there in exact arithmetic, but a source repels every nearby orbit. An
    orbit that creeps towards one of the `known` marginal fixed points (a tangency attracts
    from one side, algebraically rather than exponentially) is said to.
    """
    check(transient >= 0, f"`transient` must be at least 0, got {transient}")
    x = compose(m, torch.tensor([float(x0)], dtype=DTYPE), transient)
    tail = [x]
    for _ in range(max_period):
        tail.append(apply(m, tail[-1]))
    states = torch.cat(tail)  # (max_period + 1,)
    if not bool(torch.isfinite(states).all()):
        return None, "escapes to infinity"
    for p in range(1, max_period + 1):
        if abs(float(states[p] - states[0])) < tol:
            cycle = _make_cycle(m, states[:p])
            points = ", ".join(f"{v:.6g}" for v in cycle.points)
            what = "fixed point" if p == 1 else f"{p}-cycle"
            if cycle.kind != "source":
                return cycle, (
                    f"settles on the {cycle.kind} {what} {points} (multiplier "
                    f"{cycle.multiplier:.4g})"
                )
            return None, (
                f"lands exactly on the source {what} {points} (multiplier "
                f"{cycle.multiplier:.4g}): a repeller, not an attractor; any perturbation, "
                "even a rounding error, leaves it"
            )
    for point in (c for c in known if c.kind == "marginal" and c.period == 1):
        # Two steps apart: near a multiplier of -1 the orbit alternates sides of the point.
        before = abs(float(tail[-3][0]) - point.points[0])
        after = abs(float(states[-1]) - point.points[0])
        if after < 1e-2 and after <= before:
            return None, (
                f"creeps towards the marginal fixed point {point.points[0]:.6g} (multiplier "
                f"{point.multiplier:.3g}, still {after:.2g} away after {transient + max_period} "
                "steps): a marginal point attracts algebraically, not exponentially"
            )
    return None, (
        f"settles on no cycle of period <= {max_period}: chaotic, or converging too slowly"
    )


def attractor(
    m: IteratedMap, x0: float, *, transient: int = 10_000, max_period: int = 64, tol: float = 1e-9
) -> MapCycle | None:
    """The sink (or marginal) cycle the orbit of x0 settles on, or None; see `settle`."""
    return settle(m, x0, transient=transient, max_period=max_period, tol=tol)[0]
