"""Tests for gradtrace.tracing.sensitivity and gradtrace.tracing.stepwise.

References, all float64: torch.autograd.functional.jacobian of the model's last output by its
whole input, whose (b, :, k, b, :) blocks are dy_T/dx_k (1e-10 on log10); torch.autograd.grad
of the loss by the input; and for a step function the cells' analytic Jacobians (independent
of the autograd ones the trace takes) and autograd through the unrolled recurrence.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn
from torch.autograd.functional import jacobian

import gradtrace
from gradtrace.cells import get_cell, replay
from gradtrace.cells.random_weights import random_weights
from gradtrace.core.engine import contribution_curve
from gradtrace.core.gradient_profile import loss_gradient_profile
from gradtrace.errors import GradtraceError
from gradtrace.tracing import input_sensitivity, trace_step

DTYPE = torch.float64
T, B, IN = 6, 2, 4
ATOL = 1e-10


def transformer() -> nn.Module:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(IN, 2, 8, dropout=0.0, dtype=DTYPE)
    return nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()


def fused_lstm() -> nn.Module:
    torch.manual_seed(1)
    return nn.LSTM(IN, 3, num_layers=2, dtype=DTYPE)  # one ATen kernel for all steps


def conv() -> nn.Module:
    torch.manual_seed(2)

    class Temporal(nn.Module):  # a causal temporal convolution over (B, T, I)
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(IN, 3, kernel_size=3, padding=2, dtype=DTYPE)

        def forward(self, x: Tensor) -> Tensor:
            return torch.tanh(self.conv(x.transpose(1, 2))[..., : x.shape[1]]).transpose(1, 2)

    return Temporal()


def inputs(batch_first: bool = False) -> Tensor:
    x = torch.randn(T, B, IN, generator=torch.Generator().manual_seed(3), dtype=DTYPE)
    return x.transpose(0, 1) if batch_first else x


def first(output: object) -> Tensor:
    return output[0] if isinstance(output, tuple) else output  # type: ignore[return-value]


MODELS: dict[str, tuple[Callable[[], nn.Module], bool]] = {
    "transformer-encoder": (transformer, False),
    "fused-lstm": (fused_lstm, False),
    "temporal-conv-batch-first": (conv, True),
}


@pytest.mark.parametrize("name", MODELS)
def test_input_sensitivity_equals_autograd(name: str) -> None:
    build, batch_first = MODELS[name]
    model, x = build(), inputs(batch_first)

    def last(x: Tensor) -> Tensor:
        y = first(model(x))
        return y[:, -1] if batch_first else y[-1]  # (B, O)

    full = jacobian(last, x)  # (B, O, T, B, I) or (B, O, B, T, I)
    blocks = torch.einsum("bobti->btoi" if batch_first else "botbi->btoi", full)  # (B, T, O, I)
    expected = torch.log10(torch.linalg.matrix_norm(blocks, ord=2))  # (B, T)
    profile = input_sensitivity(model, x, batch_first=batch_first)
    assert profile.quantity == "dy_T/dx_k"
    torch.testing.assert_close(profile.log10_norm, expected, atol=ATOL, rtol=0)


def test_loss_sensitivity_equals_autograd_for_a_fused_lstm() -> None:
    model, x = fused_lstm(), inputs()
    target = torch.randn(T, B, 3, generator=torch.Generator().manual_seed(4), dtype=DTYPE)
    loss_fn = nn.MSELoss()
    leaf = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss_fn(model(leaf)[0], target), leaf)
    profile = input_sensitivity(model, x, loss_fn=lambda out, y: loss_fn(out[0], y), target=target)
    assert profile.quantity == "dL/dx_k"
    torch.testing.assert_close(
        profile.log10_norm, torch.log10(grad.norm(dim=-1)).T, atol=ATOL, rtol=0
    )


@pytest.mark.parametrize("metric", ["frobenius", "maxabs"])
def test_other_metrics_measure_the_same_blocks(metric: str) -> None:
    model, x = fused_lstm(), inputs()
    full = jacobian(lambda x: model(x)[0][-1], x)  # (B, O, T, B, I)
    blocks = torch.einsum("botbi->btoi", full)
    if metric == "maxabs":
        expected = blocks.abs().amax(dim=(-2, -1))
    else:
        expected = torch.linalg.matrix_norm(blocks)
    profile = input_sensitivity(model, x, metric=metric)
    torch.testing.assert_close(profile.log10_norm, torch.log10(expected), atol=ATOL, rtol=0)


# ---------------------------------------------------------------- a user's step function


@pytest.mark.parametrize("cell_name", ["rnn", "lstm", "gru"])
def test_step_function_trace_equals_the_analytic_cell(cell_name: str) -> None:
    # trace_step takes autograd Jacobians of the step; the reference takes the cells'
    # analytic ones through the same engine (1e-10).
    cell = get_cell(cell_name)
    weights = random_weights(cell_name, 3, IN, seed=5)
    x = inputs()
    s0 = torch.zeros(B, weights.state_size, dtype=DTYPE)
    J = replay(cell, weights, x, s0).jacobians()  # (T, B, S, S)
    rec = trace_step(lambda x_t, s: cell.step(weights, x_t, s), x, s0, lyapunov="full")
    assert (rec.cell, rec.module) == ("step", "step")
    torch.testing.assert_close(rec.log10_norm, contribution_curve(J).log10_norm, atol=ATOL, rtol=0)
    assert rec.lyapunov is not None
    assert rec.lyapunov.exponents.shape == (B, weights.state_size)


def test_step_function_curve_and_loss_profile_equal_autograd_through_the_unrolled_map() -> None:
    # A leaky recurrence no cell implements; reference: autograd Jacobian of h_T by h_k through
    # the unrolled steps, and the engine's loss profile from the analytic-free dL/dh_T.
    gen = torch.Generator().manual_seed(6)
    W = torch.randn(3, 3, generator=gen, dtype=DTYPE)
    U = torch.randn(3, IN, generator=gen, dtype=DTYPE)

    def step(x_t: Tensor, h: Tensor) -> Tensor:
        return 0.7 * h + 0.5 * torch.tanh(h @ W.T + x_t @ U.T)

    x, s0 = inputs(), torch.full((B, 3), 0.1, dtype=DTYPE)
    states = [s0]
    for x_t in x:
        states.append(step(x_t, states[-1]))
    curve = []
    for k in range(T):

        def unrolled(h: Tensor, k: int = k) -> Tensor:
            for x_t in x[k:]:
                h = step(x_t, h)
            return h

        J = torch.einsum("bibj->bij", jacobian(unrolled, states[k]))
        curve.append(torch.log10(torch.linalg.matrix_norm(J, ord=2)))
    rec = trace_step(step, x, s0, loss_fn=lambda states: states[-1].pow(2).sum())
    torch.testing.assert_close(rec.log10_norm, torch.stack(curve, 1), atol=ATOL, rtol=0)
    h_T = states[-1].clone().requires_grad_(True)
    (g_T,) = torch.autograd.grad(h_T.pow(2).sum(), h_T)
    step_J = torch.stack(
        [
            torch.einsum("bibj->bij", jacobian(lambda h, t=t: step(x[t], h), states[t]))
            for t in range(T)
        ]
    )
    expected = loss_gradient_profile(step_J, g_T).log10_norm
    assert rec.loss_grad_log10 is not None
    torch.testing.assert_close(rec.loss_grad_log10, expected, atol=ATOL, rtol=0)


def test_a_loss_of_every_step_equals_autograd_by_perturbation() -> None:
    # L = sum_t w_t ||h_t||^2 reads every step's state; reference: a zero perturbation added
    # to h_k inside the unrolled loop, dL/d delta_k = the whole gradient at h_k (1e-10).
    gen = torch.Generator().manual_seed(9)
    W = torch.randn(3, 3, generator=gen, dtype=DTYPE)
    U = torch.randn(3, IN, generator=gen, dtype=DTYPE)
    weights = torch.linspace(0.5, 2.0, T, dtype=DTYPE).view(T, 1, 1)

    def step(x_t: Tensor, h: Tensor) -> Tensor:
        return torch.tanh(h @ W.T + x_t @ U.T)

    def loss_fn(states: Tensor) -> Tensor:  # (T, B, S)
        return (weights * states.pow(2)).sum()

    x, s0 = inputs(), torch.full((B, 3), 0.2, dtype=DTYPE)
    rec = trace_step(step, x, s0, loss_fn=loss_fn)
    deltas = [torch.zeros(B, 3, dtype=DTYPE, requires_grad=True) for _ in range(T + 1)]
    h, outputs = s0 + deltas[0], []
    for t in range(T):
        h = step(x[t], h) + deltas[t + 1]
        outputs.append(h)
    grads = torch.autograd.grad(loss_fn(torch.stack(outputs)), deltas)
    expected = torch.log10(torch.stack(grads).norm(dim=-1)).T  # (B, T + 1)
    assert rec.loss_grad_log10 is not None
    torch.testing.assert_close(rec.loss_grad_log10, expected, atol=ATOL, rtol=0)


def test_an_lstm_cell_is_a_step_and_its_h_block_is_measured() -> None:
    # nn.LSTMCell takes and returns (h, c); block "h" measures dh_T/dh_k with c_k held fixed,
    # "full" the whole d(h_T, c_T)/d(h_k, c_k). References: autograd through the cell itself.
    torch.manual_seed(12)
    cell = nn.LSTMCell(IN, 3, dtype=DTYPE)
    x = inputs()
    gen = torch.Generator().manual_seed(2)
    s0 = (0.5 * torch.randn(B, 3, generator=gen, dtype=DTYPE),) * 2
    states = [s0]
    with torch.no_grad():
        for x_t in x:
            states.append(cell(x_t, states[-1]))
    h_curve, full_curve = [], []
    for k in range(T):

        def unrolled(h: Tensor, c: Tensor, k: int = k) -> Tensor:
            state = (h, c)
            for x_t in x[k:]:
                state = cell(x_t, state)
            return torch.cat(state, dim=-1)

        Jh, Jc = jacobian(unrolled, states[k])  # each (B, 6, B, 3)
        full = torch.cat([torch.einsum("bibj->bij", Jh), torch.einsum("bibj->bij", Jc)], -1)
        h_curve.append(torch.log10(torch.linalg.matrix_norm(full[:, :3, :3], ord=2)))
        full_curve.append(torch.log10(torch.linalg.matrix_norm(full, ord=2)))
    rec_h = trace_step(cell, x, s0)  # block "h" by default
    rec_full = trace_step(cell, x, s0, block="full")
    torch.testing.assert_close(rec_h.log10_norm, torch.stack(h_curve, 1), atol=ATOL, rtol=0)
    torch.testing.assert_close(rec_full.log10_norm, torch.stack(full_curve, 1), atol=ATOL, rtol=0)
    assert (rec_h.hidden_size, rec_h.state_size) == (3, 6)


def test_step_theory_is_the_largest_step_norm_and_spectral_radius() -> None:
    # References: torch.linalg's spectral norm and eigenvalues of every autograd step
    # Jacobian (1e-12 relative).
    gen = torch.Generator().manual_seed(4)
    W = 0.6 * torch.randn(3, 3, generator=gen, dtype=DTYPE)

    def step(x_t: Tensor, h: Tensor) -> Tensor:
        return torch.tanh(h @ W.T + x_t[:, :3])

    x, s0 = inputs(), torch.zeros(B, 3, dtype=DTYPE)
    rec = trace_step(step, x, s0)
    states = [s0]
    for x_t in x:
        states.append(step(x_t, states[-1]))
    J = torch.stack(
        [
            torch.einsum("bibj->bij", jacobian(lambda h, t=t: step(x[t], h), states[t]))
            for t in range(T)
        ]
    )  # (T, B, 3, 3)
    sigma = float(torch.linalg.matrix_norm(J, ord=2).max())
    rho = float(torch.linalg.eigvals(J).abs().max())
    assert rec.theory.sigma_max == pytest.approx(sigma, rel=1e-12)
    assert rec.theory.spectral_radius == pytest.approx(rho, rel=1e-12)
    assert f"norms up to {sigma:.3g}" in rec.note


# ---------------------------------------------------------------- vocabulary-sized outputs


class Vocabulary(nn.Module):
    """An LSTM language-model head with a 10,000-way output, as sequence-to-logits."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.lstm = nn.LSTM(IN, 16, dtype=DTYPE)
        self.decoder = nn.Linear(16, 10_000, dtype=DTYPE)

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.lstm(x)[0])  # (T, B, 10000)


def test_units_and_a_projection_equal_the_rows_of_the_full_jacobian() -> None:
    model, x = fused_lstm(), inputs()
    full = jacobian(lambda x: model(x)[0][-1], x)  # (B, O, T, B, I)
    blocks = torch.einsum("botbi->btoi", full)  # (B, T, O, I)
    units = input_sensitivity(model, x, units=[0, 2])
    torch.testing.assert_close(
        units.log10_norm,
        torch.log10(torch.linalg.matrix_norm(blocks[:, :, [0, 2]], ord=2)),
        atol=ATOL,
        rtol=0,
    )
    R = torch.tensor([[1.0, -1.0, 0.5]], dtype=DTYPE)
    projected = input_sensitivity(model, x, projection=R, metric="frobenius")
    expected = torch.linalg.matrix_norm(torch.einsum("ro,btoi->btri", R, blocks))
    torch.testing.assert_close(projected.log10_norm, torch.log10(expected), atol=ATOL, rtol=0)
    assert units.quantity == projected.quantity == "R dy_T/dx_k"


def test_a_loss_over_a_10000_way_output_is_one_backward_pass() -> None:
    model = Vocabulary()
    x = torch.randn(30, 4, IN, generator=torch.Generator().manual_seed(3), dtype=DTYPE)
    target = torch.randint(0, 10_000, (30 * 4,), generator=torch.Generator().manual_seed(4))

    def loss_fn(out: Tensor, y: Tensor) -> Tensor:
        return nn.functional.cross_entropy(out.reshape(-1, 10_000), y)

    passes = []
    hook = model.decoder.register_full_backward_hook(lambda *a: passes.append(1))
    profile = input_sensitivity(model, x, loss_fn=loss_fn, target=target)
    hook.remove()
    assert passes == [1]  # one backward pass, whatever the output's size
    leaf = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss_fn(model(leaf), target), leaf)
    torch.testing.assert_close(
        profile.log10_norm, torch.log10(grad.norm(dim=-1)).T, atol=ATOL, rtol=0
    )


def test_without_a_loss_a_10000_way_output_is_refused_over_the_budget() -> None:
    model = Vocabulary()
    x = torch.randn(30, 4, IN, generator=torch.Generator().manual_seed(3), dtype=DTYPE)
    passes = []
    hook = model.decoder.register_full_backward_hook(lambda *a: passes.append(1))
    with gradtrace.budget(max_seconds=1), pytest.raises(GradtraceError) as err:
        input_sensitivity(model, x)
    hook.remove()
    message = str(err.value)
    assert "10000 backward passes" in message and "`loss_fn`" in message and "`units`" in message
    assert message.count(". ") == 0 and len(passes) <= 2  # one sentence, priced by two passes


class BatchFirstTagger(nn.Module):
    """A GRU that reads (B, T, I), as it declares, with a linear head: y = head(out)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.gru = nn.GRU(IN, 3, batch_first=True, dtype=DTYPE)
        self.head = nn.Linear(3, 2, dtype=DTYPE)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.gru(x)[0])


def test_the_layout_a_model_declares_is_the_default() -> None:
    # nn.GRU(batch_first=True): inputs (B, T, I) are read as (B, T, I) without being told
    # (they were read as (T, B, I): a (T, B) profile of the wrong y_T, silently). Reference:
    # autograd of y_T = y[:, -1] by each x_k, spectral norm per (b, k), 1e-10.
    model, x = BatchFirstTagger(), inputs(batch_first=True)  # (B, T, I)
    profile = input_sensitivity(model, x)
    full = jacobian(lambda x: model(x)[:, -1], x)  # (B, O, B, T, I)
    blocks = torch.einsum("bobti->btoi", full)
    expected = torch.log10(torch.linalg.matrix_norm(blocks, ord=2))  # (B, T)
    torch.testing.assert_close(profile.log10_norm, expected, atol=ATOL, rtol=0)
    told = input_sensitivity(model, x, batch_first=False)
    assert told.log10_norm.shape == (T, B)  # told otherwise, it does as told


def scripted(module: nn.Module) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():  # torch.jit.script is deprecated, still what people save
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(module)


def test_a_scripted_recurrent_module_is_measured_like_the_eager_one() -> None:
    model, x = fused_lstm(), inputs()
    scripted_profile = input_sensitivity(scripted(model), x)
    reference = input_sensitivity(model, x).log10_norm
    torch.testing.assert_close(scripted_profile.log10_norm, reference, atol=ATOL, rtol=0)


# ---------------------------------------------------------------- refusals

REFUSALS: dict[str, tuple[Callable[[], object], str]] = {
    "token-ids": (
        lambda: input_sensitivity(fused_lstm(), torch.zeros(T, B, IN, dtype=torch.long)),
        "must be floating point",
    ),
    "two-dimensional": (
        lambda: input_sensitivity(fused_lstm(), torch.zeros(T, IN, dtype=DTYPE)),
        r"must have shape \(T, B, I\)",
    ),
    "non-finite": (
        lambda: input_sensitivity(fused_lstm(), inputs() / 0.0),
        "must be finite",
    ),
    "batch-mismatch": (
        lambda: input_sensitivity(fused_lstm(), inputs(), output=lambda out: out[0][-1, :1]),
        r"y_T of shape \(B = 2, O\)",
    ),
    "units-not-whole": (
        lambda: input_sensitivity(fused_lstm(), inputs(), units=[1.5]),
        r"^`units` must be whole-number indices of output units, got 1\.5$",
    ),
    "units-a-string": (
        lambda: input_sensitivity(fused_lstm(), inputs(), units="abc"),
        r"^`units` must be whole-number indices of output units, got 'abc'$",
    ),
    "projection-a-list": (
        lambda: input_sensitivity(fused_lstm(), inputs(), projection=[[1.0] * 3]),
        r"^`projection` must be an \(R, O = 3\) tensor, got list$",
    ),
    "scripted-metric": (
        lambda: gradtrace.trace(scripted(fused_lstm()), inputs(), metric="l1"),
        r"^`metric` must be one of spectral, frobenius, maxabs, got 'l1'$",
    ),
    "step-changes-shape": (
        lambda: trace_step(lambda x, h: h[:, :1], inputs(), torch.zeros(B, 3, dtype=DTYPE)),
        "`step` must return the state's shape",
    ),
    "initial-state-batch-mismatch": (
        lambda: trace_step(lambda x, h: h, inputs(), torch.zeros(B + 1, 3, dtype=DTYPE)),
        r"`s0` must have shape \(B = 2, S\), got \(3, 3\)",
    ),
}


@pytest.mark.parametrize("name", REFUSALS)
def test_bad_input_is_refused_in_one_sentence(name: str) -> None:
    call, message = REFUSALS[name]
    with pytest.raises(GradtraceError, match=message) as err:
        call()
    assert "\n" not in str(err.value)
