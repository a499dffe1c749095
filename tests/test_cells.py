"""Tests for gradtrace.cells: every step against torch.nn, every analytic Jacobian against autograd.

Everything runs in float64. References: torch.nn.RNNCell / LSTMCell / LSTM / GRUCell on copied
weights and direct formulas for the steps (atol 1e-12: the same maths in another order), and
torch.autograd.functional.jacobian for the Jacobians and their products (atol 1e-10).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.autograd.functional import jacobian as autograd_jacobian

from gradtrace.cells import CELLS, GRUWeights, LSTMWeights, RNNWeights, get_cell, run_trajectory
from gradtrace.cells.gru import gru_weights_from_torch
from gradtrace.cells.lstm import (
    lstm_cell_path_jacobian,
    lstm_jacobian,
    lstm_weights_from_torch,
    split_state,
)
from gradtrace.cells.rnn import rnn_preactivation, rnn_step, rnn_weights_from_torch
from gradtrace.core.activations import ACTIVATIONS
from gradtrace.errors import GradtraceError

DTYPE = torch.float64
B, IN, H, P = 3, 4, 5, 2  # batch, input (I), hidden, projection
STEP_ATOL = 1e-12
JACOBIAN_ATOL = 1e-10


def randn(gen: torch.Generator, *shape: int, scale: float = 1.0) -> Tensor:
    return scale * torch.randn(*shape, generator=gen, dtype=DTYPE)


def inputs(weights: Any, seed: int = 7) -> tuple[Tensor, Tensor]:
    """A random input x (B, I) and state s (B, S) for `weights`."""
    gen = torch.Generator().manual_seed(seed)
    return randn(gen, B, weights.input_size), randn(gen, B, weights.state_size)


def batched_jacobian(f: Callable[[Tensor], Tensor], s: Tensor) -> Tensor:
    """Per-example autograd Jacobian of a row-wise map f: (B, S) -> (B, S'), shape (B, S', S)."""
    full = autograd_jacobian(f, s)  # (B, S', B, S)
    return torch.einsum("bibj->bij", full)  # (B, S', S)


# ---------------------------------------------------------------- problems as data


def rnn_weights(activation: str) -> RNNWeights:
    gen = torch.Generator().manual_seed(1)
    return RNNWeights(
        randn(gen, H, H, scale=1.2 / H**0.5), randn(gen, H, IN), randn(gen, H), activation
    )


def lstm_weights(proj: bool) -> LSTMWeights:
    gen = torch.Generator().manual_seed(2)
    P_ = P if proj else H
    W_hr = randn(gen, P, H) if proj else None
    return LSTMWeights(randn(gen, 4 * H, IN), randn(gen, 4 * H, P_), randn(gen, 4 * H), W_hr)


def gru_weights() -> GRUWeights:
    gen = torch.Generator().manual_seed(3)
    return GRUWeights(
        randn(gen, 3 * H, IN), randn(gen, 3 * H, H), randn(gen, 3 * H), randn(gen, 3 * H)
    )


# (cell name, weights factory): every RNN activation, LSTM with and without projection, GRU.
JACOBIAN_PROBLEMS = [
    *(pytest.param("rnn", lambda a=a: rnn_weights(a), id=f"rnn-{a}") for a in ACTIVATIONS),
    pytest.param("lstm", lambda: lstm_weights(proj=False), id="lstm"),
    pytest.param("lstm", lambda: lstm_weights(proj=True), id="lstm-proj"),
    pytest.param("gru", gru_weights, id="gru"),
]


def torch_lstm_step(module: nn.Module, x: Tensor, s: Tensor) -> Tensor:
    """One step of nn.LSTMCell or a one-layer nn.LSTM on the flat state s = cat(h, c)."""
    P_ = getattr(module, "proj_size", 0) or module.hidden_size
    h, c = s[:, :P_], s[:, P_:]  # (B, P), (B, H)
    if isinstance(module, nn.LSTMCell):
        h, c = module(x, (h, c))
    else:
        _, (h, c) = module(x[None], (h[None], c[None]))  # sequence of length 1
        h, c = h[0], c[0]
    return torch.cat([h, c], dim=-1)  # (B, P + H)


def torch_plain_step(module: nn.Module, x: Tensor, s: Tensor) -> Tensor:
    return module(x, s)


# (cell name, torch module factory, the module's step on the flat state)
TORCH_PROBLEMS = [
    pytest.param(
        "rnn", lambda: nn.RNNCell(IN, H, nonlinearity="tanh"), torch_plain_step, id="rnn-tanh"
    ),
    pytest.param(
        "rnn", lambda: nn.RNNCell(IN, H, nonlinearity="relu"), torch_plain_step, id="rnn-relu"
    ),
    pytest.param("rnn", lambda: nn.RNNCell(IN, H, bias=False), torch_plain_step, id="rnn-nobias"),
    pytest.param("lstm", lambda: nn.LSTMCell(IN, H), torch_lstm_step, id="lstm"),
    pytest.param("lstm", lambda: nn.LSTMCell(IN, H, bias=False), torch_lstm_step, id="lstm-nobias"),
    pytest.param("lstm", lambda: nn.LSTM(IN, H, proj_size=P), torch_lstm_step, id="lstm-proj"),
    pytest.param("gru", lambda: nn.GRUCell(IN, H), torch_plain_step, id="gru"),
    pytest.param("gru", lambda: nn.GRUCell(IN, H, bias=False), torch_plain_step, id="gru-nobias"),
]

# Independent closed forms of each activation, written without gradtrace's table.
FORMULAS: dict[str, Callable[[Tensor], Tensor]] = {
    "sigmoid": lambda a: 1 / (1 + torch.exp(-a)),
    "tanh": lambda a: (1 - torch.exp(-2 * a)) / (1 + torch.exp(-2 * a)),
    "relu": lambda a: torch.where(a > 0, a, 0 * a),
    "linear": lambda a: a,
    "leaky_relu": lambda a: torch.where(a > 0, a, 0.01 * a),
}


# ---------------------------------------------------------------- 1. steps


@pytest.mark.parametrize(("name", "make_module", "torch_step"), TORCH_PROBLEMS)
def test_step_matches_torch_module(
    name: str, make_module: Callable[[], nn.Module], torch_step: Callable[..., Tensor]
) -> None:
    torch.manual_seed(0)  # torch.nn initialises from the global generator
    module = make_module().to(DTYPE)
    cell = get_cell(name)
    weights = cell.from_torch(module)
    x, s = inputs(weights)
    with torch.no_grad():
        expected = torch_step(module, x, s)
    # Same maths as torch.nn in a different order of operations: atol 1e-12.
    torch.testing.assert_close(cell.step(weights, x, s), expected, atol=STEP_ATOL, rtol=0)


@pytest.mark.parametrize("activation", list(FORMULAS))
def test_rnn_step_matches_direct_formula(activation: str) -> None:
    w = rnn_weights(activation)
    x, h = inputs(w)
    a = torch.einsum("ij,bj->bi", w.W_hh, h) + torch.einsum("ij,bj->bi", w.W_hx, x) + w.b
    torch.testing.assert_close(rnn_preactivation(w, x, h), a, atol=STEP_ATOL, rtol=0)
    torch.testing.assert_close(rnn_step(w, x, h), FORMULAS[activation](a), atol=STEP_ATOL, rtol=0)


# ---------------------------------------------------------------- 2. step Jacobians


@pytest.mark.parametrize(("name", "make_weights"), JACOBIAN_PROBLEMS)
def test_jacobian_matches_autograd(name: str, make_weights: Callable[[], Any]) -> None:
    cell, w = get_cell(name), make_weights()
    x, s = inputs(w)
    expected = batched_jacobian(lambda s_: cell.step(w, x, s_), s)  # (B, S, S)
    J = cell.jacobian(w, x, s)
    assert J.shape == (B, w.state_size, w.state_size)
    torch.testing.assert_close(J, expected, atol=JACOBIAN_ATOL, rtol=0)


# ---------------------------------------------------------------- 3. the LSTM cell path


@pytest.mark.parametrize("proj", [False, True], ids=["lstm", "lstm-proj"])
def test_lstm_cell_path_jacobian_is_partial_dc_dc(proj: bool) -> None:
    w = lstm_weights(proj)
    x, s = inputs(w)
    h, c = split_state(w, s)  # (B, P), (B, H)

    def next_c(c_: Tensor) -> Tensor:
        return split_state(w, get_cell("lstm").step(w, x, torch.cat([h, c_], dim=-1)))[1]

    carousel = lstm_cell_path_jacobian(w, x, s)  # (B, H, H)
    torch.testing.assert_close(carousel, batched_jacobian(next_c, c), atol=JACOBIAN_ATOL, rtol=0)
    # It is also the lower-right block of the full step Jacobian.
    P_ = w.proj_size
    torch.testing.assert_close(lstm_jacobian(w, x, s)[:, P_:, P_:], carousel, atol=0, rtol=0)


# ---------------------------------------------------------------- 4. products on a trajectory


@pytest.mark.parametrize(("name", "make_weights"), JACOBIAN_PROBLEMS)
def test_trajectory_jacobian_products_match_autograd(
    name: str, make_weights: Callable[[], Any]
) -> None:
    T = 6
    cell, w = get_cell(name), make_weights()
    gen = torch.Generator().manual_seed(11)
    x, s0 = randn(gen, T, B, w.input_size), randn(gen, B, w.state_size, scale=0.5)
    states, jacobians = run_trajectory(cell, w, x, s0)
    assert states.shape == (T + 1, B, w.state_size)
    assert jacobians.shape == (T, B, w.state_size, w.state_size)
    torch.testing.assert_close(states[1], cell.step(w, x[0], s0), atol=0, rtol=0)
    for k in range(T):

        def run_from_k(s_k: Tensor, k: int = k) -> Tensor:
            for t in range(k, T):
                s_k = cell.step(w, x[t], s_k)
            return s_k

        # ds_T/ds_k = J_T ... J_{k+1}; jacobians[t - 1] holds J_t.
        product = jacobians[T - 1]
        for t in range(T - 2, k - 1, -1):
            product = product @ jacobians[t]  # (B, S, S)
        expected = batched_jacobian(run_from_k, states[k])
        torch.testing.assert_close(product, expected, atol=JACOBIAN_ATOL, rtol=1e-10)


# ---------------------------------------------------------------- registry and conversion


def test_registry_keys_and_state_sizes() -> None:
    assert list(CELLS) == ["rnn", "lstm", "gru"]
    assert all(CELLS[name].name == name for name in CELLS)
    assert get_cell("rnn").state_size(rnn_weights("tanh")) == H
    assert get_cell("gru").state_size(gru_weights()) == H
    assert get_cell("lstm").state_size(lstm_weights(proj=False)) == 2 * H
    assert get_cell("lstm").state_size(lstm_weights(proj=True)) == P + H


def test_weights_to_changes_dtype_and_keeps_values() -> None:
    w = lstm_weights(proj=True)
    w32 = w.to(dtype=torch.float32)
    assert w32.W_hr is not None
    assert w32.W_ih.dtype == w32.W_hr.dtype == torch.float32
    torch.testing.assert_close(w32.W_hh.double(), w.W_hh, atol=1e-6, rtol=1e-6)  # float32 eps


# ---------------------------------------------------------------- 5. bad input


def _nan_matrix() -> Tensor:
    W = torch.eye(H, dtype=DTYPE)
    W[0, 1] = W[2, 3] = float("nan")
    W[4, 4] = float("inf")
    return W


def _ones(*shape: int, dtype: torch.dtype = DTYPE) -> Tensor:
    return torch.ones(*shape, dtype=dtype)


def _run(s0: Tensor, x: Tensor) -> object:
    return run_trajectory(get_cell("rnn"), rnn_weights("tanh"), x, s0)


BAD_INPUTS = [
    pytest.param(
        lambda: RNNWeights(_ones(5, 4), _ones(5, 3), _ones(5)),
        r"`W_hh` must be square, got shape \(5, 4\)",
        id="rnn-W_hh-not-square",
    ),
    pytest.param(
        lambda: RNNWeights(_ones(5, 5), _ones(4, 3), _ones(5)),
        r"`W_hx` must have H = 5 rows to match `W_hh`, got shape \(4, 3\)",
        id="rnn-W_hx-rows",
    ),
    pytest.param(
        lambda: RNNWeights(_ones(5, 5), _ones(5, 3), _ones(4)),
        r"`b` must have shape \(5,\)",
        id="rnn-b-shape",
    ),
    pytest.param(
        lambda: RNNWeights(_nan_matrix(), _ones(5, 3), _ones(5)),
        r"`W_hh` must be finite, got 3 NaN/Inf entries",
        id="rnn-W_hh-nan",
    ),
    pytest.param(
        lambda: RNNWeights(_ones(5, 5), _ones(5, 3, dtype=torch.float32), _ones(5)),
        r"`W_hx` must have the dtype and device of `W_hh`",
        id="rnn-dtype-mismatch",
    ),
    pytest.param(
        lambda: RNNWeights(_ones(5, 5, dtype=torch.int64), _ones(5, 3), _ones(5)),
        r"`W_hh` must have a floating-point dtype",
        id="rnn-integer-weights",
    ),
    pytest.param(
        lambda: RNNWeights(_ones(5, 5), _ones(5, 3), _ones(5), activation="softsign"),
        r"`activation` must be one of .*, got 'softsign'",
        id="rnn-unknown-activation",
    ),
    pytest.param(
        lambda: rnn_step(rnn_weights("tanh"), _ones(B, IN + 1), _ones(B, H)),
        r"`x` must have shape \(B, I = 4\)",
        id="rnn-step-x-shape",
    ),
    pytest.param(
        lambda: rnn_step(rnn_weights("tanh"), _ones(B, IN), _ones(B + 1, H)),
        r"`h` must have shape \(B = 3, 5\)",
        id="rnn-step-h-batch",
    ),
    pytest.param(
        lambda: rnn_weights_from_torch(nn.GRUCell(IN, H)),
        r"`cell` must be a torch.nn.RNNCell, got GRUCell",
        id="rnn-from-wrong-module",
    ),
    pytest.param(
        lambda: LSTMWeights(_ones(10, 3), _ones(10, 2), _ones(10)),
        r"`W_ih` must have 4H rows",
        id="lstm-W_ih-rows",
    ),
    pytest.param(
        lambda: LSTMWeights(_ones(20, 3), _ones(20, 4), _ones(20)),
        r"`W_hh` must have shape \(4H, P\) = \(20, 5\)",
        id="lstm-W_hh-shape",
    ),
    pytest.param(
        lambda: LSTMWeights(_ones(20, 3), _ones(20, 2), _ones(20), _ones(2, 4)),
        r"`W_hr` must have shape \(P, H = 5\)",
        id="lstm-W_hr-shape",
    ),
    pytest.param(
        lambda: lstm_weights_from_torch(nn.LSTM(IN, H, num_layers=2)),
        r"`cell` must be a one-layer, one-direction torch.nn.LSTM, got num_layers = 2",
        id="lstm-from-two-layers",
    ),
    pytest.param(
        lambda: GRUWeights(_ones(15, 3), _ones(15, 4), _ones(15), _ones(15)),
        r"`W_hh` must have shape \(3H, H\)",
        id="gru-W_hh-shape",
    ),
    pytest.param(
        lambda: GRUWeights(_ones(12, 3), _ones(15, 5), _ones(15), _ones(15)),
        r"`W_ih` must have 3H = 15 rows",
        id="gru-W_ih-rows",
    ),
    pytest.param(
        lambda: gru_weights_from_torch(nn.LSTMCell(IN, H)),
        r"`cell` must be a torch.nn.GRUCell, got LSTMCell",
        id="gru-from-wrong-module",
    ),
    pytest.param(
        lambda: get_cell("xyz"),
        r"`cell` must be one of rnn, lstm, gru, got 'xyz'",
        id="unknown-cell",
    ),
    pytest.param(
        lambda: _run(_ones(B, H), _ones(0, B, IN)),
        r"`x` must have at least one time step",
        id="trajectory-T-0",
    ),
    pytest.param(
        lambda: _run(_ones(B, H + 1), _ones(6, B, IN)),
        r"`s0` must have shape \(B = 3, S = 5\)",
        id="trajectory-s0-shape",
    ),
    pytest.param(
        lambda: _run(_ones(B, H), _ones(6, B, IN).index_fill(0, torch.tensor([2]), float("nan"))),
        r"`x` must be finite, got 12 NaN/Inf entries",
        id="trajectory-x-nan",
    ),
]


@pytest.mark.parametrize(("call", "match"), BAD_INPUTS)
def test_bad_input_raises_naming_the_argument(call: Callable[[], object], match: str) -> None:
    with pytest.raises(GradtraceError, match=match):
        call()
