"""The cells by name: each one's step, analytic step Jacobian and weights type.

The keys of `CELLS` are also the CLI's names (`--cell rnn|lstm|gru`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from gradtrace.cells.gru import GRUWeights, gru_advance, gru_drive, gru_jacobian, gru_step
from gradtrace.cells.lstm import (
    LSTMWeights,
    lstm_advance,
    lstm_drive,
    lstm_factors,
    lstm_forget_gate,
    lstm_jacobian,
    lstm_step,
)
from gradtrace.cells.rnn import (
    RNNWeights,
    rnn_advance,
    rnn_drive,
    rnn_factors,
    rnn_jacobian,
    rnn_step,
)
from gradtrace.core.factors import DenseFactors, Factors
from gradtrace.errors import GradtraceError

StepFn = Callable[[Any, Tensor, Tensor], Tensor]
DriveFn = Callable[[Any, Tensor], Tensor]
FactorsFn = Callable[[Any, Tensor, Tensor, int], Factors]
Weights = RNNWeights | LSTMWeights | GRUWeights


@dataclass(frozen=True)
class Cell:
    """A recurrent cell as plain functions of its weights.

    Attributes:
        name: The registry key.
        step: (weights, x (B, I), s (B, S)) -> s_new (B, S).
        jacobian: (weights, x (B, I), s (B, S)) -> ds_t/ds_{t-1} (B, S, S).
        weights: The weights dataclass.
        gates: How many gate blocks W_hh stacks (1, 4 or 3).
        drive: (weights, x (N, I)) -> the input's part of the step, u (N, G), for any number
            of rows: a replay computes it for every step in one product.
        advance: (weights, u (B, G), s (B, S)) -> s_new (B, S), the step from its drive;
            step(w, x, s) = advance(w, drive(w, x), s), unchecked.
        cell_path: LSTM only: (weights, x, s) -> f_t (B, H), the cell path's diagonal.
        structured: (weights, x (n B, I), s (n B, S), n) -> the Jacobians of n steps applied
            from their parts (`gradtrace.core.factors`), or None for explicit Jacobians.
    """

    name: str
    step: StepFn
    jacobian: StepFn
    weights: type
    gates: int
    drive: DriveFn
    advance: StepFn
    cell_path: StepFn | None = None
    structured: FactorsFn | None = None

    def state_size(self, weights: Any) -> int:
        """S for these weights."""
        return int(weights.state_size)

    def factors(self, weights: Any, x: Tensor, s: Tensor, steps: int) -> Factors:
        """The step Jacobians of `steps` steps from their rows x (n B, I) and s (n B, S)."""
        if self.structured is not None:
            return self.structured(weights, x, s, steps)
        J = self.jacobian(weights, x, s)  # (n B, S, S)
        return DenseFactors(J.reshape(steps, -1, *J.shape[1:]))


CELLS: dict[str, Cell] = {
    "rnn": Cell(
        "rnn", rnn_step, rnn_jacobian, RNNWeights, 1, rnn_drive, rnn_advance, None, rnn_factors
    ),
    "lstm": Cell(
        "lstm",
        lstm_step,
        lstm_jacobian,
        LSTMWeights,
        4,
        lstm_drive,
        lstm_advance,
        lstm_forget_gate,
        lstm_factors,
    ),
    "gru": Cell("gru", gru_step, gru_jacobian, GRUWeights, 3, gru_drive, gru_advance),
}


def get_cell(name: str) -> Cell:
    """Look up a cell by name.

    Raises:
        GradtraceError: if `name` is not a key of `CELLS`.
    """
    if name not in CELLS:
        raise GradtraceError(f"`cell` must be one of {', '.join(CELLS)}, got {name!r}")
    return CELLS[name]


def cell_of(weights: object) -> Cell:
    """The cell whose weights these are.

    Raises:
        GradtraceError: if `weights` is not RNNWeights, LSTMWeights or GRUWeights.
    """
    for cell in CELLS.values():
        if isinstance(weights, cell.weights):
            return cell
    raise GradtraceError(
        f"`weights` must be RNNWeights, LSTMWeights or GRUWeights, got {type(weights).__name__}"
    )
