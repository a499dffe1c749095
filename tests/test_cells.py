"""Tests for gradtrace.cells: every step against torch.nn, every analytic Jacobian against autograd.

Everything runs in float64. References: torch.nn.RNNCell / LSTMCell / LSTM / GRUCell on copied
weights, direct formulas for the steps, and the outputs and final states of 2-layer
bidirectional nn.RNN / nn.LSTM / nn.GRU replayed layer by layer (atol 1e-12: the same maths in
another order); the module's own parameters, bit for bit, for `weights_from_torch`;
torch.autograd.functional.jacobian for the Jacobians and their products, and torch.autograd
through `Replay.graph` for the products' transposes (atol 1e-10). `random_weights` is checked on
PyTorch's U(-1/sqrt(H), 1/sqrt(H)) default and on torch.linalg's spectral radius of each gate
block (1e-10).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.autograd.functional import jacobian as autograd_jacobian

from gradtrace.cells import (
    CELLS,
    GRUWeights,
    LSTMWeights,
    RNNWeights,
    cell_of,
    checkpoint,
    get_cell,
    random_weights,
    replay,
    weights_from_torch,
)
from gradtrace.cells.lstm import lstm_forget_gate, lstm_jacobian, split_state
from gradtrace.cells.rnn import rnn_preactivation, rnn_step
from gradtrace.core.activations import ACTIVATIONS
from gradtrace.core.spectra import parse_spectrum
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
    W_proj = randn(gen, P, H) if proj else None
    return LSTMWeights(randn(gen, 4 * H, IN), randn(gen, 4 * H, P_), randn(gen, 4 * H), W_proj)


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
    weights = weights_from_torch(module)
    assert isinstance(weights, cell.weights)  # the module's own weights type
    assert cell_of(weights) is cell
    x, s = inputs(weights)
    with torch.no_grad():
        expected = torch_step(module, x, s)
    # Same maths as torch.nn in a different order of operations: atol 1e-12.
    torch.testing.assert_close(cell.step(weights, x, s), expected, atol=STEP_ATOL, rtol=0)
    # A replay's form of the step, from the input drive of many rows at once: the same step.
    drive = cell.drive(weights, torch.cat([x, x]))[: x.shape[0]]
    torch.testing.assert_close(cell.advance(weights, drive, s), expected, atol=STEP_ATOL, rtol=0)


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


@pytest.mark.parametrize(("name", "make_weights"), JACOBIAN_PROBLEMS)
def test_structured_factors_apply_the_autograd_jacobian(
    name: str, make_weights: Callable[[], Any]
) -> None:
    # The factors the engine sweeps with (a cell's own structured form, never the dense
    # (B, S, S) tensor) must act as the Jacobian does: P J, J V, the dense matrix and the
    # Frobenius norm, against torch.autograd's Jacobian of the step, float64, 1e-12.
    cell, w = get_cell(name), make_weights()
    steps = 2
    rows = [inputs(w) for _ in range(steps)]
    x, s = (torch.cat([r[i] for r in rows]) for i in (0, 1))  # (steps B, I), (steps B, S)
    factors = cell.factors(w, x, s, steps)
    gen = torch.Generator().manual_seed(11)
    S = w.state_size
    for i, (x_i, s_i) in enumerate(rows):
        J = batched_jacobian(lambda s_, x_i=x_i: cell.step(w, x_i, s_), s_i)  # (B, S, S)
        P, V = randn(gen, B, 3, S), randn(gen, B, S, 2)
        close = {"atol": 1e-12, "rtol": 0}
        torch.testing.assert_close(factors.dense()[i], J, **close)
        torch.testing.assert_close(factors.left(i, P), P @ J, **close)
        # one row: the RNN's factors scale it rather than form J (see `RNNFactors`)
        torch.testing.assert_close(factors.left(i, P[:, :1]), P[:, :1] @ J, **close)
        torch.testing.assert_close(factors.right(i, V), J @ V, **close)
        norm = {  # each factor names the bound on ||J_t||_2 it gives
            "||J_t||_F": torch.linalg.matrix_norm(J, ord="fro"),
            "min(||J_t||_F, sqrt(||J_t||_1 ||J_t||_inf))": torch.minimum(
                torch.linalg.matrix_norm(J, ord="fro"),
                torch.sqrt(
                    torch.linalg.matrix_norm(J, ord=1) * torch.linalg.matrix_norm(J, ord=math.inf)
                ),
            ),
        }[factors.norm_label]
        torch.testing.assert_close(factors.norm_bound()[i], norm, **close)
        assert bool((norm >= torch.linalg.matrix_norm(J, ord=2)).all())


# ---------------------------------------------------------------- 3. the LSTM cell path


@pytest.mark.parametrize("proj", [False, True], ids=["lstm", "lstm-proj"])
def test_lstm_forget_gate_is_the_diagonal_of_partial_dc_dc(proj: bool) -> None:
    w = lstm_weights(proj)
    x, s = inputs(w)
    h, c = split_state(w, s)  # (B, P), (B, H)

    def next_c(c_: Tensor) -> Tensor:
        return split_state(w, get_cell("lstm").step(w, x, torch.cat([h, c_], dim=-1)))[1]

    f = lstm_forget_gate(w, x, s)  # (B, H)
    assert f.shape == (B, H)
    carousel = torch.diag_embed(f)  # (B, H, H)
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
    run = replay(cell, w, x, s0)
    states, jacobians = run.states, run.jacobians()
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


@pytest.mark.parametrize(("name", "make_weights"), JACOBIAN_PROBLEMS)
def test_replay_chunks_slices_cell_path_and_checkpoint_agree(
    name: str, make_weights: Callable[[], Any]
) -> None:
    T = 7
    cell, w = get_cell(name), make_weights()
    gen = torch.Generator().manual_seed(12)
    x, s0 = randn(gen, T, B, w.input_size), randn(gen, B, w.state_size, scale=0.5)
    run = replay(cell, w, x, s0)
    J = run.jacobians()  # (T, B, S, S)
    assert (run.steps, run.batch, run.size) == (T, B, w.state_size)
    # Each J_t on its own through the cell's formula: the reference for every other view.
    one_by_one = torch.stack([cell.jacobian(w, x[t], run.states[t]) for t in range(T)])
    torch.testing.assert_close(J, one_by_one, atol=STEP_ATOL, rtol=0)
    chunks = list(run.chunks(3))
    assert [c.shape[0] for c in chunks] == [3, 3, 1]
    torch.testing.assert_close(torch.cat(chunks), one_by_one, atol=STEP_ATOL, rtol=0)
    torch.testing.assert_close(run.jacobians(2, 5), one_by_one[2:5], atol=STEP_ATOL, rtol=0)
    # The states given instead of replayed: the same step Jacobians, no final state.
    given = checkpoint(cell, w, x, run.states[:-1])
    assert given.final is None and given.graph is None
    assert torch.equal(given.states, run.states[:-1])
    torch.testing.assert_close(given.jacobians(), one_by_one, atol=STEP_ATOL, rtol=0)
    # The cell path: the forget gates f_t (T, B, H) of an LSTM, the diagonal of dc_t/dc_{t-1}.
    path = run.cell_path()
    if name != "lstm":
        assert path is None and given.cell_path() is None
        return
    assert path is not None
    P_ = w.proj_size
    diagonal = torch.diagonal(one_by_one[..., P_:, P_:], dim1=-2, dim2=-1)  # (T, B, H)
    assert path.shape == (T, B, H)
    torch.testing.assert_close(path, diagonal, atol=STEP_ATOL, rtol=0)
    torch.testing.assert_close(given.cell_path(), diagonal, atol=STEP_ATOL, rtol=0)


GRAD_OFF: list[Any] = [
    pytest.param(torch.no_grad, id="no_grad"),
    pytest.param(torch.inference_mode, id="inference_mode"),
    pytest.param(lambda: torch.set_grad_enabled(False), id="set_grad_enabled-False"),
]


@pytest.mark.parametrize("grad_off", GRAD_OFF)
@pytest.mark.parametrize(("name", "make_weights"), JACOBIAN_PROBLEMS)
def test_replay_keeps_states_in_the_graph_only_with_grad_enabled(
    name: str, make_weights: Callable[[], Any], grad_off: Callable[[], AbstractContextManager]
) -> None:
    T = 6
    cell, w = get_cell(name), make_weights()
    gen = torch.Generator().manual_seed(13)
    x, s0 = randn(gen, T, B, w.input_size), randn(gen, B, w.state_size, scale=0.5)
    s0.requires_grad_(True)

    run = replay(cell, w, x, s0)
    assert run.graph is not None
    assert len(run.graph) == T + 1
    assert run.graph[0] is s0
    assert all(s.grad_fn is not None for s in run.graph[1:])
    assert not run.states.requires_grad  # the states themselves are detached copies
    for t, s_t in enumerate(run.graph):
        assert torch.equal(s_t.detach(), run.states[t])
    # The graph is the one the states went through: autograd of <g, s_T> by every s_k is
    # (J_T ... J_{k+1})^T g, here from the analytic step Jacobians.
    g = randn(gen, B, w.state_size)
    grads = torch.autograd.grad((run.graph[-1] * g).sum(), run.graph)
    J = run.jacobians()
    expected = [g]
    for t in range(T - 1, -1, -1):
        expected.append(torch.einsum("bij,bi->bj", J[t], expected[-1]))  # J_{t+1}^T v
    for k in range(T + 1):
        torch.testing.assert_close(grads[k], expected[T - k], atol=JACOBIAN_ATOL, rtol=1e-10)

    with grad_off():
        quiet = replay(cell, w, x, s0)
    assert quiet.graph is None
    assert not quiet.states.requires_grad
    assert torch.equal(quiet.states, run.states)  # the same numbers, nothing recorded


# ---------------------------------------------------------------- 5. weights_from_torch

LAYERS, DIRECTIONS = 2, 2

# (torch module factory, weights type, size of h): 2-layer bidirectional modules.
STACKED_MODULES = [
    pytest.param(
        lambda: nn.LSTM(IN, H, num_layers=LAYERS, bidirectional=True, proj_size=P),
        LSTMWeights,
        P,
        id="lstm-proj",
    ),
    pytest.param(
        lambda: nn.GRU(IN, H, num_layers=LAYERS, bidirectional=True), GRUWeights, H, id="gru"
    ),
    pytest.param(
        lambda: nn.RNN(IN, H, num_layers=LAYERS, bidirectional=True, nonlinearity="relu"),
        RNNWeights,
        H,
        id="rnn-relu",
    ),
]


@pytest.mark.parametrize(("make_module", "kind", "out"), STACKED_MODULES)
def test_weights_from_torch_reads_every_layer_and_direction(
    make_module: Callable[[], nn.Module], kind: type, out: int
) -> None:
    torch.manual_seed(0)
    module = make_module().to(DTYPE)
    params = dict(module.named_parameters())
    for layer in range(LAYERS):
        for direction in range(DIRECTIONS):
            suffix = f"_l{layer}" + ("_reverse" if direction else "")

            def param(name: str, suffix: str = suffix) -> Tensor:
                return params[name + suffix].detach()

            w = weights_from_torch(module, layer, direction)
            assert type(w) is kind
            # Layer 0 reads x; layer 1 reads cat(forward h, reverse h) of layer 0.
            assert w.input_size == (IN if layer == 0 else DIRECTIONS * out)
            assert w.hidden_size == H
            assert not any(t.requires_grad for t in vars(w).values() if isinstance(t, Tensor))
            bias = param("bias_ih") + param("bias_hh")
            if isinstance(w, RNNWeights):
                assert torch.equal(w.W_hh, param("weight_hh"))
                assert torch.equal(w.W_hx, param("weight_ih"))
                assert torch.equal(w.b, bias)
                assert w.activation == "relu"
            elif isinstance(w, LSTMWeights):
                assert torch.equal(w.W_ih, param("weight_ih"))
                assert torch.equal(w.W_hh, param("weight_hh"))
                assert torch.equal(w.b, bias)
                assert w.W_proj is not None
                assert torch.equal(w.W_proj, param("weight_hr"))
                assert w.proj_size == P
            else:
                assert torch.equal(w.W_ih, param("weight_ih"))
                assert torch.equal(w.W_hh, param("weight_hh"))
                assert torch.equal(w.b_ih, param("bias_ih"))
                assert torch.equal(w.b_hh, param("bias_hh"))


@pytest.mark.parametrize(("make_module", "kind", "out"), STACKED_MODULES)
def test_weights_from_torch_replays_the_module_layer_by_layer(
    make_module: Callable[[], nn.Module], kind: type, out: int
) -> None:
    T = 5
    torch.manual_seed(0)
    module = make_module().to(DTYPE)
    x = randn(torch.Generator().manual_seed(14), T, B, IN)
    with torch.no_grad():
        output, final = module(x)  # zero initial states
    h_n, c_n = final if isinstance(final, tuple) else (final, None)  # (L D, B, P), (L D, B, H)
    layer_input = x
    for layer in range(LAYERS):
        outputs = []
        for direction in range(DIRECTIONS):
            w = weights_from_torch(module, layer, direction)
            xs = layer_input.flip(0) if direction else layer_input  # reverse reads x_T first
            with torch.no_grad():
                run = replay(cell_of(w), w, xs, torch.zeros(B, w.state_size, dtype=DTYPE))
            h = run.states[1:, :, :out]  # (T, B, P)
            index = DIRECTIONS * layer + direction
            torch.testing.assert_close(h[-1], h_n[index], atol=STEP_ATOL, rtol=0)
            if c_n is not None:
                torch.testing.assert_close(
                    run.states[-1, :, out:], c_n[index], atol=STEP_ATOL, rtol=0
                )
            outputs.append(h.flip(0) if direction else h)
        layer_input = torch.cat(outputs, dim=-1)  # (T, B, D P): the next layer's input
    torch.testing.assert_close(layer_input, output, atol=STEP_ATOL, rtol=0)


# ---------------------------------------------------------------- registry and conversion


def test_registry_keys_and_state_sizes() -> None:
    assert list(CELLS) == ["rnn", "lstm", "gru"]
    assert all(CELLS[name].name == name for name in CELLS)
    assert get_cell("rnn").state_size(rnn_weights("tanh")) == H
    assert get_cell("gru").state_size(gru_weights()) == H
    assert get_cell("lstm").state_size(lstm_weights(proj=False)) == 2 * H
    assert get_cell("lstm").state_size(lstm_weights(proj=True)) == P + H


def test_registry_cells_know_their_weights_gates_and_cell_path() -> None:
    assert [(c.weights, c.gates) for c in CELLS.values()] == [
        (RNNWeights, 1),
        (LSTMWeights, 4),
        (GRUWeights, 3),
    ]
    assert get_cell("lstm").cell_path is lstm_forget_gate
    assert get_cell("rnn").cell_path is None
    assert get_cell("gru").cell_path is None
    assert cell_of(rnn_weights("relu")) is get_cell("rnn")
    assert cell_of(lstm_weights(proj=True)) is get_cell("lstm")
    assert cell_of(gru_weights()) is get_cell("gru")


def test_weights_to_changes_dtype_and_keeps_values() -> None:
    w = lstm_weights(proj=True)
    w32 = w.to(dtype=torch.float32)
    assert w32.W_proj is not None
    assert w32.W_ih.dtype == w32.W_proj.dtype == torch.float32
    torch.testing.assert_close(w32.W_hh.double(), w.W_hh, atol=1e-6, rtol=1e-6)  # float32 eps


def test_projected_lstm_blocks_are_the_square_maps_the_gates_see() -> None:
    # Regression: with proj_size the blocks were dropped and sigma_max / rho came out NaN.
    lstm = torch.nn.LSTM(3, 5, proj_size=2, dtype=torch.float64)
    w = weights_from_torch(lstm)
    blocks = w.recurrent_blocks()
    assert sorted(blocks) == ["W_hf W_proj", "W_hg W_proj", "W_hi W_proj", "W_ho W_proj"]
    W_hh, W_proj = lstm.weight_hh_l0.detach(), lstm.weight_hr_l0.detach()  # (4H, P), (P, H)
    torch.testing.assert_close(blocks["W_hf W_proj"], W_hh[5:10] @ W_proj, atol=1e-14, rtol=0)


# ---------------------------------------------------------------- random_weights


@pytest.mark.parametrize("cell", list(CELLS))
def test_default_init_is_pytorch_uniform_and_seeded(cell: str) -> None:
    H, I = 16, 3
    weights = random_weights(cell, H, I, seed=4)
    again = random_weights(cell, H, I, seed=4)
    other = random_weights(cell, H, I, seed=5)
    gates = get_cell(cell).gates
    assert weights.W_hh.shape == (gates * H, H)
    assert torch.equal(weights.W_hh, again.W_hh)
    assert not torch.equal(weights.W_hh, other.W_hh)
    # U(-1/sqrt(H), 1/sqrt(H)) for every recurrent and input weight
    bound = 1 / math.sqrt(H)
    W_in = weights.W_hx if isinstance(weights, RNNWeights) else weights.W_ih
    assert W_in.shape == (gates * H, I)
    for tensor in (weights.W_hh, W_in):
        assert float(tensor.abs().max()) <= bound
        assert float(tensor.abs().max()) > 0.9 * bound  # and it fills the interval


@pytest.mark.parametrize(
    ("cell", "kind", "names"),
    [
        ("rnn", RNNWeights, ["W_hh"]),
        ("lstm", LSTMWeights, ["W_hi", "W_hf", "W_hg", "W_ho"]),
        ("gru", GRUWeights, ["W_hr", "W_hz", "W_hn"]),
    ],
)
def test_each_gate_block_is_drawn_from_the_spectrum(cell: str, kind: type, names: list) -> None:
    H = 6
    weights = random_weights(cell, H, 2, spectrum=parse_spectrum("radius:0.7"), seed=1)
    assert isinstance(weights, kind)
    blocks = weights.recurrent_blocks()
    assert list(blocks) == names
    for block in blocks.values():
        assert block.shape == (H, H)
        assert float(torch.linalg.eigvals(block).abs().max()) == pytest.approx(0.7, abs=1e-10)
    if len(blocks) > 1:  # drawn independently, not one block repeated
        first, second = list(blocks.values())[:2]
        assert not torch.equal(first, second)


@pytest.mark.parametrize("cell", list(CELLS))
def test_spectrum_may_be_a_spec_string(cell: str) -> None:
    parsed = random_weights(cell, 6, 2, spectrum=parse_spectrum("radius:0.7"), seed=1)
    named = random_weights(cell, 6, 2, spectrum="radius:0.7", seed=1)
    assert torch.equal(named.W_hh, parsed.W_hh)


def test_random_rnn_keeps_its_activation_and_dtype() -> None:
    weights = random_weights("rnn", 4, 2, activation="sigmoid", dtype=torch.float32)
    assert isinstance(weights, RNNWeights)
    assert weights.activation == "sigmoid"
    assert weights.W_hh.dtype == weights.W_hx.dtype == weights.b.dtype == torch.float32


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cell": "transformer", "hidden_size": 4, "input_size": 2}, r"`cell` must be one of rnn"),
        (
            {"cell": "rnn", "hidden_size": 0, "input_size": 2},
            r"`hidden_size` must be a whole number of at least 1, got 0",
        ),
        (
            {"cell": "gru", "hidden_size": 3, "input_size": -1},
            r"`input_size` must be a whole number of at least 1",
        ),
        (
            {"cell": "lstm", "hidden_size": 3, "input_size": 2, "spectrum": "spiral:2"},
            r"`spectrum` must be one of",
        ),
    ],
    ids=["unknown-cell", "hidden-0", "input-negative", "bad-spec-string"],
)
def test_random_weights_refuses_bad_options(kwargs: dict, match: str) -> None:
    with pytest.raises(GradtraceError, match=match):
        random_weights(**kwargs)


# ---------------------------------------------------------------- 6. bad input


def _nan_matrix() -> Tensor:
    W = torch.eye(H, dtype=DTYPE)
    W[0, 1] = W[2, 3] = float("nan")
    W[4, 4] = float("inf")
    return W


def _ones(*shape: int, dtype: torch.dtype = DTYPE) -> Tensor:
    return torch.ones(*shape, dtype=dtype)


def _run(s0: Tensor, x: Tensor) -> object:
    return replay(get_cell("rnn"), rnn_weights("tanh"), x, s0)


def _checkpoint(states: Tensor, x: Tensor) -> object:
    return checkpoint(get_cell("rnn"), rnn_weights("tanh"), x, states)


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
        lambda: weights_from_torch(nn.Linear(IN, H)),
        r"`module` must be an nn.RNN, nn.LSTM, nn.GRU, nn.RNNCell, nn.LSTMCell or nn.GRUCell, "
        r"got Linear$",
        id="from-torch-wrong-module",
    ),
    pytest.param(
        lambda: weights_from_torch(nn.TransformerEncoderLayer(4, 2)),
        r"`module` must be an nn.RNN, .*, got TransformerEncoderLayer$",
        id="from-torch-transformer",
    ),
    pytest.param(
        lambda: weights_from_torch(nn.LSTM(IN, H, num_layers=2), layer=2),
        r"`layer` must be in 0\.\.1 for this LSTM, got 2$",
        id="from-torch-layer-out-of-range",
    ),
    pytest.param(
        lambda: weights_from_torch(nn.GRU(IN, H, num_layers=2), layer=-1),
        r"`layer` must be in 0\.\.1 for this GRU, got -1$",
        id="from-torch-layer-negative",
    ),
    pytest.param(
        lambda: weights_from_torch(nn.LSTM(IN, H), direction=1),
        r"`direction` must be in 0\.\.0 for this LSTM, got 1$",
        id="from-torch-direction-one-way",
    ),
    pytest.param(
        lambda: weights_from_torch(nn.RNN(IN, H, bidirectional=True), direction=2),
        r"`direction` must be in 0\.\.1 for this RNN, got 2$",
        id="from-torch-direction-out-of-range",
    ),
    pytest.param(
        lambda: weights_from_torch(nn.GRUCell(IN, H), layer=1),
        r"`layer` must be in 0\.\.0 for this GRUCell, got 1$",
        id="from-torch-cell-layer",
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
        r"`W_proj` must have shape \(P, H = 5\)",
        id="lstm-W_proj-shape",
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
        lambda: get_cell("xyz"),
        r"`cell` must be one of rnn, lstm, gru, got 'xyz'",
        id="unknown-cell",
    ),
    pytest.param(
        lambda: cell_of("rnn"),
        r"`weights` must be RNNWeights, LSTMWeights or GRUWeights, got str$",
        id="cell-of-not-weights",
    ),
    pytest.param(
        lambda: _run(_ones(B, H), _ones(0, B, IN)),
        r"`x` must have at least one time step",
        id="replay-T-0",
    ),
    pytest.param(
        lambda: _run(_ones(B, H), _ones(6, IN)),
        r"`x` must have 3 dimensions, got shape \(6, 4\)",
        id="replay-x-2d",
    ),
    pytest.param(
        lambda: _run(_ones(B, H + 1), _ones(6, B, IN)),
        r"`s0` must have shape \(B = 3, S = 5\) to match `x` and the weights, "
        r"got shape \(3, 6\)",
        id="replay-s0-shape",
    ),
    pytest.param(
        lambda: _run(_ones(B, H), _ones(6, B, IN).index_fill(0, torch.tensor([2]), float("nan"))),
        r"`x` must be finite, got 12 NaN/Inf entries",
        id="replay-x-nan",
    ),
    pytest.param(
        lambda: _run(_ones(B, H).index_fill(1, torch.tensor([0]), float("inf")), _ones(6, B, IN)),
        r"`s0` must be finite, got 3 NaN/Inf entries",
        id="replay-s0-inf",
    ),
    pytest.param(
        lambda: _checkpoint(_ones(6, B, H + 1), _ones(6, B, IN)),
        r"`states` must have shape \(T = 6, B = 3, S = 5\) to match `x` and the weights, "
        r"got shape \(6, 3, 6\)",
        id="checkpoint-states-shape",
    ),
    pytest.param(
        lambda: _checkpoint(_ones(5, B, H), _ones(6, B, IN)),
        r"`states` must have shape \(T = 6, B = 3, S = 5\)",
        id="checkpoint-states-steps",
    ),
]


@pytest.mark.parametrize(("call", "match"), BAD_INPUTS)
def test_bad_input_raises_naming_the_argument(call: Callable[[], object], match: str) -> None:
    with pytest.raises(GradtraceError, match=match):
        call()


# ---------------------------------------------------------------- regressions


def test_regression_replay_jacobians_of_an_empty_range_has_no_rows() -> None:
    run = replay(get_cell("rnn"), rnn_weights("tanh"), _ones(6, B, IN), _ones(B, H))
    assert run.jacobians(3, 3).shape == (0, B, H, H)  # the documented (stop - start, B, S, S)


@pytest.mark.parametrize(
    ("start", "stop", "name"), [(0, 7, "stop"), (-2, None, "start")], ids=["stop-7", "start-neg"]
)
def test_regression_replay_jacobians_out_of_range_names_the_argument(
    start: int, stop: int | None, name: str
) -> None:
    run = replay(get_cell("rnn"), rnn_weights("tanh"), _ones(6, B, IN), _ones(B, H))
    with pytest.raises(GradtraceError, match=f"`{name}`"):
        run.jacobians(start, stop)


def test_regression_weights_from_torch_refuses_a_bool_layer() -> None:
    with pytest.raises(GradtraceError, match=r"`layer` must be in 0\.\.1 for this LSTM, got True"):
        weights_from_torch(nn.LSTM(IN, H, num_layers=2), layer=True)


@pytest.mark.parametrize("hidden_size", [2.5, "4"], ids=["float", "string"])
def test_regression_random_weights_refuses_a_size_that_is_not_a_whole_number(
    hidden_size: object,
) -> None:
    with pytest.raises(GradtraceError, match=r"`hidden_size` must be"):
        random_weights("rnn", hidden_size, 2)  # type: ignore[arg-type]
