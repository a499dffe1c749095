"""The sigmoid stops (lectures 000 section 1.3 and 004): the bound gamma = 1/4, the argument
the derivative helper must be given, and the decay 0.25^n.

Every number comes from `gradtrace.core.activations`, `gradtrace.core.closed_forms` and
torch.autograd; the lecture's printed values appear only as quotes set beside them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gradtrace.core.activations import get_activation
from gradtrace.core.closed_forms import repeated_derivative
from gradtrace.plots.figure import plt
from gradtrace.tour.embed import figure
from gradtrace.tour.page import Figure, Section, esc, num, para, table

SIGMOID = get_activation("sigmoid")
TANGENTS = (-2.0, 0.0, 2.0)  # where the tangent lines are drawn and checked against autograd
# Lecture 004's printed extremes over 100 points on [-5, 5], to three decimals.
QUOTED_EXTREMES = {
    "max sigmoid": 0.993,
    "min sigmoid": 0.007,
    "max gradient": 0.250,
    "min gradient": 0.007,
}
# Lecture 004's printed loop: sigmoid'(0) multiplied 1..6 times.
QUOTED_DECAY = (0.25, 0.0625, 0.015625, 0.00390625, 0.0009765625, 0.000244140625)


def autograd_slope(x: Tensor) -> Tensor:
    """d sigmoid / dx at every entry of x, by torch.autograd (float64)."""
    leaf = x.detach().to(torch.float64).clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(torch.sigmoid(leaf).sum(), leaf)
    return grad


def lecture_helper(value: Tensor) -> Tensor:
    """Lecture 004's derivative helper, transcribed: it returns value * (1 - value), which is
    sigmoid'(x) only when `value` is sigmoid(x)."""
    return value * (1 - value)


def sigmoid_section() -> Section:
    """sigma and its derivative: the largest slope is 1/4, at x = 0."""
    x = torch.arange(-6000, 6001, dtype=torch.float64) / 1000  # step 0.001, 0 exactly
    slope = SIGMOID.derivative(x)
    peak = int(torch.argmax(slope))
    tangents = torch.tensor(TANGENTS, dtype=torch.float64)
    by_autograd = autograd_slope(tangents)
    by_formula = SIGMOID.derivative(tangents)
    grid = torch.linspace(-5.0, 5.0, 100, dtype=torch.float64)  # lecture 004's data
    s, g = SIGMOID.fn(grid), SIGMOID.derivative(grid)
    extremes = {
        "max sigmoid": float(s.max()),
        "min sigmoid": float(s.min()),
        "max gradient": float(g.max()),
        "min gradient": float(g.min()),
    }
    matches = {k: round(v, 3) == QUOTED_EXTREMES[k] for k, v in extremes.items()}
    max_slope, at = float(slope[peak]), float(x[peak])
    agree = abs(max_slope - 0.25) < 1e-15 and at == 0.0 and all(matches.values())
    rows = [
        (esc(k), num(QUOTED_EXTREMES[k], 3), num(v, 6), "yes" if matches[k] else "no")
        for k, v in extremes.items()
    ]
    measured = para(
        f"On a grid of step 0.001 over [-6, 6] the largest sigma'(x) is {num(max_slope, 6)} at "
        f"x = {num(at)}; gradtrace's gamma for the sigmoid is {num(SIGMOID.gamma)}. The tangent "
        "slopes at x = -2, 0, 2 by the formula s(1 - s) and by torch.autograd differ by at most "
        f"{num(float((by_autograd - by_formula).abs().max()), 2)} (float64)."
    ) + table(
        ("on 100 points of [-5, 5]", "the lecture prints", "gradtrace", "same to 3 decimals"),
        rows,
    )
    return Section(
        id="sigmoid",
        title="The sigmoid, its derivative and its tangent",
        lecture="lecture 000, section 1.3 (the interactive tangent) and lecture 004",
        claim=para(
            "The logistic sigmoid squashes its input into (0, 1) and its derivative "
            "sigma'(x) = sigma(x)(1 - sigma(x)) never exceeds 1/4, reached at x = 0; the tangent "
            "at any point has that slope. So a sigmoid can only shrink a gradient, by at least a "
            "factor four per pass."
        ),
        measured=measured,
        agree=agree,
        verdict=(
            f"the largest slope is {num(max_slope)} at x = {num(at)}, and every extreme the "
            "lecture prints is reproduced to its three decimals."
            if agree
            else "the slope or an extreme differs from what the lecture prints."
        ),
        figures=(_sigmoid_figure(x, tangents),),
        numbers={
            "max_slope": max_slope,
            "argmax": at,
            "gamma": SIGMOID.gamma,
            "tangent_x": tangents,
            "tangent_slope": by_formula,
            "tangent_slope_autograd": by_autograd,
            "extremes": extremes,
            "quoted_extremes": QUOTED_EXTREMES,
        },
    )


def _sigmoid_figure(x: Tensor, tangents: Tensor) -> Figure:
    fig, (left, mid, right) = plt.subplots(1, 3, figsize=(13.0, 3.8))
    s = SIGMOID.fn(x)
    left.plot(x, s, color="black", lw=1.8, label="sigmoid(x)")
    for x0 in tangents.tolist():
        y0, k = float(SIGMOID.fn(torch.tensor(x0))), float(SIGMOID.derivative(torch.tensor(x0)))
        span = torch.linspace(x0 - 2.5, x0 + 2.5, 2, dtype=torch.float64)
        left.plot(span, y0 + k * (span - x0), "--", lw=1.2, label=f"tangent at {x0:g}: {k:.4f}")
        left.plot([x0], [y0], "o", color="tab:orange")
    left.set(xlabel="x", ylabel="sigmoid(x)", title="Sigmoid and tangents", ylim=(-0.3, 1.3))
    mid.plot(x, SIGMOID.derivative(x), color="tab:blue", lw=1.8, label="sigmoid'(x)")
    mid.axhline(0.25, color="tab:red", ls=":", label="gamma = 1/4")
    mid.set(xlabel="x", ylabel="sigmoid'(x)", title="Derivative: at most 1/4")
    right.plot(x, x, color="grey", lw=1, label="x")
    right.plot(x, s, color="black", lw=1.5, label="sigmoid(x)")
    right.plot(x, SIGMOID.derivative(x), color="tab:blue", lw=1.5, label="sigmoid'(x)")
    right.set(xlabel="x", ylabel="value", title="The ranges shrink: 12, 1, 1/4", ylim=(-6, 6))
    for ax in (left, mid, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    return figure(
        fig,
        "Left: the sigmoid with tangents whose slopes are gradtrace's sigma'. Middle: the "
        "derivative and its bound gamma = 1/4. Right: the three ranges on one axis.",
        "sigmoid, its tangents and its derivative",
    )


def helper_section() -> Section:
    """Lecture 004's helper s(1 - s) given sigmoid(x) (right) and given x (wrong)."""
    x = torch.linspace(-5.0, 5.0, 1001, dtype=torch.float64)
    truth = autograd_slope(x)
    right = lecture_helper(SIGMOID.fn(x))  # what the lecture passes: the activations
    wrong = lecture_helper(x)  # the slip the helper's name invites
    err_right = float((right - truth).abs().max())
    err_wrong = float((wrong - truth).abs().max())
    agree = err_right < 1e-15
    measured = para(
        f"Over 1001 points of [-5, 5], against torch.autograd: given sigmoid(x) the helper is off "
        f"by at most {num(err_right, 2)}; given x it is off by up to {num(err_wrong)} and is "
        f"negative for |x| &gt; 1 (at x = -5 it returns {num(float(wrong[0]))}, while the true "
        f"slope is {num(float(truth[0]))})."
    ) + table(
        ("call", "largest error against autograd", "range of values"),
        [
            (
                "<code>sigmoid_gradient(sigmoid(x))</code> (right)",
                num(err_right, 2),
                f"[{num(float(right.min()))}, {num(float(right.max()))}]",
            ),
            (
                "<code>sigmoid_gradient(x)</code> (wrong)",
                num(err_wrong),
                f"[{num(float(wrong.min()))}, {num(float(wrong.max()))}]",
            ),
        ],
    )
    fig, ax = plt.subplots(figsize=(7.0, 3.8))
    ax.plot(x, truth, color="black", lw=3, alpha=0.35, label="sigmoid'(x), torch.autograd")
    ax.plot(x, right, color="tab:green", lw=1.4, label="helper(sigmoid(x)): right")
    ax.plot(x, wrong, color="tab:red", lw=1.4, ls="--", label="helper(x): wrong")
    ax.set(xlabel="x", ylabel="value", ylim=(-1.0, 0.5), title="s(1 - s) needs s = sigmoid(x)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return Section(
        id="sigmoid-gradient",
        title="Which argument the derivative helper takes",
        lecture="lecture 004 (and lecture 000, whose helper of the same name takes x itself)",
        claim=para(
            "Lecture 004 writes the sigmoid's derivative as a helper returning v(1 - v) and "
            "calls it on the activations sigmoid(x). That is right only because of the "
            "argument: the same formula applied to x is not a derivative at all. (Lecture 000's "
            "helper of the same name takes x and applies the sigmoid inside.)"
        ),
        measured=measured,
        agree=agree,
        verdict=(
            "right is sigmoid_gradient(sigmoid(x)), as the lecture calls it: it equals autograd "
            f"to {num(err_right, 2)}; sigmoid_gradient(x) is wrong by up to {num(err_wrong)}."
        ),
        figures=(
            figure(
                fig,
                "The helper given the activations follows autograd; given x it is a parabola.",
                "derivative helper, right and wrong argument",
            ),
        ),
        numbers={
            "error_given_sigmoid": err_right,
            "error_given_x": err_wrong,
            "helper_at_minus5_given_x": float(wrong[0]),
        },
    )


def chain_slope(depth: int) -> float:
    """d/dx of sigmoid applied `depth` times, at x = 0, by torch.autograd: what backprop
    through a chain of sigmoids gives, each factor sigma'(z_i) <= 1/4."""
    leaf = torch.zeros((), dtype=torch.float64, requires_grad=True)
    y = leaf
    for _ in range(depth):
        y = torch.sigmoid(y)
    (grad,) = torch.autograd.grad(y, leaf)
    return float(grad)


def decay_section() -> Section:
    """0.25^n: the best a sigmoid can do, n times over."""
    n = torch.arange(1, 21)
    best = torch.stack([repeated_derivative(0.0, int(k)) for k in n])  # sigma'(0)^n
    chain = torch.tensor([chain_slope(int(k)) for k in n], dtype=torch.float64)
    quoted = torch.tensor(QUOTED_DECAY, dtype=torch.float64)
    exact = bool((best[: len(QUOTED_DECAY)] == quoted).all())
    closed = bool((best == 0.25 ** n.to(torch.float64)).all())
    below = bool((chain <= best * (1 + 1e-12)).all())
    agree = exact and closed and below
    rows = [
        (str(int(k)), num(q, 12), num(float(b), 12), num(float(c), 6))
        for k, q, b, c in zip(n[:6], quoted, best[:6], chain[:6], strict=True)
    ]
    measured = para(
        "gradtrace's <code>repeated_derivative(0, n)</code> (sigma'(0)^n) equals 0.25^n exactly "
        "for every n up to 20. Back-propagating through n sigmoids applied one after another "
        "(autograd at x = 0) is smaller still, because only the first sees x = 0: after 20 "
        f"of them the slope is {num(float(chain[-1]), 3)} against 0.25^20 = "
        f"{num(float(best[-1]), 3)}."
    ) + table(("n", "the lecture prints", "gradtrace 0.25^n", "autograd, n sigmoids"), rows)
    fig, ax = plt.subplots(figsize=(7.0, 3.8))
    ax.semilogy(n, best, "o-", ms=3, label="sigma'(0)^n = 0.25^n (best case)")
    ax.semilogy(n, chain, "s-", ms=3, label="d sigmoid^n(x)/dx at 0, autograd")
    ax.semilogy(n[: len(QUOTED_DECAY)], quoted, "x", color="black", ms=8, label="lecture's loop")
    ax.set(xlabel="n (sigmoids passed)", ylabel="gradient factor (log scale)")
    ax.set_title("Multiplying by at most 1/4, n times")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return Section(
        id="decay",
        title="The decay 0.25^n",
        lecture="lecture 004, the numerical impact",
        claim=para(
            "A gradient multiplied by the sigmoid's best slope, 1/4, n times shrinks as 0.25^n: "
            "0.25, 0.0625, ..., 0.000244 after six steps. The lecture stresses that this is the "
            "most favourable case and not a backward pass."
        ),
        measured=measured,
        agree=agree,
        verdict=(
            "the six printed values are 0.25^n to the last digit, and a real chain of sigmoids "
            "decays faster than this best case."
            if agree
            else "a printed value differs from 0.25^n, or a chain beat the bound."
        ),
        figures=(
            figure(
                fig,
                "0.25^n against the slope of a chain of n sigmoids (log axis).",
                "decay of 0.25 to the n",
            ),
        ),
        numbers={"n": n, "best": best, "chain": chain, "quoted": quoted},
    )
