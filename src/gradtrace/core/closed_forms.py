"""Closed forms for the one-unit RNN and for a repeatedly applied derivative.

A one-unit RNN runs h_t = phi(z_t) with z_t = w h_{t-1} + u x_t + b for t = 2..T, starting
from h_1. Each transition contributes dh_t/dh_{t-1} = w phi'(z_t), so by the chain rule

    dh_T/dh_1 = w^(T-1) * phi'(z_2) * phi'(z_3) * ... * phi'(z_T),

a product of T - 1 factors (empty, so 1, when T = 1). With phi linear it is w^(T-1): 1.1^49 =
106.7 explodes and 0.9^49 = 0.00573 vanishes over T = 50 steps. (w^50 is one factor too many:
50 states are joined by 49 transitions.)

The multivariate product of Jacobians behaves the same way, with w replaced by the recurrent
matrix and the exponent's growth rate by the top Lyapunov exponent (`gradtrace.core.lyapunov`).

A gradient passed n times through the same derivative shrinks like phi'(x)^n; for the logistic
sigmoid phi'(0) = 1/4 is the largest value it takes, so even the best case decays as 0.25^n.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from gradtrace.core.activations import get_activation
from gradtrace.errors import check, described


def univariate_gradient(
    w: float,
    steps: int,
    activation: str = "linear",
    preactivations: Tensor | None = None,
) -> float:
    """dh_T/dh_1 of a one-unit RNN h_t = phi(w h_{t-1} + u x_t + b), t = 2..T.

    Args:
        w: the recurrent weight.
        steps: T, the number of states h_1..h_T; the product runs over the T - 1 transitions.
        activation: phi, a name from `gradtrace.core.activations.ACTIVATIONS`.
        preactivations: z_2..z_T, shape (T - 1,), where phi' is evaluated. Needed for every
            activation but "linear", whose derivative is 1 everywhere.

    Returns:
        w^(T-1) * prod_{t=2..T} phi'(z_t), computed in float64: it is +-inf or 0 once the true
        value leaves float64's range (|w| = 1.1 past about 7450 steps); use
        `log10_univariate_gradient` there.

    Raises:
        GradtraceError: if an argument is out of range (see `log10_univariate_gradient`).

    Example:
        >>> round(univariate_gradient(1.1, 50), 2)  # 1.1**49
        106.72
    """
    derivatives = _transition_derivatives(w, steps, activation, preactivations)  # (T-1,)
    w64 = torch.tensor(w, dtype=torch.float64)
    return float(w64 ** (steps - 1) * derivatives.prod())


def log10_univariate_gradient(
    w: float,
    steps: int,
    activation: str = "linear",
    preactivations: Tensor | None = None,
) -> float:
    """log10 |dh_T/dh_1| of the one-unit RNN, for T far beyond float64's range.

    Sums (T - 1) log10 |w| + sum_t log10 |phi'(z_t)| instead of multiplying, so T = 100000
    with w = 1.1 gives 4139.2 rather than inf. The sign of the gradient is not kept.

    Args:
        w: the recurrent weight.
        steps: T >= 1, the number of states; the sum runs over the T - 1 transitions.
        activation: phi, a name from `gradtrace.core.activations.ACTIVATIONS`.
        preactivations: z_2..z_T, shape (T - 1,); needed unless `activation` is "linear".

    Returns:
        log10 |w^(T-1) prod_{t=2..T} phi'(z_t)|; -inf if a factor is exactly 0.

    Raises:
        GradtraceError: if `w` is not finite, `steps` is not an integer >= 1, `activation` is
            unknown, or `preactivations` is missing, not finite or not of length T - 1.
    """
    derivatives = _transition_derivatives(w, steps, activation, preactivations)  # (T-1,)
    log_w = math.log10(abs(w)) if w != 0 else -math.inf
    # 0 * -inf is nan: with no transitions (T = 1) the gradient is 1 whatever w is.
    w_term = (steps - 1) * log_w if steps > 1 else 0.0
    return w_term + float(derivatives.abs().log10().sum())


def repeated_derivative(x: float | Tensor, n: int, activation: str = "sigmoid") -> Tensor:
    """phi'(x)^n: a gradient multiplied by the same derivative n times.

    phi' is evaluated at the pre-activation x. (A sigmoid derivative written as s(1 - s) must
    be given s = sigmoid(x), not x; passing x is a common slip that this function avoids by
    taking x itself.)

    Args:
        x: pre-activation(s), a float or a tensor of any shape.
        n: the number of multiplications, n >= 0 (n = 0 gives 1).
        activation: phi, a name from `gradtrace.core.activations.ACTIVATIONS`.

    Returns:
        phi'(x)^n with the shape of x; float64 unless x is a floating tensor.

    Raises:
        GradtraceError: if `n` is not an integer >= 0, `x` is not finite, or `activation` is
            unknown.

    Example:
        >>> repeated_derivative(0.0, 6)  # sigmoid'(0) = 1/4, six times
        tensor(0.0002, dtype=torch.float64)
    """
    phi = get_activation(activation)
    check(_is_int(n) and n >= 0, f"`n` must be an integer >= 0, got {n!r}")
    if isinstance(x, Tensor):
        x_t = x if x.is_floating_point() else x.to(torch.float64)
    else:
        check(_is_number(x), f"`x` must be a float or a tensor, got {type(x).__name__}")
        x_t = torch.tensor(float(x), dtype=torch.float64)
    check(bool(torch.isfinite(x_t).all()), "`x` must be finite, got NaN or inf")
    return phi.derivative(x_t) ** n


def _transition_derivatives(
    w: float, steps: int, activation: str, preactivations: Tensor | None
) -> Tensor:
    """Validate the one-unit RNN arguments; return phi'(z_2..z_T) in float64, shape (T-1,)."""
    phi = get_activation(activation)
    check(_is_number(w) and math.isfinite(w), f"`w` must be a finite number, got {w!r}")
    check(_is_int(steps) and steps >= 1, f"`steps` must be an integer >= 1, got {steps!r}")
    if preactivations is None:
        check(
            activation == "linear",
            f"`preactivations` must be given for activation {activation!r}, got None",
        )
        return torch.ones(steps - 1, dtype=torch.float64)
    check(
        isinstance(preactivations, Tensor) and tuple(preactivations.shape) == (steps - 1,),
        f"`preactivations` must have shape ({steps - 1},), one z_t per transition for "
        f"steps = {steps}, got {described(preactivations)}",
    )
    z = preactivations.to(torch.float64)
    check(bool(torch.isfinite(z).all()), "`preactivations` must be finite, got NaN or inf")
    return phi.derivative(z)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
