"""The models' initialisations, every draw from one `torch.Generator`.

Each draw is made in float64 on the CPU and then copied into its parameter (rounded to the
parameter's dtype), so one seed gives the same weights in float32 and float64 up to rounding,
and torch's global generator never moves.

PyTorch's LSTM holds two bias vectors that are added, bias_ih_l0 + bias_hh_l0, each stacking
the gates in the order i, f, g, o (H rows each). A bias named here is the effective one, the
sum; where it is set it is written once, into bias_ih_l0, with the same slice of bias_hh_l0
set to exactly zero, so the sum is exactly the value written.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

IRNN_INPUT_STD = 0.001  # Le, Jaitly, Hinton 2015: input weights N(0, 0.001^2)
FORGET_BIAS = 1.0  # Jozefowicz, Zaremba, Sutskever 2015


def _write(param: Tensor, value: Tensor) -> None:
    with torch.no_grad():
        param.copy_(value)


def _param(module: nn.Module, name: str) -> Tensor:
    """The parameter `name` of a recurrent module, typed (torch's stubs say Tensor | Module)."""
    param = getattr(module, name)
    assert isinstance(param, Tensor)
    return param


def uniform_default(module: nn.Module, fan_in: int, gen: torch.Generator) -> None:
    """PyTorch's default for nn.RNN / nn.LSTM / nn.GRU and nn.Linear: every parameter of
    `module` U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn in the order of `named_parameters`.

    For a recurrent module fan_in is H (PyTorch's `reset_parameters`); for nn.Linear it is
    its in_features (kaiming_uniform_ with a = sqrt(5) gives the same bound).
    """
    bound = 1.0 / math.sqrt(fan_in)
    for _, param in module.named_parameters():
        draw = torch.empty(param.shape, dtype=torch.float64).uniform_(-bound, bound, generator=gen)
        _write(param, draw)


def identity_relu(rnn: nn.RNN, gen: torch.Generator) -> None:
    """IRNN (Le, Jaitly, Hinton 2015, "A simple way to initialize recurrent networks of
    rectified linear units"): W_hh = I exactly, both biases exactly 0, W_ih ~ N(0, 0.001^2)."""
    W_hh, W_ih = _param(rnn, "weight_hh_l0"), _param(rnn, "weight_ih_l0")
    _write(W_hh, torch.eye(rnn.hidden_size, dtype=torch.float64))
    for name in ("bias_ih_l0", "bias_hh_l0"):
        _write(_param(rnn, name), torch.zeros(rnn.hidden_size, dtype=torch.float64))
    draw = torch.empty(W_ih.shape, dtype=torch.float64)
    _write(W_ih, draw.normal_(0.0, IRNN_INPUT_STD, generator=gen))


def orthogonal_recurrent(rnn: nn.RNN, gen: torch.Generator) -> None:
    """W_hh orthogonal: the Q of a Gaussian matrix's QR (`nn.init.orthogonal_`), in float64."""
    W_hh = _param(rnn, "weight_hh_l0")
    draw = torch.empty(W_hh.shape, dtype=torch.float64)
    nn.init.orthogonal_(draw, generator=gen)
    _write(W_hh, draw)


def _gate_biases(lstm: nn.LSTM, gates: dict[int, Tensor]) -> None:
    """Write effective biases of the gates named by index (0 i, 1 f, 2 g, 3 o) once."""
    H = lstm.hidden_size
    bias_ih, bias_hh = _param(lstm, "bias_ih_l0"), _param(lstm, "bias_hh_l0")
    b_ih = bias_ih.detach().to(torch.float64).clone()  # (4 H,)
    b_hh = bias_hh.detach().to(torch.float64).clone()
    for gate, value in gates.items():
        b_ih[gate * H : (gate + 1) * H] = value
        b_hh[gate * H : (gate + 1) * H] = 0.0
    _write(bias_ih, b_ih)
    _write(bias_hh, b_hh)


def forget_bias(lstm: nn.LSTM) -> None:
    """Effective forget-gate bias exactly 1 (Jozefowicz, Zaremba, Sutskever 2015, "An empirical
    exploration of recurrent network architectures"); the other gates keep theirs."""
    _gate_biases(lstm, {1: torch.full((lstm.hidden_size,), FORGET_BIAS, dtype=torch.float64)})


def chrono(lstm: nn.LSTM, t_max: int, gen: torch.Generator) -> None:
    """Chrono initialisation (Tallec & Ollivier 2018, "Can recurrent neural networks warp
    time?"): effective b_f ~ log U(1, t_max - 1), b_i = -b_f, so the forget gates' time
    constants spread over 1..t_max - 1 steps; g and o keep theirs."""
    u = torch.empty(lstm.hidden_size, dtype=torch.float64).uniform_(1.0, t_max - 1.0, generator=gen)
    b_f = torch.log(u)
    _gate_biases(lstm, {0: -b_f, 1: b_f})
