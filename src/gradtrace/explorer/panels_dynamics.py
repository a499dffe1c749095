"""The dynamics panels: an iterated map, its bifurcation diagram, a 2-unit RNN's basins, a cliff.

Each is one call of `gradtrace.dynamics` (what `gradtrace map` and `gradtrace cliff` run):

    map_panel           `map_report`: the cobweb of f(x) = r x (1 - x) or x^2 + c, the orbit
                        of x0, f^n, the fixed points with their kind, the fate of the orbit
                        and the Lyapunov exponent
    bifurcation_panel   `bifurcation`: the attractor by parameter (the page marks the current
                        parameter on it)
    basins_panel        `rnn_portrait`: h_t = tanh(W h_{t-1} + b) with 2 units, the basin of
                        each grid state in [-1, 1]^2, the fixed points and a few orbits
    cliff_panel         `cliff_report`: the loss of a one-unit RNN by its bias b over T steps,
                        and gradient descent on it with and without norm clipping at eta

Precision: float64, as the library computes them.
"""

from __future__ import annotations

from typing import Any

from gradtrace.dynamics.chaos import bifurcation, map_report
from gradtrace.dynamics.cliff import cliff_report
from gradtrace.dynamics.maps import MAPS
from gradtrace.dynamics.rnn_dynamics import rnn_portrait, small_rnn
from gradtrace.explorer.jsonable import complex_parts, floats, ints, number
from gradtrace.explorer.params import Param, check_order, choice, integer, real
from gradtrace.records.cliff import CliffRNN, DescentPath
from gradtrace.records.maps import MapCycle

KEEP = 48  # attractor states kept per parameter of the bifurcation diagram

MAP_PARAMS: tuple[Param, ...] = (
    choice("map", "logistic", MAPS, "map"),
    real("r", 3.5, 0.0, 4.0, 0.001, "r of r x (1 - x)"),
    real("c", 0.15, -2.0, 0.25, 0.001, "c of x^2 + c"),
    real("x0", 0.2, -2.0, 2.0, 0.001, "start x0"),
    integer("steps", 40, 1, 500, "orbit steps"),
    integer("order", 2, 1, 16, "iterate f^n, n"),
)
BIFURCATION_PARAMS: tuple[Param, ...] = (
    choice("map", "logistic", MAPS, "map"),
    real("r_lo", 2.5, 0.0, 4.0, 0.01, "r from"),
    real("r_hi", 4.0, 0.0, 4.0, 0.01, "r to"),
    real("c_lo", -2.0, -2.0, 0.25, 0.01, "c from"),
    real("c_hi", 0.25, -2.0, 0.25, 0.01, "c to"),
    integer("points", 400, 50, 1000, "parameter values"),
)
BASIN_PARAMS: tuple[Param, ...] = (
    real("w11", 2.0, -4.0, 4.0, 0.01, "W[1,1]"),
    real("w12", 0.5, -4.0, 4.0, 0.01, "W[1,2]"),
    real("w21", 0.5, -4.0, 4.0, 0.01, "W[2,1]"),
    real("w22", 2.0, -4.0, 4.0, 0.01, "W[2,2]"),
    real("b1", 0.1, -2.0, 2.0, 0.01, "b[1]"),
    real("b2", 0.0, -2.0, 2.0, 0.01, "b[2]"),
    integer("points", 101, 11, 201, "grid points per axis"),
    integer("steps", 100, 4, 400, "steps before a state is matched to a sink"),
)
CLIFF_PARAMS: tuple[Param, ...] = (
    integer("steps", 20, 1, 100, "steps T"),
    real("w", 1.5, -3.0, 3.0, 0.01, "recurrent weight w"),
    real("h0", 0.5, -1.0, 1.0, 0.01, "initial state h_0"),
    real("target", -0.7, -1.0, 1.0, 0.01, "target of h_T"),
    real("lo", -1.5, -3.0, 3.0, 0.01, "bias from"),
    real("hi", 1.0, -3.0, 3.0, 0.01, "bias to"),
    integer("points", 501, 11, 2001, "bias values"),
    real("start", 0.5, -3.0, 3.0, 0.01, "descent starts at b ="),
    real("lr", 1.0, 0.001, 10.0, 0.001, "learning rate", log=True),
    real("clip", 0.1, 0.001, 10.0, 0.001, "clipping threshold eta", log=True),
    integer("iterations", 40, 1, 200, "descent iterations"),
)


def _cycle(c: MapCycle) -> dict[str, Any]:
    return {"points": floats(c.points), "multiplier": number(c.multiplier), "kind": c.kind}


def map_panel(*, map: str, r: float, c: float, x0: float, steps: int, order: int) -> dict[str, Any]:
    """The map report of `map` at its parameter (r or c) from x0.

    Returns:
        A JSON-able dict: "param", "formula", "curve" ({"x", "y"}: f on the window),
        "iterate" ({"n", "x", "y"}: f^n), "orbit" (x_0..x_steps), "fixed_points" (points,
        multiplier, kind), "attractor", "fate" (in words), "lyapunov" (nats per step),
        "command".

    Raises:
        GradtraceError: as `map_report` (an orbit that escapes to infinity, say).
    """
    param = r if map == "logistic" else c
    orders = (1,) if order == 1 else (1, order)
    report = map_report(map, param, x0=x0, steps=steps, orders=orders)
    it = report.iterates
    return {
        "map": map,
        "param": param,
        "formula": report.formula,
        "curve": {"x": floats(report.curve[0]), "y": floats(report.curve[1])},
        "iterate": {"n": order, "x": floats(it.x), "y": floats(it.values[-1])},
        "orbit": floats(report.orbit),
        "fixed_points": [_cycle(p) for p in report.fixed_points],
        "attractor": None if report.attractor is None else _cycle(report.attractor),
        "fate": report.fate,
        "lyapunov": number(report.lyapunov.value),
        "command": f"gradtrace map --map {map} --param {param!r} --x0 {x0!r} --steps {steps}",
    }


def bifurcation_panel(
    *, map: str, r_lo: float, r_hi: float, c_lo: float, c_hi: float, points: int
) -> dict[str, Any]:
    """The bifurcation diagram of `map` over [r_lo, r_hi] or [c_lo, c_hi].

    Returns:
        A JSON-able dict: "params" (P,), "states" (P, KEEP; NaN where the orbit escaped) and
        "attractor_sizes" (P,).

    Raises:
        GradtraceError: naming the upper end of an empty range.
    """
    lo, hi = (r_lo, r_hi) if map == "logistic" else (c_lo, c_hi)
    prefix = "r" if map == "logistic" else "c"
    check_order(f"{prefix}_lo", lo, f"{prefix}_hi", hi)
    diagram = bifurcation(map, lo, hi, points=points, keep=KEEP)
    return {
        "map": map,
        "params": floats(diagram.params),
        "states": floats(diagram.states),
        "attractor_sizes": ints(diagram.attractor_sizes()),
    }


def basins_panel(
    *, w11: float, w12: float, w21: float, w22: float, b1: float, b2: float, points: int,
    steps: int,
) -> dict[str, Any]:  # fmt: skip
    """Basins of attraction of h_t = tanh(W h_{t-1} + b), 2 units, on [-1, 1]^2.

    Returns:
        A JSON-able dict: "axis" (N,), "labels" (N, N; row i at h_2 = axis[i], the index of
        the sink each grid state reaches, -1 for none), "attractors" (K, 2), "fixed_points"
        (state, kind, eigenvalues) and "trajectories" (M, T + 1, 2).
    """
    weights = small_rnn([[w11, w12], [w21, w22]], [b1, b2])
    portrait = rnn_portrait(weights, points=points, steps=steps)
    fixed = [
        {"state": floats(p.state), "kind": p.kind, "eigenvalues": complex_parts(p.eigenvalues)}
        for p in portrait.fixed_points.points
    ]
    return {
        "axis": floats(portrait.axis),
        "labels": ints(portrait.labels),
        "attractors": floats(portrait.attractors),
        "fixed_points": fixed,
        "trajectories": floats(portrait.trajectories),
    }


def _path(run: DescentPath) -> dict[str, Any]:
    return {
        "params": floats(run.params),
        "losses": floats(run.losses),
        "grads": floats(run.grads),
        "longest_step": number(float(run.step_lengths.max())),
        "final_b": number(float(run.params[-1])),
        "final_loss": number(float(run.losses[-1])),
    }


def cliff_panel(
    *, steps: int, w: float, h0: float, target: float, lo: float, hi: float, points: int,
    start: float, lr: float, clip: float, iterations: int,
) -> dict[str, Any]:  # fmt: skip
    """The loss of h_t = tanh(w h_{t-1} + b) by b, and descent on it, plain and clipped.

    Returns:
        A JSON-able dict: "b", "loss", "grad" (dL/db) and "h_final" over the sweep,
        "peak" (the largest |dL/db| and its b), "plain" and "clipped" descents (iterates,
        losses, gradients, longest step, final b and loss).

    Raises:
        GradtraceError: naming `hi` for an empty range, or as `cliff_report`.
    """
    check_order("lo", lo, "hi", hi)
    model = CliffRNN(w=w, steps=steps, h0=h0, target=target)
    report = cliff_report(
        model, lo=lo, hi=hi, points=points, start=start, lr=lr, clip=clip, iterations=iterations
    )
    sweep = report.sweep
    peak = int(sweep.grad.abs().argmax())
    return {
        "b": floats(sweep.values),
        "loss": floats(sweep.loss),
        "grad": floats(sweep.grad),
        "h_final": floats(sweep.h_final),
        "peak": {"b": number(float(sweep.values[peak])), "grad": number(float(sweep.grad[peak]))},
        "plain": _path(report.plain),
        "clipped": _path(report.clipped),
        "command": (
            f"gradtrace cliff --steps {steps} --w {w!r} --h0 {h0!r} --target {target!r} "
            f"--bias {lo!r}:{hi!r} --points {points} --start {start!r} --lr {lr!r} "
            f"--clip {clip!r} --iterations {iterations}"
        ),
    }
