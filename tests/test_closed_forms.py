"""The one-unit RNN gradient and the repeated derivative against powers and autograd."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from gradtrace.core.closed_forms import (
    log10_univariate_gradient,
    repeated_derivative,
    univariate_gradient,
)
from gradtrace.errors import GradtraceError

DTYPE = torch.float64


@pytest.mark.parametrize(
    ("w", "expected", "abs_tol", "rel_tol"),
    [
        # 50 states, 49 transitions: 1.1**49 and 0.9**49, not the lecture's 1.1**50 = 117.4
        # and 0.9**50 = 0.00515.
        pytest.param(1.1, 106.72, 0.005, None, id="exploding-1.1"),
        pytest.param(0.9, 0.00573, None, 1e-3, id="vanishing-0.9"),
    ],
)
def test_linear_gradient_over_50_steps(
    w: float, expected: float, abs_tol: float | None, rel_tol: float | None
) -> None:
    assert univariate_gradient(w, 50) == pytest.approx(expected, abs=abs_tol, rel=rel_tol)
    assert univariate_gradient(w, 50) == pytest.approx(w**49, rel=1e-14)


def test_single_state_has_unit_gradient() -> None:
    assert univariate_gradient(0.0, 1) == 1.0
    assert log10_univariate_gradient(0.0, 1) == 0.0


def _unrolled_rnn(activation: str, w: float, T: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Run h_t = phi(w h_{t-1} + u x_t + b), t = 2..T; return h_1 (a leaf), h_T and z_2..z_T."""
    gen = torch.Generator().manual_seed(seed)
    phi = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "linear": lambda a: a}[activation]
    u, b = 0.7, 0.1
    x = torch.randn(T, generator=gen, dtype=DTYPE)
    h_1 = torch.tensor(0.3, dtype=DTYPE, requires_grad=True)
    h, zs = h_1, []
    for t in range(1, T):
        z = w * h + u * x[t] + b
        zs.append(z.detach())
        h = phi(z)
    return h_1, h, torch.stack(zs)


@pytest.mark.parametrize(
    ("activation", "w"),
    [
        pytest.param("tanh", 1.3, id="tanh"),
        pytest.param("sigmoid", 3.0, id="sigmoid"),
        pytest.param("linear", -0.95, id="linear-negative-w"),
    ],
)
def test_univariate_gradient_equals_autograd(activation: str, w: float) -> None:
    T = 30
    h_1, h_T, z = _unrolled_rnn(activation, w, T, seed=0)
    (reference,) = torch.autograd.grad(h_T, h_1)
    assert univariate_gradient(w, T, activation, z) == pytest.approx(reference.item(), abs=1e-12)
    assert log10_univariate_gradient(w, T, activation, z) == pytest.approx(
        math.log10(abs(reference.item())), abs=1e-12
    )


def test_log10_gradient_survives_100000_steps() -> None:
    T = 100_000
    value = log10_univariate_gradient(1.1, T)
    assert math.isfinite(value)
    assert value == pytest.approx((T - 1) * math.log10(1.1), rel=1e-12)
    assert univariate_gradient(1.1, T) == math.inf  # the plain product overflows float64


def test_sigmoid_derivative_at_zero_six_times_is_quarter_to_the_sixth() -> None:
    # sigmoid(0) = 1/2 and 1/4 are exact in binary, so the result is exactly 0.25**6.
    assert repeated_derivative(0.0, 6).item() == 0.000244140625
    assert repeated_derivative(0.0, 6).item() == 0.25**6


def test_repeated_derivative_uses_the_preactivation() -> None:
    # Regression for the lecture's sigmoid_gradient(x) = x (1 - x), which is only right when
    # handed sigmoid(x): at x = 2 it would give 2 * (1 - 2) = -2.
    x = torch.tensor([-2.0, 0.0, 2.0], dtype=DTYPE)
    s = torch.sigmoid(x)
    torch.testing.assert_close(repeated_derivative(x, 3), (s * (1 - s)) ** 3, atol=0, rtol=1e-15)
    torch.testing.assert_close(
        repeated_derivative(x, 2, "tanh"), (1 - torch.tanh(x) ** 2) ** 2, atol=0, rtol=1e-15
    )


BAD_UNIVARIATE = [
    pytest.param({"w": 1.1, "steps": 0}, "`steps` must be an integer >= 1", id="steps-zero"),
    pytest.param({"w": 1.1, "steps": 2.5}, "`steps` must be an integer >= 1", id="steps-float"),
    pytest.param({"w": math.nan, "steps": 5}, "`w` must be a finite number", id="w-nan"),
    pytest.param(
        {"w": 1.1, "steps": 5, "activation": "tanh"}, "`preactivations` must be given", id="no-z"
    ),
    pytest.param(
        {"w": 1.1, "steps": 5, "activation": "tanh", "preactivations": torch.zeros(5)},
        r"`preactivations` must have shape \(4,\)",
        id="z-length",
    ),
    pytest.param(
        {"w": 1.1, "steps": 3, "activation": "tanh", "preactivations": torch.tensor([0, math.inf])},
        "`preactivations` must be finite",
        id="z-inf",
    ),
    pytest.param({"w": 1.1, "steps": 5, "activation": "cosh"}, "`activation` must be", id="act"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_UNIVARIATE)
@pytest.mark.parametrize("function", [univariate_gradient, log10_univariate_gradient])
def test_bad_univariate_input_raises(
    function: Callable[..., float], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(GradtraceError, match=message):
        function(**kwargs)


@pytest.mark.parametrize(
    ("x", "n", "message"),
    [
        pytest.param(0.0, -1, "`n` must be an integer >= 0", id="n-negative"),
        pytest.param(0.0, 1.5, "`n` must be an integer >= 0", id="n-float"),
        pytest.param(math.nan, 2, "`x` must be finite", id="x-nan"),
        pytest.param("0", 2, "`x` must be a float or a tensor", id="x-string"),
    ],
)
def test_bad_repeated_derivative_input_raises(x: object, n: object, message: str) -> None:
    with pytest.raises(GradtraceError, match=message):
        repeated_derivative(x, n)  # type: ignore[arg-type]
