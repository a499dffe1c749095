"""Tests for gradtrace.core.activations: values, derivatives and gamma = sup |phi'|.

References: closed-form expressions written here (values, atol 1e-12), torch.autograd on the
activation itself (derivatives, atol 1e-12), and the maximum of |phi'| over a dense grid that
contains 0 (gamma, atol 1e-12; sigmoid'(0) = 1/2 * 1/2 = 1/4 exactly). Everything in float64.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from gradtrace.core.activations import ACTIVATIONS, LEAKY_SLOPE, get_activation
from gradtrace.errors import GradtraceError

DTYPE = torch.float64
ATOL = 1e-12

# name -> (closed-form value, gamma from the issue)
CLOSED_FORMS: dict[str, tuple[Callable[[Tensor], Tensor], float]] = {
    "sigmoid": (lambda a: 1 / (1 + torch.exp(-a)), 0.25),
    "tanh": (lambda a: (torch.exp(a) - torch.exp(-a)) / (torch.exp(a) + torch.exp(-a)), 1.0),
    "relu": (lambda a: torch.clamp(a, min=0), 1.0),
    "linear": (lambda a: a, 1.0),
    "leaky_relu": (lambda a: torch.where(a > 0, a, 0.01 * a), 1.0),
}


def grid() -> Tensor:
    """400,001 points on [-20, 20] plus 0 itself and its neighbours."""
    dense = torch.linspace(-20, 20, 400_001, dtype=DTYPE)
    return torch.cat([dense, torch.tensor([0.0, 1e-300, -1e-300], dtype=DTYPE)])


def test_registry_names_and_gammas() -> None:
    assert list(ACTIVATIONS) == list(CLOSED_FORMS)
    assert {name: act.gamma for name, act in ACTIVATIONS.items()} == {
        "sigmoid": 0.25,
        "tanh": 1.0,
        "relu": 1.0,
        "linear": 1.0,
        "leaky_relu": 1.0,
    }
    assert all(act.name == name for name, act in ACTIVATIONS.items())
    assert LEAKY_SLOPE == 0.01  # torch.nn.functional.leaky_relu's default


@pytest.mark.parametrize("name", list(CLOSED_FORMS))
def test_value_matches_closed_form(name: str) -> None:
    a = torch.linspace(-15, 15, 3001, dtype=DTYPE)  # exp(15) keeps the closed forms exact
    expected = CLOSED_FORMS[name][0](a)
    torch.testing.assert_close(get_activation(name).fn(a), expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", list(CLOSED_FORMS))
def test_derivative_matches_autograd(name: str) -> None:
    act = get_activation(name)
    a = grid().requires_grad_(True)
    # phi acts elementwise, so the gradient of sum(phi(a)) is phi'(a) entry by entry; at 0
    # torch takes the relu subgradient 0 and the leaky_relu slope 0.01, as the library does.
    (expected,) = torch.autograd.grad(act.fn(a).sum(), a)
    torch.testing.assert_close(act.derivative(a.detach()), expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", list(CLOSED_FORMS))
def test_gamma_is_the_sup_of_the_derivative(name: str) -> None:
    act = get_activation(name)
    slopes = act.derivative(grid()).abs()
    assert act.gamma == CLOSED_FORMS[name][1]
    # The grid contains the maximiser (0 for sigmoid and tanh, any a > 0 for the others).
    assert abs(float(slopes.max()) - act.gamma) <= ATOL
    assert bool((slopes <= act.gamma + ATOL).all())


def test_sigmoid_derivative_at_zero_is_exactly_a_quarter() -> None:
    assert float(get_activation("sigmoid").derivative(torch.zeros(1, dtype=DTYPE))) == 0.25


def test_unknown_activation_is_refused_by_name() -> None:
    with pytest.raises(GradtraceError, match=r"`activation` must be one of .*got 'softsign'"):
        get_activation("softsign")
