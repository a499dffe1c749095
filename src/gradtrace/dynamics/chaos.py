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

import torch
from torch import Tensor

from gradtrace import budgets
from gradtrace.dynamics.maps import (
    DTYPE,
    IteratedMap,
    apply,
    checked_output,
    compose,
    fixed_points,
    get_family,
    get_map,
    orbit,
    settle,
)
from gradtrace.errors import check
from gradtrace.records.maps import Bifurcation, Iterates, MapLyapunov, MapReport


def lyapunov_exponent(
    m: IteratedMap, x0: float | Sequence[float] | Tensor, *, steps: int = 10_000,
    transient: int = 100,
) -> MapLyapunov:  # fmt: skip
    """Estimate lambda = (1/n) sum_t log |f'(x_t)| after a transient, averaged over starts.

    Several starts (a sequence or tensor `x0`) run side by side; their spread gives `stderr`.
    In float64 a chaotic orbit is a pseudo-orbit after about 50 steps, which still samples the
    invariant density; an orbit that lands exactly on a critical point gives -inf.
    """
    check(steps >= 1, f"`steps` must be at least 1, got {steps}")
    starts = torch.as_tensor(x0, dtype=DTYPE).reshape(-1)
    work = budgets.Work(flops=10.0 * starts.numel() * (steps + transient), steps=steps + transient)
    budgets.require(work, "`steps`")
    x = compose(m, starts, transient)  # (N,) starts
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
    return MapLyapunov(float(per_start.mean()), stderr, steps, n)


def iterates(
    m: IteratedMap, orders: Sequence[int] = (1, 2, 3, 6), *, points: int = 801
) -> Iterates:
    """f, f∘f, ... on `points` grid points over the map's window (lecture 003: n = 1, 2, 3, 6)."""
    check(len(orders) > 0 and min(orders) >= 1, f"`orders` must be integers >= 1, got {orders}")
    check(points >= 2, f"`points` must be at least 2, got {points}")
    total = sum(orders)
    budgets.require(budgets.Work(flops=5.0 * points * total, steps=1.0 * total), "`orders`")
    x = torch.linspace(*m.window, points, dtype=DTYPE)
    return Iterates(tuple(orders), x, torch.stack([compose(m, x, n) for n in orders]))


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
    check(transient >= 0, f"`transient` must be at least 0, got {transient}")
    work = budgets.Work(
        memory=8.0 * points * keep, flops=5.0 * points * (transient + keep), steps=transient + keep
    )
    budgets.require(work, "`points`, `transient` or `keep`")
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
    check(math.isfinite(x0), f"`x0` must be a finite number, got {x0}")
    p = family.default if param is None else float(param)
    x = torch.linspace(*m.window, 801, dtype=DTYPE)
    it = iterates(m, orders)
    trajectory = orbit(m, x0, steps)
    diagram = None if bifurcation_range is None else bifurcation(name, *bifurcation_range)
    fixed = fixed_points(m)
    settled, fate = settle(m, x0, known=fixed)
    return MapReport(
        name=name,
        param=p,
        formula=family.formula.replace(family.param, f"{p:g}", 1),
        x0=float(x0),
        orbit=trajectory,
        curve=torch.stack([x, apply(m, x)]),
        fixed_points=fixed,
        attractor=settled,
        fate=fate,
        lyapunov=lyapunov_exponent(m, x0, steps=5_000),
        iterates=it,
        bifurcation=diagram,
    )
