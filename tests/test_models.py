"""Tests for gradtrace.models: each model's initialisation, forward and gradient picture.

References never touch gradtrace or the model's modules: each recurrence is written out here
from the model's weights (`reference_step`), float64, forward to 1e-12. Through it, autograd
gives c(k) = ||dh_T/dh_k||_2 (torch.autograd.functional.jacobian of h_T by h_k, c_k held fixed
for an LSTM) and dL/dh_k (a zero perturbation added to h_k where it is used), compared with
`gradtrace.trace` and `gradtrace.trace_step` to 1e-8 on log10 (they agree to about 1e-15), and
with the monitor's boundary norms to 1e-10 relative. Orthogonality is W^T W = I by
torch.linalg to 1e-12; the initial distributions are checked against their closed-form means
and spreads within 5 standard errors.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.autograd.functional import jacobian

import gradtrace
from gradtrace.errors import GradtraceError
from gradtrace.models import MODELS, LoopRNN, SequenceModel, build_model, describe

DTYPE = torch.float64
B, T, I, H, O = 3, 6, 2, 5, 2
T_MAX = 10
LOG_ATOL = 1e-8
NAMES = list(MODELS)
FUSED = [n for n in NAMES if n not in ("sigmoid", "skip")]
CELLS = {torch.nn.RNN: "rnn", torch.nn.LSTM: "lstm", torch.nn.GRU: "gru"}


def make(name: str, seed: int = 0, **options: Any) -> SequenceModel:
    return build_model(name, I, H, O, t_max=T_MAX, seed=seed, dtype=DTYPE, **options)


def data(seed: int = 0) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, I, generator=gen, dtype=DTYPE)
    return x, torch.randn(B, T, O, generator=gen, dtype=DTYPE)


def loss_of(out: Tensor, y: Tensor) -> Tensor:
    """A loss of every step's output, weighted so that no two steps count alike."""
    weights = torch.linspace(0.5, 1.5, out.shape[1], dtype=out.dtype).view(1, -1, 1)
    return (weights * (out - y).pow(2)).sum()


# ---------------------------------------------------------------- the reference recurrences


def reference_step(model: SequenceModel, x_t: Tensor, s: Any) -> Any:
    """One step of the model's recurrence written from its weights: x_t (B, I), s -> s."""
    core = model.core
    sig = torch.sigmoid
    if isinstance(core, LoopRNN):
        a = s @ core.weight_hh.T + x_t @ core.weight_ih.T + core.bias
        if model.name == "sigmoid":
            return sig(a)
        return s + 0.1 * torch.tanh(a)  # skip, eps = 0.1 (the default)
    gi = x_t @ core.weight_ih_l0.T + core.bias_ih_l0
    if isinstance(core, nn.LSTM):
        h, c = s
        i, f, g, o = (gi + h @ core.weight_hh_l0.T + core.bias_hh_l0).chunk(4, dim=-1)
        c = sig(f) * c + sig(i) * torch.tanh(g)
        return sig(o) * torch.tanh(c), c
    gh = s @ core.weight_hh_l0.T + core.bias_hh_l0
    if isinstance(core, nn.GRU):
        r_i, z_i, n_i = gi.chunk(3, dim=-1)
        r_h, z_h, n_h = gh.chunk(3, dim=-1)
        r, z = sig(r_i + r_h), sig(z_i + z_h)
        n = torch.tanh(n_i + r * n_h)
        return (1 - z) * n + z * s
    assert isinstance(core, nn.RNN)
    return torch.tanh(gi + gh) if core.nonlinearity == "tanh" else torch.relu(gi + gh)


def h_of(s: Any) -> Tensor:
    return s[0] if isinstance(s, tuple) else s


def with_h(s: Any, h: Tensor) -> Any:
    return (h, s[1]) if isinstance(s, tuple) else h


def zero_state(model: SequenceModel) -> Any:
    h = torch.zeros(B, H, dtype=DTYPE)
    return (h, h.clone()) if isinstance(model.core, nn.LSTM) else h


def reference_run(model: SequenceModel, x: Tensor, y: Tensor) -> tuple[Tensor, list[Any], Tensor]:
    """The outputs (B, T, O), the detached states s_0..s_T, and dL/dh_k (T + 1, B, H)."""
    deltas = [torch.zeros(B, H, dtype=DTYPE, requires_grad=True) for _ in range(T + 1)]
    s = with_h(zero_state(model), deltas[0])
    states, hs = [s], []
    for t in range(T):
        s = reference_step(model, x[:, t], s)
        s = with_h(s, h_of(s) + deltas[t + 1])
        states.append(s)
        hs.append(h_of(s))
    out = torch.stack(hs, dim=1) @ model.readout.weight.T + model.readout.bias  # (B, T, O)
    grads = torch.autograd.grad(loss_of(out, y), deltas)
    detached = [
        tuple(p.detach() for p in s) if isinstance(s, tuple) else s.detach() for s in states
    ]
    return out.detach(), detached, torch.stack(grads)


def reference_curve(model: SequenceModel, x: Tensor, states: list[Any]) -> Tensor:
    """log10 ||dh_T/dh_k||_2, k = 0..T-1, by autograd through the reference, (B, T)."""
    curve = []
    for k in range(T):

        def final_h(h: Tensor, k: int = k) -> Tensor:
            s = with_h(states[k], h)
            for t in range(k, T):
                s = reference_step(model, x[:, t], s)
            return h_of(s)

        J = jacobian(final_h, h_of(states[k]))  # (B, H, B, H)
        J = torch.einsum("bibj->bij", J)  # (B, H, H): rows are independent
        curve.append(torch.log10(torch.linalg.matrix_norm(J, ord=2)))
    return torch.stack(curve, dim=1)


def log10_norms(grads: Tensor) -> Tensor:
    return torch.log10(torch.linalg.vector_norm(grads, dim=-1)).T  # (B, T + 1)


# ---------------------------------------------------------------- initialisation


def test_irnn_is_identity_zero_biases_and_small_gaussian_inputs() -> None:
    model = build_model("irnn", 40, 50, 1, dtype=DTYPE)
    rnn = model.core
    assert torch.equal(rnn.weight_hh_l0, torch.eye(50, dtype=DTYPE))
    assert torch.equal(rnn.bias_ih_l0, torch.zeros(50, dtype=DTYPE))
    assert torch.equal(rnn.bias_hh_l0, torch.zeros(50, dtype=DTYPE))
    assert rnn.nonlinearity == "relu"
    w = rnn.weight_ih_l0.detach().flatten()
    n = w.numel()  # 2000 draws of N(0, 0.001^2)
    # standard errors: mean sigma / sqrt(n), std about sigma / sqrt(2 n)
    assert abs(float(w.mean())) < 5 * 0.001 / math.sqrt(n)
    assert abs(float(w.std()) / 0.001 - 1) < 5 / math.sqrt(2 * n)


def test_lstm_forget_bias_is_exactly_one_and_other_gates_pytorch_default() -> None:
    model = build_model("lstm", 3, 64, 1, dtype=DTYPE)
    lstm, h = model.core, 64
    bound = 1 / math.sqrt(h)  # PyTorch's U(-1/sqrt(H), 1/sqrt(H))
    b_ih, b_hh = lstm.bias_ih_l0.detach(), lstm.bias_hh_l0.detach()
    forget = slice(h, 2 * h)
    assert torch.equal((b_ih + b_hh)[forget], torch.ones(h, dtype=DTYPE))
    assert torch.equal(b_hh[forget], torch.zeros(h, dtype=DTYPE))
    for gate in (0, 2, 3):  # i, g, o: both vectors as PyTorch draws them
        for b in (b_ih, b_hh):
            part = b[gate * h : (gate + 1) * h]
            assert float(part.abs().max()) <= bound
            assert float(part.max()) > bound / 2 and float(part.min()) < -bound / 2


def test_lstm_forget_bias_exact_in_float32() -> None:
    lstm = build_model("lstm", 3, 8, 1).core
    assert lstm.bias_ih_l0.dtype == torch.float32
    assert torch.equal((lstm.bias_ih_l0 + lstm.bias_hh_l0)[8:16], torch.ones(8))


def test_chrono_biases_are_log_uniform_written_once() -> None:
    h, t_max = 400, 20
    lstm = build_model("lstm-chrono", 3, h, 1, t_max=t_max, dtype=DTYPE).core
    b_ih, b_hh = lstm.bias_ih_l0.detach(), lstm.bias_hh_l0.detach()
    effective = b_ih + b_hh
    b_i, b_f = effective[:h], effective[h : 2 * h]
    assert torch.equal(b_hh[: 2 * h], torch.zeros(2 * h, dtype=DTYPE))  # written once
    assert torch.equal(b_i, -b_f)
    assert float(b_f.min()) >= 0 and float(b_f.max()) <= math.log(t_max - 1)
    u = torch.exp(b_f)  # U(1, t_max - 1): mean t_max / 2, std (t_max - 2) / sqrt(12)
    assert abs(float(u.mean()) - t_max / 2) < 5 * (t_max - 2) / math.sqrt(12 * h)
    bound = 1 / math.sqrt(h)
    assert float(effective[2 * h :].abs().max()) <= 2 * bound  # g, o: PyTorch's, two draws


@pytest.mark.parametrize("t_max", [None, 2, 2.5, True, "10"], ids=repr)
def test_chrono_refuses_a_missing_or_short_t_max(t_max: Any) -> None:
    with pytest.raises(GradtraceError, match=r"^`t_max` must be .* at least 3 for lstm-chrono"):
        build_model("lstm-chrono", 2, 4, 1, t_max=t_max)


@pytest.mark.parametrize("name", ["orthogonal", "orthogonal-constrained"])
def test_orthogonal_recurrent_weight(name: str) -> None:
    W = make(name).core.weight_hh_l0.detach()
    assert torch.allclose(W.T @ W, torch.eye(H, dtype=DTYPE), rtol=0, atol=1e-12)


def test_constrained_stays_orthogonal_after_adam_steps() -> None:
    model = make("orthogonal-constrained")
    assert "core.parametrizations.weight_hh_l0.original" in dict(model.named_parameters())
    W0 = model.core.weight_hh_l0.detach().clone()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    x, y = data()
    for _ in range(5):
        loss_of(model(x), y).backward()
        optimizer.step()
        optimizer.zero_grad()
    W = model.core.weight_hh_l0.detach()
    assert float((W - W0).abs().max()) > 1e-2  # it trained
    assert torch.allclose(W.T @ W, torch.eye(H, dtype=DTYPE), rtol=0, atol=1e-12)
    out, _, _ = reference_run(model, x, y)  # the fused kernel uses the current W_hh
    torch.testing.assert_close(model(x).detach(), out, rtol=0, atol=1e-12)


def test_unconstrained_orthogonal_drifts_under_training() -> None:
    """The contrast to the constrained model: plain training leaves W_hh non-orthogonal."""
    model = make("orthogonal")
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    x, y = data()
    for _ in range(5):
        loss_of(model(x), y).backward()
        optimizer.step()
        optimizer.zero_grad()
    W = model.core.weight_hh_l0.detach()
    assert float((W.T @ W - torch.eye(H, dtype=DTYPE)).abs().max()) > 1e-3


@pytest.mark.parametrize("name", ["tanh", "relu", "sigmoid", "gru", "skip"])
def test_default_uniform_bounds(name: str) -> None:
    model = build_model(name, 3, 100, 50, dtype=DTYPE)
    bound = 1 / math.sqrt(100)  # the core's and the readout's fan-in is H
    for param in model.parameters():
        w = param.detach()  # at least 50 draws of U(-bound, bound) each
        assert float(w.abs().max()) <= bound
        assert float(w.max()) > bound / 2 and float(w.min()) < -bound / 2


# ---------------------------------------------------------------- seeds


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_weights_different_seed_different(name: str) -> None:
    state = torch.get_rng_state()
    a, b, c = make(name, seed=4), make(name, seed=4), make(name, seed=5)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator never moved
    pairs = list(zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert all(torch.equal(p, q) for p, q in pairs)
    gen = make(name, generator=torch.Generator().manual_seed(4))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), gen.parameters(), strict=True))
    assert any(not torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters(), strict=True))


@pytest.mark.parametrize("name", NAMES)
def test_float32_is_the_float64_draw_rounded(name: str) -> None:
    single = build_model(name, I, H, O, t_max=T_MAX, seed=2)
    double = make(name, seed=2)
    for p32, p64 in zip(single.parameters(), double.parameters(), strict=True):
        assert p32.dtype == torch.float32
        assert torch.equal(p32, p64.float())


# ---------------------------------------------------------------- forward and step


@pytest.mark.parametrize("name", NAMES)
def test_forward_and_step_match_the_reference_recurrence(name: str) -> None:
    model = make(name)
    x, y = data()
    out, states, _ = reference_run(model, x, y)
    torch.testing.assert_close(model(x).detach(), out, rtol=0, atol=1e-12)
    s = model.initial_state(B)
    stepped = []
    for t in range(T):
        s = model.step(x[:, t], s)
        stepped.append(s)
        torch.testing.assert_close(h_of(s).detach(), h_of(states[t + 1]), rtol=0, atol=1e-12)
    stacked: Any = (
        tuple(torch.stack(parts) for parts in zip(*stepped, strict=True))
        if isinstance(s, tuple)
        else torch.stack(stepped)
    )
    torch.testing.assert_close(model.output(stacked).detach(), out, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- the gradient picture


@pytest.mark.parametrize("name", FUSED)
def test_trace_matches_autograd(name: str) -> None:
    model = make(name)
    x, y = data()
    _, states, grads = reference_run(model, x, y)
    result = gradtrace.trace(model, x, loss_fn=lambda out: loss_of(out, y))
    assert len(result.layers) == 1
    flow = result.layers[0]
    cell = next(c for t, c in CELLS.items() if isinstance(model.core, t))  # parametrised too
    assert (flow.module, flow.layer, flow.cell) == ("core", 0, cell)
    curve = reference_curve(model, x, states)
    torch.testing.assert_close(flow.log10_norm, curve, rtol=0, atol=LOG_ATOL)
    assert flow.loss_grad_log10 is not None
    torch.testing.assert_close(flow.loss_grad_log10, log10_norms(grads), rtol=0, atol=LOG_ATOL)


@pytest.mark.parametrize("name", NAMES)
def test_trace_step_matches_autograd(name: str) -> None:
    model = make(name)
    x, y = data()
    _, states, grads = reference_run(model, x, y)
    flow = gradtrace.trace_step(
        model.step,
        x.transpose(0, 1),  # (T, B, I)
        model.initial_state(B),
        loss_fn=lambda s: loss_of(model.output(s), y),
    )
    curve = reference_curve(model, x, states)
    torch.testing.assert_close(flow.log10_norm, curve, rtol=0, atol=LOG_ATOL)
    assert flow.loss_grad_log10 is not None
    torch.testing.assert_close(flow.loss_grad_log10, log10_norms(grads), rtol=0, atol=LOG_ATOL)


def test_loops_are_not_seen_by_trace() -> None:
    x, _ = data()
    for name in ("sigmoid", "skip"):
        model = make(name)
        assert not model.fused
        with pytest.raises(GradtraceError):
            gradtrace.trace(model, x)


@pytest.mark.parametrize("name", NAMES)
def test_monitor_records_each_model(name: str) -> None:
    model = make(name)
    x, y = data()
    _, _, grads = reference_run(model, x, y)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    monitor = gradtrace.Monitor(model, optimizer, every=gradtrace.every(1), chunk=3)
    with monitor.step(0) as s:
        s.loss(loss_of(model(x), y)).backward()
        grad_norm = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in model.parameters()))
        optimizer.step()
        optimizer.zero_grad()
    monitor.close()
    record = monitor.history[-1]
    assert record.grad_norm == pytest.approx(grad_norm, rel=1e-12)
    assert [p.name for p in record.parameters] == [n for n, _ in model.named_parameters()]
    if not model.fused:
        assert record.profiles == ()  # the monitor profiles nn.RNN / LSTM / GRU only
        return
    (profile,) = record.profiles
    assert (profile.module, profile.boundaries) == ("core", (3, 6))
    norms = torch.linalg.vector_norm(grads.flatten(1), dim=1)  # ||dL/dh_k|| over the batch
    torch.testing.assert_close(profile.total, norms[[3, 6]], rtol=1e-10, atol=0)
    assert profile.initial == pytest.approx(float(norms[0]), rel=1e-10)


# ---------------------------------------------------------------- refusals and words


def test_unknown_name_lists_the_models() -> None:
    with pytest.raises(GradtraceError, match=r"^`name` must be one of tanh, relu, .*, got 'lstn'$"):
        build_model("lstn", 2, 4, 1)


@pytest.mark.parametrize("arg", ["input_size", "hidden_size", "output_size"])
@pytest.mark.parametrize("value", [0, -3, 2.5, True, "4"], ids=repr)
def test_bad_sizes_are_refused(arg: str, value: Any) -> None:
    sizes: dict[str, Any] = {"input_size": 2, "hidden_size": 4, "output_size": 1, arg: value}
    message = rf"^`{arg}` must be a whole number of at least 1, got {value!r}$"
    with pytest.raises(GradtraceError, match=message):
        build_model("tanh", **sizes)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"name": "skip", "eps": 0.0}, r"^`eps` must be a finite number above 0"),
        ({"name": "skip", "eps": math.inf}, r"^`eps` must be a finite number above 0"),
        ({"dtype": torch.int64}, r"^`dtype` must be a real floating-point"),
        ({"seed": -1}, r"^`seed` must be a whole number"),
        ({"seed": 3, "generator": torch.Generator()}, r"^give `seed` or `generator`, not both"),
        ({"generator": 7}, r"^`generator` must be a CPU torch.Generator"),
    ],
    ids=["eps-zero", "eps-inf", "dtype", "seed", "seed-and-generator", "generator"],
)
def test_bad_options_are_refused(options: dict[str, Any], message: str) -> None:
    name = options.pop("name", "tanh")
    with pytest.raises(GradtraceError, match=message):
        build_model(name, 2, 4, 1, **options)


def test_forward_refuses_a_wrong_input() -> None:
    with pytest.raises(GradtraceError, match=r"^`x` must have shape \(B, T, I = 2\), got \(6, 3\)"):
        make("lstm")(torch.zeros(6, 3, dtype=DTYPE))


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("irnn", "Le, Jaitly, Hinton 2015"),
        ("lstm", "forget-gate bias exactly 1"),
        ("lstm-chrono", "Tallec & Ollivier 2018"),
        ("orthogonal-constrained", "parametrizations.orthogonal"),
        ("skip", "h_t = h_{t-1} + eps tanh"),
        ("sigmoid", "sigmoid"),
    ],
)
def test_describe_states_the_initialisation(name: str, words: str) -> None:
    assert words in describe(name)
    assert "\n" not in describe(name)


def test_every_model_is_described() -> None:
    assert all(describe(name) for name in MODELS)
    with pytest.raises(GradtraceError, match=r"^`name` must be one of"):
        describe("nope")
