"""The activation panel: phi, phi' and the tangent at x0, and the repeated product phi'(x0)^n.

A gradient that passes n times through the same derivative is multiplied by phi'(x0)^n; for
the sigmoid phi'(0) = 1/4 is the largest value phi' takes, so even the best case decays as
0.25^n (`gradtrace.core.closed_forms`). The panel evaluates the library's own phi and phi'
(`gradtrace.core.activations`) on a grid, in float64.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from gradtrace.core.activations import ACTIVATIONS, get_activation
from gradtrace.explorer.jsonable import floats, number
from gradtrace.explorer.params import Param, choice, integer, real

GRID_POINTS = 481
SPAN = 6.0  # the grid covers [-SPAN, SPAN]

PARAMS: tuple[Param, ...] = (
    choice("activation", "sigmoid", ACTIVATIONS, "activation phi"),
    real("x", 0.0, -SPAN, SPAN, 0.05, "point x0"),
    integer("n", 20, 1, 500, "factors n in phi'(x0)^n"),
)


def activation_panel(*, activation: str, x: float, n: int) -> dict[str, Any]:
    """phi and phi' on [-6, 6], the tangent at x0 = `x`, and log10 |phi'(x0)|^m for m = 0..n.

    Returns:
        A JSON-able dict: "grid", "phi", "dphi", "tangent" (phi(x0) + phi'(x0)(x - x0) on the
        grid), "phi_x0", "dphi_x0", "gamma", "powers" (m = 0..n) and "log10_power"
        (log10 |phi'(x0)|^m, -Infinity once a factor is 0), "power_n" (phi'(x0)^n itself,
        which underflows to 0 long before its log does) and "log10_power_n".
    """
    act = get_activation(activation)
    grid = torch.linspace(-SPAN, SPAN, GRID_POINTS, dtype=torch.float64)
    x0 = torch.tensor(x, dtype=torch.float64)
    phi0, dphi0 = float(act.fn(x0)), float(act.derivative(x0))
    powers = torch.arange(n + 1, dtype=torch.float64)  # m = 0..n
    per_factor = math.log10(abs(dphi0)) if dphi0 != 0 else -math.inf
    # m = 0 is the empty product 1 even when a factor is 0 (0 * -inf would be NaN).
    log10_power = torch.where(powers == 0, 0.0, powers * per_factor)
    return {
        "activation": activation,
        "grid": floats(grid),
        "phi": floats(act.fn(grid)),
        "dphi": floats(act.derivative(grid)),
        "tangent": floats(phi0 + dphi0 * (grid - x)),
        "x0": x,
        "phi_x0": number(phi0),
        "dphi_x0": number(dphi0),
        "gamma": act.gamma,
        "n": n,
        "powers": list(range(n + 1)),
        "log10_power": floats(log10_power),
        "power_n": number(dphi0**n),
        "log10_power_n": number(float(log10_power[-1])),
    }
