"""Recurrent cells, each step beside its analytic step Jacobian, and a registry by name.

Every cell is a state map s_t = step(weights, x_t, s_{t-1}) on a flat state s of size S (h for
RNN and GRU, cat(h, c) for LSTM) with its exact step Jacobian J_t = ds_t/ds_{t-1}. The keys of
`CELLS` are also the CLI's names. Shapes: B batch, T time, I input, S state.

Example, with x of shape (T, B, 3) and s0 of shape (B, 5)::

    cell = get_cell("gru")
    weights = cell.from_torch(torch.nn.GRUCell(3, 5, dtype=torch.float64))
    states, jacobians = run_trajectory(cell, weights, x, s0)  # (T + 1, B, 5), (T, B, 5, 5)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from gradtrace.cells.gru import GRUWeights, gru_jacobian, gru_step, gru_weights_from_torch
from gradtrace.cells.lstm import LSTMWeights, lstm_jacobian, lstm_step, lstm_weights_from_torch
from gradtrace.cells.rnn import RNNWeights, rnn_jacobian, rnn_step, rnn_weights_from_torch
from gradtrace.cells.trajectory import run_trajectory
from gradtrace.errors import GradtraceError

__all__ = [
    "CELLS",
    "Cell",
    "GRUWeights",
    "LSTMWeights",
    "RNNWeights",
    "get_cell",
    "run_trajectory",
]


@dataclass(frozen=True)
class Cell:
    """A recurrent cell as plain functions of its weights.

    Attributes:
        name: The registry key.
        step: (weights, x (B, I), s (B, S)) -> s_new (B, S).
        jacobian: (weights, x (B, I), s (B, S)) -> ds_t/ds_{t-1} (B, S, S).
        state_size: weights -> S.
        from_torch: A torch module -> weights, copying its parameters.
    """

    name: str
    step: Callable[[Any, Tensor, Tensor], Tensor]
    jacobian: Callable[[Any, Tensor, Tensor], Tensor]
    state_size: Callable[[Any], int]
    from_torch: Callable[[torch.nn.Module], Any]


CELLS: dict[str, Cell] = {
    "rnn": Cell("rnn", rnn_step, rnn_jacobian, lambda w: w.state_size, rnn_weights_from_torch),
    "lstm": Cell("lstm", lstm_step, lstm_jacobian, lambda w: w.state_size, lstm_weights_from_torch),
    "gru": Cell("gru", gru_step, gru_jacobian, lambda w: w.state_size, gru_weights_from_torch),
}


def get_cell(name: str) -> Cell:
    """Look up a cell by name.

    Raises:
        GradtraceError: if `name` is not a key of `CELLS`.
    """
    if name not in CELLS:
        raise GradtraceError(f"`cell` must be one of {', '.join(CELLS)}, got {name!r}")
    return CELLS[name]
