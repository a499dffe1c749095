"""Recurrent cells, each step beside its analytic step Jacobian, and a registry by name.

Every cell is a state map s_t = step(weights, x_t, s_{t-1}) on a flat state s of size S (h for
RNN and GRU, cat(h, c) for LSTM) with its exact step Jacobian J_t = ds_t/ds_{t-1}. Shapes:
B batch, T time, I input, S state.

    CELLS, get_cell, cell_of      the registry (`gradtrace.cells.registry`)
    RNNWeights, LSTMWeights, ...  each cell's weights, checked on construction
    weights_from_torch            the one path from a torch module to a cell's weights
    random_weights                seeded weights with a chosen recurrent spectrum
    replay, checkpoint            the one replay: states and step Jacobians on demand

Example, with x of shape (T, B, 3) and s0 of shape (B, 5)::

    weights = weights_from_torch(torch.nn.GRUCell(3, 5, dtype=torch.float64))
    run = replay(cell_of(weights), weights, x, s0)
    run.states, run.jacobians()  # (T + 1, B, 5), (T, B, 5, 5)
"""

from __future__ import annotations

from gradtrace.cells.from_torch import cell_name, weights_from_torch
from gradtrace.cells.gru import GRUWeights
from gradtrace.cells.lstm import LSTMWeights
from gradtrace.cells.random_weights import random_weights
from gradtrace.cells.registry import CELLS, Cell, Weights, cell_of, get_cell
from gradtrace.cells.replay import Replay, checkpoint, replay
from gradtrace.cells.rnn import RNNWeights

__all__ = [
    "CELLS",
    "Cell",
    "GRUWeights",
    "LSTMWeights",
    "RNNWeights",
    "Replay",
    "Weights",
    "cell_name",
    "cell_of",
    "checkpoint",
    "get_cell",
    "random_weights",
    "replay",
    "weights_from_torch",
]
