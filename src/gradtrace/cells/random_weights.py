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
from gradtrace.cells.registry import get_cell
from gradtrace.cells.rnn import RNNWeights
from gradtrace.core.spectra import Spectrum, parse_spectrum
from gradtrace.errors import check, check_seed


def _uniform(
    shape: tuple[int, ...], bound: float, gen: torch.Generator, dtype: torch.dtype
) -> Tensor:
    return (2 * torch.rand(shape, generator=gen, dtype=torch.float64) - 1).mul(bound).to(dtype)


def random_weights(
    cell: str,
    hidden_size: int,
    input_size: int,
    *,
    spectrum: Spectrum | str | None = None,
    activation: str = "tanh",
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> RNNWeights | LSTMWeights | GRUWeights:
    """Draw seeded weights for `cell` ("rnn", "lstm" or "gru").

    Args:
        cell: The cell name.
        hidden_size: H >= 1.
        input_size: I >= 1.
        spectrum: How to draw each recurrent block, a `Spectrum` or a SPEC string such as
            "radius:1.2" (`gradtrace.core.spectra`); None for PyTorch's default.
        activation: phi of a vanilla RNN (ignored by the gated cells).
        seed: Seed of the generator; the same seed gives the same weights.
        dtype: float64 or float32.

    Raises:
        GradtraceError: on an unknown cell or sizes below 1.
    """
    gates = get_cell(cell).gates
    if isinstance(spectrum, str):
        spectrum = parse_spectrum(spectrum)
    for name, value in (("hidden_size", hidden_size), ("input_size", input_size)):
        check(
            isinstance(value, int) and not isinstance(value, bool) and value >= 1,
            f"`{name}` must be a whole number of at least 1, got {value!r}",
        )
    hidden = hidden_size
    gen = torch.Generator().manual_seed(check_seed(seed))
    bound = 1 / hidden**0.5
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
