"""Run a cell along an input sequence and evaluate every step Jacobian on the trajectory.

For s_t = step(x_t, s_{t-1}) the chain rule gives ds_T/ds_k = J_T J_{T-1} ... J_{k+1} with
J_t = ds_t/ds_{t-1} evaluated at (x_t, s_{t-1}); this module returns the states and the J_t,
and the products are left to the core's Jacobian-product engine. Shapes: T time, B batch,
I input, S state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from gradtrace.cells._checks import check_finite, check_tensor
from gradtrace.errors import check

if TYPE_CHECKING:
    from gradtrace.cells import Cell


def run_trajectory(cell: Cell, weights: Any, x: Tensor, s0: Tensor) -> tuple[Tensor, Tensor]:
    """Run the recurrence from `s0` over `x` and evaluate each step Jacobian.

    Args:
        cell: The cell, e.g. `get_cell("lstm")`.
        weights: The cell's weights (`RNNWeights`, `LSTMWeights` or `GRUWeights`).
        x: Inputs x_1 ... x_T, shape (T, B, I), T >= 1.
        s0: Initial state s_0, shape (B, S).

    Returns:
        states: s_0 ... s_T, shape (T + 1, B, S).
        jacobians: J_1 ... J_T with J_t = ds_t/ds_{t-1} at (x_t, s_{t-1}), shape (T, B, S, S);
            each exact up to the dtype's rounding.

    Raises:
        GradtraceError: if `x` or `s0` has the wrong shape, dtype or device, T = 0, or either
            holds NaN/Inf.
    """
    check_tensor("x", x, 3)
    check(x.shape[0] >= 1, f"`x` must have at least one time step, got shape {tuple(x.shape)}")
    check_tensor("s0", s0, 2)
    S = cell.state_size(weights)
    check(
        s0.shape == (x.shape[1], S),
        f"`s0` must have shape (B = {x.shape[1]}, S = {S}) to match `x` and the weights, "
        f"got shape {tuple(s0.shape)}",
    )
    check_finite("x", x)
    check_finite("s0", s0)
    states = [s0]
    for x_t in x:  # (B, I): the recurrence itself is sequential
        states.append(cell.step(weights, x_t, states[-1]))  # (B, S)
    stacked = torch.stack(states)  # (T + 1, B, S)
    # Every J_t depends only on (x_t, s_{t-1}), so all of them come from one batched call.
    T, B, _ = x.shape
    flat = cell.jacobian(weights, x.reshape(T * B, -1), stacked[:-1].reshape(T * B, S))
    return stacked, flat.reshape(T, B, S, S)  # (T + 1, B, S), (T, B, S, S)
