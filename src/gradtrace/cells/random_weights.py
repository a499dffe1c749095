"""Random weights for any cell, with the recurrent blocks drawn from a chosen spectrum.

Without a spectrum every tensor follows PyTorch's default initialisation of nn.RNN, nn.LSTM
and nn.GRU: U(-1/sqrt(H), 1/sqrt(H)). With one, each gate's recurrent block (H, H) is drawn from
it independently (a vanilla RNN has one block, a GRU three, an LSTM four); input weights and
biases keep the default.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gradtrace.cells.gru import GRUWeights
from gradtrace.cells.lstm import LSTMWeights
from gradtrace.cells.rnn import RNNWeights
from gradtrace.core.weights import Spectrum
from gradtrace.errors import check

GATES = {"rnn": 1, "gru": 3, "lstm": 4}


def _uniform(
    shape: tuple[int, ...], bound: float, gen: torch.Generator, dtype: torch.dtype
) -> Tensor:
    return (2 * torch.rand(shape, generator=gen, dtype=torch.float64) - 1).mul(bound).to(dtype)


def random_weights(
    cell: str,
    hidden: int,
    input_size: int,
    *,
    spectrum: Spectrum | None = None,
    activation: str = "tanh",
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> RNNWeights | LSTMWeights | GRUWeights:
    """Draw seeded weights for `cell` ("rnn", "lstm" or "gru").

    Args:
        cell: The cell name.
        hidden: H >= 1.
        input_size: I >= 1.
        spectrum: How to draw each recurrent block; None for PyTorch's default.
        activation: phi of a vanilla RNN (ignored by the gated cells).
        seed: Seed of the generator; the same seed gives the same weights.
        dtype: float64 or float32.

    Raises:
        GradtraceError: on an unknown cell or sizes below 1.
    """
    check(cell in GATES, f"`cell` must be one of {', '.join(GATES)}, got {cell!r}")
    check(hidden >= 1, f"`hidden` must be at least 1, got {hidden}")
    check(input_size >= 1, f"`input_size` must be at least 1, got {input_size}")
    gen = torch.Generator().manual_seed(seed)
    bound = 1 / hidden**0.5
    gates = GATES[cell]
    if spectrum is None:
        W_hh = _uniform((gates * hidden, hidden), bound, gen, dtype)
    else:
        W_hh = torch.cat([spectrum.build(hidden, gen, dtype) for _ in range(gates)])  # (gH, H)
    W_ih = _uniform((gates * hidden, input_size), bound, gen, dtype)  # (gH, I)
    b_ih = _uniform((gates * hidden,), bound, gen, dtype)
    b_hh = _uniform((gates * hidden,), bound, gen, dtype)
    if cell == "rnn":
        return RNNWeights(W_hh, W_ih, b_ih + b_hh, activation)
    if cell == "lstm":
        return LSTMWeights(W_ih, W_hh, b_ih + b_hh)
    return GRUWeights(W_ih, W_hh, b_ih, b_hh)


def recurrent_blocks(weights: RNNWeights | LSTMWeights | GRUWeights) -> dict[str, Tensor]:
    """The square recurrent block of each gate, by gate name, for the theory numbers.

    With an LSTM projection h = W_hr m the gates see W_h{gate} W_hr m_{t-1}, so the square
    (H, H) map of each gate is that product.
    """
    if isinstance(weights, RNNWeights):
        return {"W_hh": weights.W_hh}
    H = weights.hidden_size
    names = ("i", "f", "g", "o") if isinstance(weights, LSTMWeights) else ("r", "z", "n")
    blocks = {f"W_h{g}": weights.W_hh[i * H : (i + 1) * H] for i, g in enumerate(names)}
    if isinstance(weights, LSTMWeights) and weights.W_hr is not None:
        return {f"{name} W_hr": W @ weights.W_hr for name, W in blocks.items()}  # (H, H) each
    return blocks
