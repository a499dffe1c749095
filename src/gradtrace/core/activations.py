"""Activation functions with their derivatives and the bound gamma = sup |phi'(a)|.

The bound is what the vanishing-gradient argument multiplies with the recurrent weight norm:
every step Jacobian diag(phi'(a)) W_hh has spectral norm at most gamma * sigma_max(W_hh).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from gradtrace.errors import GradtraceError

LEAKY_SLOPE = 0.01  # torch.nn.functional.leaky_relu's default negative slope


@dataclass(frozen=True)
class Activation:
    """An elementwise nonlinearity phi, its derivative phi' and gamma = sup_a |phi'(a)|."""

    name: str
    fn: Callable[[Tensor], Tensor]
    derivative: Callable[[Tensor], Tensor]
    gamma: float


def _sigmoid_derivative(a: Tensor) -> Tensor:
    s = torch.sigmoid(a)
    return s * (1 - s)


def _tanh_derivative(a: Tensor) -> Tensor:
    return 1 - torch.tanh(a) ** 2


def _relu_derivative(a: Tensor) -> Tensor:
    # The subgradient at 0 is taken as 0, as torch.autograd does for relu.
    return (a > 0).to(a.dtype)


def _leaky_relu_derivative(a: Tensor) -> Tensor:
    return torch.where(a > 0, torch.ones_like(a), torch.full_like(a, LEAKY_SLOPE))


def _leaky_relu(a: Tensor) -> Tensor:
    return torch.nn.functional.leaky_relu(a, LEAKY_SLOPE)


ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": Activation("sigmoid", torch.sigmoid, _sigmoid_derivative, 0.25),
    "tanh": Activation("tanh", torch.tanh, _tanh_derivative, 1.0),
    "relu": Activation("relu", torch.relu, _relu_derivative, 1.0),
    "linear": Activation("linear", lambda a: a, torch.ones_like, 1.0),
    "leaky_relu": Activation("leaky_relu", _leaky_relu, _leaky_relu_derivative, 1.0),
}


def get_activation(name: str) -> Activation:
    """Look up an activation by name.

    Raises:
        GradtraceError: if `name` is not one of `ACTIVATIONS`.
    """
    if name not in ACTIVATIONS:
        raise GradtraceError(f"`activation` must be one of {', '.join(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]
