"""Lecture 003, part one: the univariate RNN's w^(T-1), iterated maps, and fixed points as
sinks and sources.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from gradtrace.core.closed_forms import univariate_gradient
from gradtrace.core.engine import contribution_curve
from gradtrace.dynamics.chaos import lyapunov_exponent, map_report
from gradtrace.dynamics.maps import compose, get_map, orbit
from gradtrace.plots.figure import plt
from gradtrace.records.maps import MapReport
from gradtrace.tour.embed import figure, record_figure
from gradtrace.tour.page import Section, esc, num, para, table

T = 50
QUOTED = {1.1: 117.4, 0.9: 0.00515}  # lecture 003's dh(T)/dh(1) for T = 50
LOGISTIC_R, QUADRATIC_C = 3.5, 0.15
ORDERS = (1, 2, 3, 6)


def autograd_univariate(w: float, steps: int) -> float:
    """dh_T/dh_1 of h_t = w h_(t-1) over `steps` states, by torch.autograd."""
    h1 = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    h = h1
    for _ in range(steps - 1):
        h = w * h
    (grad,) = torch.autograd.grad(h, h1)
    return float(grad)


def _printed(value: float, quoted: float) -> bool:
    """Whether `value` prints as `quoted` at the quote's own precision (4 significant digits
    for 117.4, 3 for 0.00515)."""
    digits = len(f"{quoted:g}".replace(".", "").lstrip("0"))
    return f"{value:.{digits}g}" == f"{quoted:.{digits}g}"


def univariate_section() -> Section:
    """w^(T-1) with T = 50 states: 106.72 and 0.00573; the lecture's numbers are w^50."""
    rows, numbers, ok = [], {}, True
    for w, quoted in QUOTED.items():
        closed = univariate_gradient(w, T)  # w^(T-1)
        engine = 10 ** float(
            contribution_curve(torch.full((T - 1, 1, 1), w, dtype=torch.float64)).log10_norm[0]
        )
        grad = autograd_univariate(w, T)
        one_more = w**T
        ok &= _printed(closed, quoted)
        numbers[str(w)] = {
            "closed_form": closed,
            "engine": engine,
            "autograd": grad,
            "w_power_T": one_more,
            "quoted": quoted,
        }
        rows.append(
            (
                num(w, 2),
                num(quoted, 4),
                num(closed, 5),
                num(engine, 5),
                num(grad, 5),
                num(one_more, 5),
            )
        )
    measured = para(
        f"T = {T} states h_1..h_T are joined by T - 1 = {T - 1} transitions, each contributing a "
        "factor w (linear activation). gradtrace's closed form, its engine on the 49 scalar "
        "Jacobians and torch.autograd agree; the lecture's values are what one more factor gives."
    ) + table(
        (
            "w",
            "the lecture says",
            "w^(T-1), closed form",
            "engine",
            "autograd",
            "w^T (one factor more)",
        ),
        rows,
    )
    Ts = np.arange(2, 81)
    fig, ax = plt.subplots(figsize=(7.5, 4.0))
    for w, color in ((1.1, "tab:red"), (0.9, "tab:blue")):
        ax.semilogy(Ts, w ** (Ts - 1.0), color=color, label=f"w = {w}: w^(T-1)")
        ax.semilogy([T], [w ** (T - 1)], "o", color=color)
        ax.semilogy([T], [QUOTED[w]], "x", color="black", ms=8)
    ax.plot([], [], "x", color="black", label="the lecture's value at T = 50")
    ax.axvline(T, color="grey", ls=":", lw=1)
    ax.set(xlabel="T (states)", ylabel="dh_T/dh_1 (log scale)")
    ax.set_title("The univariate RNN with a linear activation", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return Section(
        id="univariate",
        title="The univariate RNN: w^(T-1)",
        lecture="lecture 003, why gradients explode or vanish",
        claim=para(
            "For one unit, dh(T)/dh(1) = w^(T-1) times the slopes; with a linear activation it is "
            "w^(T-1), and the lecture gives 117.4 for w = 1.1 and 0.00515 for w = 0.9 at T = 50."
        ),
        measured=measured,
        agree=ok,
        verdict=(
            "the quoted values are reproduced."
            if ok
            else f"w^(T-1) is {num(numbers['1.1']['closed_form'], 5)} and "
            f"{num(numbers['0.9']['closed_form'], 3)} at T = {T}; the lecture's 117.4 and 0.00515 "
            "are w^50, one factor too many."
        ),
        figures=(
            figure(
                fig,
                "w^(T-1) against T; the lecture's values sit one step higher.",
                "univariate gradient",
            ),
        ),
        numbers=numbers,
    )


def _turning_points(values: torch.Tensor) -> int:
    """Local extrema of a sampled curve: sign changes of its differences."""
    slope = torch.sign(values.diff())
    slope = slope[slope != 0]
    return int((slope.diff() != 0).sum())


def turning_points(r: float, orders: tuple[int, ...] = ORDERS, points: int = 200_001) -> list[int]:
    """Turning points of f^n on [0, 1] for f(x) = r x (1 - x), on a fine grid."""
    m = get_map("logistic", r)
    x = torch.linspace(0.0, 1.0, points, dtype=torch.float64)
    return [_turning_points(compose(m, x, n)) for n in orders]


def maps_section() -> Section:
    """f(x) = 3.5 x (1 - x) iterated, with its bifurcation diagram; r = 4 for the ln 2 check."""
    logistic = map_report("logistic", LOGISTIC_R, orders=ORDERS, bifurcation_range=(2.5, 4.0))
    turning, full = turning_points(LOGISTIC_R), turning_points(4.0)
    period = logistic.attractor.period if logistic.attractor is not None else 0
    chaos = lyapunov_exponent(get_map("logistic", 4.0), [0.1, 0.2, 0.3, 0.4], steps=20_000)
    grows = all(b > a for a, b in itertools.pairwise(turning))
    agree = grows and turning[0] == 1
    measured = para(
        f"The iterates f^n of f(x) = {LOGISTIC_R:g} x (1 - x) for n = "
        f"{', '.join(map(str, ORDERS))} have {', '.join(map(str, turning))} turning points on "
        "[0, 1] (counted on 200,001 points; at r = 4, where every composition folds the whole "
        f"interval again, {', '.join(map(str, full))}, that is 2^n - 1). From x_0 = 0.2 the "
        f"orbit {esc(logistic.fate)}; its Lyapunov exponent, the mean of log |f'(x_t)|, is "
        f"{num(logistic.lyapunov.value, 4)} nats per step, so dx_n/dx_0 vanishes along it. At "
        f"r = 4 the map is chaotic: gradtrace measures {num(chaos.value, 4)} "
        f"(&plusmn; {num(chaos.stderr, 2)}) against ln 2 = {num(math.log(2), 4)}, a derivative "
        "that doubles per step on average: the one-dimensional exploding gradient."
    )
    return Section(
        id="iterated-maps",
        title="Iterated maps and phase plots",
        lecture="lecture 003, iterated functions",
        claim=para(
            "An RNN iterates a function, h_t = f(h_(t-1), x_t), and iterated functions are "
            "complicated: f(x) = 3.5 x (1 - x) composed with itself 2, 3 and 6 times wiggles "
            "more each time; a phase plot (cobweb) shows where iterations go."
        ),
        measured=measured,
        agree=agree,
        verdict=(
            f"the turning points grow as {', '.join(map(str, turning))}; the orbit settles on a "
            f"{period}-cycle with a negative Lyapunov exponent."
            if agree
            else "the iterates do not become more complicated as the lecture says."
        ),
        figures=(
            record_figure(
                logistic,
                "Cobweb, phase plot and bifurcation diagram of the logistic "
                "map (top) above its iterates f, f^2, f^3, f^6.",
                "logistic map",
            ),
        ),
        numbers={
            "turning_points": turning,
            "turning_points_r4": full,
            "orders": list(ORDERS),
            "period": period,
            "lyapunov": logistic.lyapunov.value,
            "lyapunov_r4": chaos.value,
            "lyapunov_r4_stderr": chaos.stderr,
        },
        records={"logistic": logistic},
    )


def _lecture_kind(slope: float) -> str:
    """The lecture's rule as stated: f' > 1 a source, f' < 1 a sink."""
    return "source" if slope > 1 else "sink"


def _escapes(report: MapReport, x_star: float, nudge: float = 1e-6) -> bool:
    """Whether an orbit started `nudge` from x_star, towards the middle of the map's window
    (where orbits stay bounded), moves away from it: a source's neighbours do."""
    m = get_map(report.name, report.param)
    middle = sum(m.window) / 2
    start = x_star + (nudge if middle >= x_star else -nudge)
    path = orbit(m, start, 60)
    return bool((path - x_star).abs().max() > 1e3 * nudge)


def fixed_points_section() -> Section:
    """Fixed points of x^2 + 0.15 and 3.5 x (1 - x), classified by the library and the lecture's
    rule; the rule needs |f'|."""
    quadratic = map_report("quadratic", QUADRATIC_C, x0=0.5)
    logistic = map_report("logistic", LOGISTIC_R)
    rows, points, rule_right = [], [], True
    for report in (quadratic, logistic):
        for cycle in report.fixed_points:
            x_star, slope = cycle.points[0], cycle.multiplier
            lecture = _lecture_kind(slope)
            leaves = _escapes(report, x_star)
            rule_right &= lecture == cycle.kind
            points.append(
                {
                    "map": report.formula,
                    "x": x_star,
                    "slope": slope,
                    "kind": cycle.kind,
                    "lecture_kind": lecture,
                    "leaves": leaves,
                }
            )
            rows.append(
                (
                    esc(report.formula),
                    num(x_star, 6),
                    num(slope, 4),
                    esc(cycle.kind),
                    esc(lecture),
                    "yes" if leaves else "no",
                )
            )
    measured = para(
        "gradtrace's fixed-point finder on each map's window, each point classified by its "
        "multiplier |f'(x*)| and checked by starting an orbit 1e-6 away from it."
    ) + table(
        ("f(x)", "x*", "f'(x*)", "gradtrace: kind", "lecture's rule f' > 1", "nearby orbit leaves"),
        rows,
    )
    measured += para(
        f"From x_0 = 0.5 the orbit of x^2 + {QUADRATIC_C:g} {esc(quadratic.fate)}. For the "
        "logistic map the interior fixed point has f' = -1.5: below 1, so the stated rule calls "
        "it a sink, yet nearby orbits oscillate away from it. What decides is |f'|."
    )
    return Section(
        id="fixed-points",
        title="Fixed points as sinks and sources",
        lecture="lecture 003, iterated functions (the phase plot of x^2 + 0.15)",
        claim=para(
            "Fixed points are where f crosses the line x_(t+1) = x_t; those with f'(x*) &gt; 1 are "
            "sources and those with f'(x*) &lt; 1 are sinks."
        ),
        measured=measured,
        agree=rule_right,
        verdict=(
            "the stated rule classifies every fixed point as the library does."
            if rule_right
            else "the rule holds for x^2 + 0.15 but calls 3.5x(1-x)'s point with f' = -1.5 a "
            "sink; it is a source: the criterion is |f'| < 1."
        ),
        figures=(
            record_figure(
                quadratic,
                "x^2 + 0.15: cobweb from x_0 = 0.5 and phase plot, with its sink and source.",
                "quadratic map",
            ),
        ),
        numbers={"points": points},
        records={"quadratic": quadratic, "logistic": logistic},
    )
