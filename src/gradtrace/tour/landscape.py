"""Lecture 003, part two: the Mandelbrot set, attractors and their basins, and the gradient
cliff with clipping.
"""

from __future__ import annotations

import torch

from gradtrace.analysis.curve import analyse
from gradtrace.dynamics.cliff import cliff_report
from gradtrace.dynamics.mandelbrot import in_mandelbrot, mandelbrot_image
from gradtrace.dynamics.rnn_dynamics import rnn_portrait, small_rnn
from gradtrace.plots.figure import plt
from gradtrace.tour.embed import figure, record_figure
from gradtrace.tour.page import Section, esc, num, para, power, table

# Published estimate of the set's area (pixel counting; Förstemann 2012): 1.50659177.
MANDELBROT_AREA = 1.50659177
IMAGE_SIZE = (360, 288)
# c -> whether it is in the set, from closed forms: real c is in it exactly for -2 <= c <= 1/4,
# and c = i has the bounded orbit 0, i, -1 + i, -i, -1 + i, ...
MEMBERS = {
    0.0: True,
    -1.0: True,
    -2.0: True,
    0.25: True,
    0.15: True,
    0.26: False,
    1.0: False,
    1j: True,
    0.5j + 0.5: False,
}
BASIN_W, BASIN_B = [[1.5, 0.3], [0.3, 1.5]], [0.0, 0.0]
BASIN_STEPS = 30


def mandelbrot_section() -> Section:
    """Escape times of z <- z^2 + c; membership of points whose fate is known in closed form."""
    image = mandelbrot_image(size=IMAGE_SIZE)
    box = float((image.re[-1] - image.re[0]) * (image.im[-1] - image.im[0]))
    area = image.inside_fraction * box
    found = {str(c): in_mandelbrot(c) for c in MEMBERS}
    right = all(found[str(c)] == inside for c, inside in MEMBERS.items())
    relative = abs(area - MANDELBROT_AREA) / MANDELBROT_AREA
    agree = right and relative < 0.03
    rows = [
        (esc(str(c)), "in" if inside else "out", "in" if found[str(c)] else "out")
        for c, inside in MEMBERS.items()
    ]
    measured = para(
        f"An escape-time image of {IMAGE_SIZE[0]} x {IMAGE_SIZE[1]} parameters, "
        f"{image.max_iter} iterations each (an orbit is gone once |z| &gt; 2). The share of the "
        f"box inside gives an area of {num(area, 4)}, {num(100 * relative, 2)} % from the "
        f"published {MANDELBROT_AREA}. c = 0.15 is inside: it is the x^2 + 0.15 of the phase "
        "plot, whose orbit from 0 settles on the sink."
    ) + table(("c", "closed form", "gradtrace (1000 iterations)"), rows)
    return Section(
        id="mandelbrot",
        title="The Mandelbrot set",
        lecture="lecture 003, iterated functions (an aside)",
        claim=para(
            "The Mandelbrot set is the set of c for which the iterates of z_n = z_(n-1)^2 + c "
            "from z_0 = 0 stay bounded; its edge is where a small change of c flips bounded to "
            "escaping."
        ),
        measured=measured,
        agree=agree,
        verdict=(
            f"membership matches the closed forms at every test point and the area is within "
            f"{num(100 * relative, 2)} % of the published value."
            if agree
            else "a test point or the area disagrees with the known set."
        ),
        figures=(
            record_figure(
                image, "Escape time of z &lt;- z^2 + c; the set in black.", "Mandelbrot set"
            ),
        ),
        numbers={
            "area": area,
            "published_area": MANDELBROT_AREA,
            "members": found,
            "inside_fraction": image.inside_fraction,
        },
        records={"image": image},
    )


def boundary_line(points: int = 161) -> tuple[torch.Tensor, torch.Tensor]:
    """Starts h_0 = (0.3 + u, -0.3 + u), u in [-0.4, 0.4]: a segment across the boundary
    h_1 + h_2 = 0 between the two sinks' basins, crossing it at u = 0. Returns (u, h_0)."""
    u = torch.linspace(-0.4, 0.4, points, dtype=torch.float64)
    return u, torch.stack([u + 0.3, u - 0.3], dim=1)  # (N,), (N, 2)


def attractors_section() -> Section:
    """A 2-unit tanh RNN: sinks, saddles, basins; ||dh_T/dh_0|| inside a basin and across it."""
    weights = small_rnn(BASIN_W, BASIN_B)
    portrait = rnn_portrait(weights)
    kinds = [p.kind for p in portrait.fixed_points.points]
    u, starts = boundary_line()
    x = torch.zeros(BASIN_STEPS, starts.shape[0], 1, dtype=torch.float64)  # (T, N, I)
    flow = analyse(weights, x, starts)  # trajectory from each start
    c0 = flow.log10_norm[:, 0]  # (N,): log10 ||dh_T/dh_0||
    inside = c0[u.abs() >= 0.1]
    peak = float(c0.max())
    where = float(u[int(c0.argmax())])
    agree = peak > 0 and float(inside.max()) < -3
    rows = [
        (
            esc(p.kind),
            esc(", ".join(num(float(v), 4) for v in p.state)),
            esc(", ".join(num(abs(complex(e)), 3) for e in p.eigenvalues)),
        )
        for p in portrait.fixed_points.points
    ]
    measured = (
        para(
            "h_t = tanh(W h_(t-1)) with W = [[1.5, 0.3], [0.3, 1.5]]: gradtrace's fixed-point "
            f"finder gives {esc(', '.join(kinds))}. Two sinks share the plane; the line "
            "h_1 + h_2 = 0, through the source and the saddles, separates their basins."
        )
        + table(("kind", "h*", "|eigenvalues| of dF/dh"), rows)
        + para(
            f"||dh_T/dh_0|| after T = {BASIN_STEPS} steps (the engine, along each trajectory), for "
            "starts on a segment across that boundary: at most "
            f"{power(float(inside.max()))} for starts 0.1 or more from it, and {power(peak)} at "
            f"u = {num(where, 3)}, next to it. Inside a basin the orbit forgets where it began; on "
            "the boundary it lingers by a saddle whose unstable direction stretches every step."
        )
    )
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    ax.semilogy(u, 10**c0, color="tab:purple")
    ax.axvline(0.0, color="grey", ls=":", label="basin boundary h_1 + h_2 = 0")
    ax.set(xlabel="u (start h_0 = (0.3 + u, -0.3 + u))", ylabel="||dh_T/dh_0||_2 (log scale)")
    ax.set_title(f"Gradient across a basin boundary, T = {BASIN_STEPS}", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return Section(
        id="attractors",
        title="Attractors and basins",
        lecture="lecture 003, RNNs as dynamical systems",
        claim=para(
            "An RNN run with its input held fixed is a dynamical system with attractors. A "
            "start nudged within a basin ends on the same attractor, so the final state hardly "
            "depends on it and the gradient vanishes; a start on the border between two basins "
            "can be tipped into the other one, so there the gradient explodes."
        ),
        measured=measured,
        agree=agree,
        verdict=(
            "inside a basin ||dh_T/dh_0|| is at most "
            f"{power(float(inside.max()), markup=False)}; at the boundary it reaches "
            f"{power(peak, markup=False)}."
            if agree
            else "the gradient does not vanish inside the basins or grow at their boundary."
        ),
        figures=(
            record_figure(
                portrait,
                "Basins of the two sinks with the fixed points and a few trajectories.",
                "basins of attraction",
            ),
            figure(
                fig,
                "||dh_T/dh_0|| for starts along a segment crossing the boundary.",
                "gradient across the boundary",
            ),
        ),
        numbers={
            "kinds": kinds,
            "u": u,
            "log10_dhT_dh0": c0,
            "inside_max_log10": float(inside.max()),
            "peak_log10": peak,
            "peak_u": where,
        },
        records={"portrait": portrait, "boundary": flow},
    )


def cliff_section() -> Section:
    """The one-unit tanh RNN's loss against its bias, and descent with and without clipping."""
    report = cliff_report()
    sweep, plain, clipped = report.sweep, report.plain, report.clipped
    assert clipped.clip is not None  # cliff_report always runs the clipped descent
    i = int(sweep.grad.abs().argmax())
    cap = clipped.lr * clipped.clip
    longest_plain, longest_clipped = (
        float(plain.step_lengths.max()),
        float(clipped.step_lengths.max()),
    )
    agree = longest_clipped <= cap * (1 + 1e-12) and longest_plain > 10 * cap
    measured = para(
        f"h_t = tanh({report.model.w:g} h_(t-1) + b) over T = {report.model.steps} steps from "
        f"h_0 = {report.model.h0:g}, loss (h_T - {report.model.target:g})^2 / 2, the gradient "
        f"dL/db from the engine. |dL/db| peaks at {num(float(sweep.grad.abs().max()), 4)} at "
        f"b = {num(float(sweep.values[i]), 4)}, where h_T switches attractor: the cliff."
    ) + table(
        ("descent from b = 0.5, lr = 1", "longest step", "final b", "final loss"),
        [
            (
                "plain",
                num(longest_plain, 4),
                num(float(plain.params[-1]), 4),
                num(float(plain.losses[-1]), 4),
            ),
            (
                f"clipped, eta = {clipped.clip:g}",
                num(longest_clipped, 4),
                num(float(clipped.params[-1]), 4),
                num(float(clipped.losses[-1]), 4),
            ),
        ],
    )
    return Section(
        id="cliff",
        title="The gradient cliff, with and without clipping",
        lecture="lecture 003, cliffs and gradient clipping",
        claim=para(
            "Where a parameter moves the start across a basin boundary the loss has a cliff, "
            "its gradient is enormous and one step can fling the parameters far away. Clipping "
            "by norm, g &lt;- eta g / ||g|| when ||g|| &gt; eta, shortens such a gradient "
            "without turning it, so no update is longer than the learning rate times eta."
        ),
        measured=measured,
        agree=agree,
        verdict=(
            f"without clipping one step on the cliff moves b by {num(longest_plain, 3)}, onto a "
            f"plateau; with clipping no step exceeds lr eta = {num(cap, 3)}."
            if agree
            else "clipping does not bound the steps, or the plain descent never jumps."
        ),
        figures=(
            record_figure(
                report, "h_T, the loss and |dL/db| against b, and both descents.", "gradient cliff"
            ),
        ),
        numbers={
            "max_grad": float(sweep.grad.abs().max()),
            "max_grad_at": float(sweep.values[i]),
            "longest_plain": longest_plain,
            "longest_clipped": longest_clipped,
            "lr_times_eta": cap,
            "final_loss_plain": float(plain.losses[-1]),
            "final_loss_clipped": float(clipped.losses[-1]),
        },
        records={"cliff": report},
    )
