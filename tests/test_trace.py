"""Tests for gradtrace.tracing: traced curves against autograd through PyTorch's own modules.

Everything runs in float64. The reference for c(k) never touches gradtrace: for every k the
module runs over the first k steps to give the state h_k, then h_k becomes a leaf, the module
runs on from it over the rest of the sequence, and torch.autograd.functional.jacobian gives
dh_T/dh_k of its final hidden state h_n. Layer l is compared as its own recurrence
dh^l_T/dh^l_k with the layers below held fixed: a copy of the module with layers 0..l-1 gives
layer l's input, and a one-layer copy with layer l's parameters runs the recurrence. Tolerance:
1e-8 on log10 c(k) (the two sides agree to about 1e-14).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from itertools import product

import pytest
import torch
from torch import Tensor, nn
from torch.autograd.functional import jacobian

from gradtrace.core.lyapunov import backward_frame, lyapunov_spectrum, start_frame
from gradtrace.errors import GradtraceError
from gradtrace.records import FixedPoints
from gradtrace.tracing import layer_fixed_points, trace

DTYPE = torch.float64
T, B, IN, H, P = 5, 2, 3, 3, 2  # time, batch, input, hidden, projection
ATOL = 1e-8

MODULES: dict[str, Callable[..., nn.RNNBase]] = {
    "rnn-tanh": lambda **kw: nn.RNN(IN, H, nonlinearity="tanh", **kw),
    "rnn-relu": lambda **kw: nn.RNN(IN, H, nonlinearity="relu", **kw),
    "lstm": lambda **kw: nn.LSTM(IN, H, **kw),
    "lstm-proj": lambda **kw: nn.LSTM(IN, H, proj_size=P, **kw),
    "gru": lambda **kw: nn.GRU(IN, H, **kw),
}


def make(
    kind: str, layers: int = 1, bidirectional: bool = False, batch_first: bool = False
) -> nn.RNNBase:
    torch.manual_seed(sum(map(ord, kind)) + 10 * layers + 2 * bidirectional + batch_first)
    module = MODULES[kind](
        num_layers=layers, bidirectional=bidirectional, batch_first=batch_first, dtype=DTYPE
    )
    with torch.no_grad():  # a larger spread than PyTorch's init, so that relu units switch
        for p in module.parameters():
            p.mul_(2.0)
    return module


def sequence(batch_first: bool = False, seed: int = 0) -> Tensor:
    x = torch.randn(T, B, IN, generator=torch.Generator().manual_seed(seed), dtype=DTYPE)
    return x.transpose(0, 1) if batch_first else x


# ---------------------------------------------------------------- the reference


def copy_layers(module: nn.RNNBase, first: int, count: int) -> nn.RNNBase:
    """A time-major copy of layers first..first+count-1 of `module`, with their parameters."""
    D = 2 if module.bidirectional else 1
    out = module.proj_size if isinstance(module, nn.LSTM) and module.proj_size else H
    options = dict(
        input_size=module.input_size if first == 0 else D * out,
        hidden_size=H,
        num_layers=count,
        bidirectional=module.bidirectional,
        dtype=DTYPE,
    )
    if isinstance(module, nn.LSTM):
        options["proj_size"] = module.proj_size
    if isinstance(module, nn.RNN):
        options["nonlinearity"] = module.nonlinearity
    copy = type(module)(**options)
    state = {}
    for name, p in module.named_parameters():
        layer = int(re.search(r"_l(\d+)", name).group(1))  # type: ignore[union-attr]
        if first <= layer < first + count:
            state[re.sub(r"_l\d+", f"_l{layer - first}", name)] = p.detach()
    copy.load_state_dict(state)
    return copy


def reference_curve(module: nn.RNNBase, x: Tensor, layer: int, d: int) -> Tensor:
    """log10 ||dh_T/dh_k||_2 of one layer and direction by autograd, shape (B, T)."""
    lstm = isinstance(module, nn.LSTM)
    D = 2 if module.bidirectional else 1
    u = x if layer == 0 else copy_layers(module, 0, layer)(x)[0]  # (T, B, I_l)
    one = copy_layers(module, layer, 1)
    p_out = module.proj_size if lstm and module.proj_size else H
    zeros_h, zeros_c = torch.zeros(D, B, p_out, dtype=DTYPE), torch.zeros(D, B, H, dtype=DTYPE)
    curve = []
    for k in range(T):
        h_k, c_k = zeros_h[d], zeros_c[d]
        if k > 0:  # the state of direction d after k of its own steps
            _, hn = one(u[:k] if d == 0 else u[T - k :])
            h_k, c_k = (hn[0][d], hn[1][d]) if lstm else (hn[d], c_k)
        rest = u[k:] if d == 0 else u[: T - k]  # what direction d reads after those k steps

        def final_h(h: Tensor, c_k: Tensor = c_k, rest: Tensor = rest) -> Tensor:
            h0 = torch.stack([h if i == d else zeros_h[i] for i in range(D)])
            c0 = torch.stack([c_k if i == d else zeros_c[i] for i in range(D)])
            _, hn = one(rest, (h0, c0) if lstm else h0)
            return (hn[0] if lstm else hn)[d]

        J = torch.einsum("bibj->bij", jacobian(final_h, h_k))  # (B, P, P)
        curve.append(torch.log10(torch.linalg.matrix_norm(J, ord=2)))
    return torch.stack(curve, dim=1)  # (B, T)


# ---------------------------------------------------------------- acceptance: c(k)

CASES = list(product(MODULES, (1, 2), (False, True), (False, True)))


@pytest.mark.parametrize(
    ("kind", "layers", "bidirectional", "batch_first"),
    CASES,
    ids=[
        f"{k}-{n}layer{'-bidir' if bi else ''}{'-batch_first' if bf else ''}"
        for k, n, bi, bf in CASES
    ],
)
def test_curves_equal_autograd_through_the_module(
    kind: str, layers: int, bidirectional: bool, batch_first: bool
) -> None:
    module = make(kind, layers, bidirectional, batch_first)
    x = sequence(batch_first)
    result = trace(module, x)
    D = 2 if bidirectional else 1
    assert [(r.layer, r.direction) for r in result.layers] == [
        (layer, ("forward", "reverse")[d]) for layer in range(layers) for d in range(D)
    ]
    x_tm = x.transpose(0, 1) if batch_first else x
    for rec in result.layers:
        d = ("forward", "reverse").index(rec.direction)
        torch.testing.assert_close(
            rec.log10_norm, reference_curve(module, x_tm, rec.layer, d), atol=ATOL, rtol=0
        )
        assert rec.output_error < 1e-12  # the re-execution reproduces the module's output


def test_stacked_lstm_curves_equal_the_module_run_on_from_each_state() -> None:
    # The module itself, batch-first with a projection: it runs from the per-layer states
    # after k steps (a causal module, so running it on x[:, :k] gives them).
    module = make("lstm-proj", layers=2, batch_first=True)
    x = sequence(batch_first=True)
    result = trace(module, x)
    for layer in range(2):
        curve = []
        for k in range(T):
            h0, c0 = torch.zeros(2, B, P, dtype=DTYPE), torch.zeros(2, B, H, dtype=DTYPE)
            if k > 0:
                _, (h0, c0) = module(x[:, :k])

            def final_h(
                h: Tensor, h0: Tensor = h0, c0: Tensor = c0, k: int = k, layer: int = layer
            ) -> Tensor:
                hx = torch.stack([h if i == layer else h0[i] for i in range(2)])
                return module(x[:, k:], (hx, c0))[1][0][layer]

            J = torch.einsum("bibj->bij", jacobian(final_h, h0[layer]))
            curve.append(torch.log10(torch.linalg.matrix_norm(J, ord=2)))
        torch.testing.assert_close(
            result.find(layer=layer).log10_norm, torch.stack(curve, 1), atol=ATOL, rtol=0
        )


def test_lstm_cell_path_is_the_product_of_forget_gates() -> None:
    # Reference: f_t = sigmoid(W_if x_t + b_if + W_hf h_{t-1} + b_hf) with h_{t-1} from the
    # module's own output; diag(prod_{t>k} f_t) has spectral norm max_i prod f_t,i (1e-10).
    module = make("lstm")
    x = sequence()
    out, _ = module(x)  # (T, B, H)
    h_prev = torch.cat([torch.zeros(1, B, H, dtype=DTYPE), out[:-1]])
    gates = x @ module.weight_ih_l0.T + module.bias_ih_l0 + h_prev @ module.weight_hh_l0.T
    f = torch.sigmoid((gates + module.bias_hh_l0)[..., H : 2 * H]).detach()  # (T, B, H)
    suffix = torch.flip(torch.cumprod(torch.flip(f, [0]), 0), [0])  # prod_{t >= k+1}
    expected = torch.log10(suffix.amax(-1)).T  # (B, T)
    rec = trace(module, x).layers[0]
    assert rec.cell_path_log10 is not None
    torch.testing.assert_close(rec.cell_path_log10, expected, atol=1e-10, rtol=0)


# ---------------------------------------------------------------- models around the module


class Tagger(nn.Module):
    """Embedding -> 2-layer LSTM -> linear: the recurrent module is never named by the user."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.embed = nn.Embedding(10, IN, dtype=DTYPE)
        self.lstm = nn.LSTM(IN, H, num_layers=2, dtype=DTYPE)
        self.head = nn.Linear(H, 4, dtype=DTYPE)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.head(self.lstm(self.embed(tokens))[0])


def tokens() -> Tensor:
    return torch.randint(0, 10, (T, B), generator=torch.Generator().manual_seed(5))


def test_a_wrapped_lstm_is_found_and_traced_without_naming_it() -> None:
    model = Tagger()
    result = trace(model, tokens())
    assert [(r.module, r.layer) for r in result.layers] == [("lstm", 0), ("lstm", 1)]
    x = model.embed(tokens()).detach()
    for rec in result.layers:
        expected = reference_curve(model.lstm, x, rec.layer, 0)
        torch.testing.assert_close(rec.log10_norm, expected, atol=ATOL, rtol=0)


def perturbed_run(one: nn.LSTM, u: Tensor, k: int, delta: Tensor) -> Tensor:
    """The outputs (T, B, H) of a one-layer LSTM with delta added to h_k in all its uses."""
    zeros = torch.zeros(1, B, H, dtype=DTYPE)
    if k == 0:  # h_0 is used by step 1 only
        return one(u, (delta.unsqueeze(0), zeros))[0]
    first, (h, c) = one(u[:k])  # h = first[k - 1] = h_k
    parts = [first[: k - 1], first[k - 1 :] + delta]  # h_k is an output of this layer
    if k < T:  # and the state step k + 1 starts from
        parts.append(one(u[k:], (h + delta, c))[0])
    return torch.cat(parts)


def test_loss_gradient_profile_equals_autograd_with_a_perturbed_state() -> None:
    # Reference: L as a function of a perturbation delta added to h^l_k wherever h^l_k is used
    # (the next step of layer l, and the output that the layer above or the head reads), run
    # through one-layer copies of the LSTM's layers; dL/d delta at 0 is the whole gradient
    # dL/dh^l_k (1e-10 on log10).
    model, ids = Tagger(), tokens()
    target = torch.randn(T, B, 4, generator=torch.Generator().manual_seed(6), dtype=DTYPE)
    loss_fn = nn.MSELoss()
    result = trace(model, ids, loss_fn=loss_fn, target=target)
    x = model.embed(ids).detach()
    below, above = copy_layers(model.lstm, 0, 1), copy_layers(model.lstm, 1, 1)
    for layer in range(2):
        expected = []
        for k in range(T + 1):
            delta = torch.zeros(B, H, dtype=DTYPE, requires_grad=True)
            if layer == 0:
                out = above(perturbed_run(below, x, k, delta))[0]
            else:
                out = perturbed_run(above, below(x)[0], k, delta)
            (grad,) = torch.autograd.grad(loss_fn(model.head(out), target), delta)
            expected.append(torch.log10(grad.norm(dim=-1)))
        profile = result.find(layer=layer).loss_grad_log10
        assert profile is not None
        torch.testing.assert_close(profile, torch.stack(expected, dim=1), atol=1e-10, rtol=0)
    assert result.loss == pytest.approx(float(loss_fn(model(ids), target).detach()), rel=1e-12)


def test_loss_fn_receives_the_whole_output() -> None:
    module = make("gru", layers=2)
    x = sequence()

    def loss_fn(out: tuple[Tensor, Tensor]) -> Tensor:  # the output sequence and h_n
        return out[0].pow(2).sum() + out[1].pow(2).sum()

    result = trace(module, x, loss_fn=loss_fn)
    assert result.loss == pytest.approx(float(loss_fn(module(x)).detach()), rel=1e-12)
    with pytest.raises(GradtraceError, match=r"^`loss_fn` raised AttributeError: .*a tuple"):
        trace(module, x, loss_fn=lambda y: y.pow(2).sum())


def test_a_module_called_twice_is_traced_at_its_first_call() -> None:
    rnn = make("rnn-tanh")

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = rnn

        def forward(self, x: Tensor) -> Tensor:
            return self.rnn(self.rnn(x)[0])[0]

    rec = trace(Twice(), sequence()).layers[0]
    assert (rec.calls, rec.untraced_calls) == (1, 1)  # the second call starts a new sequence
    torch.testing.assert_close(rec.log10_norm, reference_curve(rnn, sequence(), 0, 0))


def test_unbatched_input_is_traced_as_a_batch_of_one() -> None:
    module = make("gru", layers=2, bidirectional=True)
    x = sequence()
    unbatched = trace(module, x[:, 0], loss_fn=lambda out: out[0].sum())
    batched = trace(module, x[:, :1], loss_fn=lambda out: out[0].sum())
    for a, b in zip(unbatched.layers, batched.layers, strict=True):
        torch.testing.assert_close(a.log10_norm, b.log10_norm, atol=0, rtol=0)
        torch.testing.assert_close(a.loss_grad_log10, b.loss_grad_log10, atol=0, rtol=0)


def test_a_given_initial_state_is_used() -> None:
    # The module's output depends on (h0, c0): the re-execution reproduces it only from them.
    module = make("lstm", layers=2)
    gen = torch.Generator().manual_seed(9)
    hx = (
        torch.randn(2, B, H, generator=gen, dtype=DTYPE),
        torch.randn(2, B, H, generator=gen, dtype=DTYPE),
    )

    class WithState(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = module

        def forward(self, x: Tensor) -> Tensor:
            return self.lstm(x, hx)[0]

    from_state = trace(WithState(), sequence())
    from_zeros = trace(module, sequence())
    assert all(rec.output_error < 1e-12 for rec in from_state.layers)
    assert not torch.allclose(from_state.layers[0].log10_norm, from_zeros.layers[0].log10_norm)


# ---------------------------------------------------------------- Lyapunov and fixed points


def test_an_irnn_whose_unit_never_switches_off_has_exponent_ln_of_its_gain() -> None:
    # Closed form: a ReLU RNN with W_hh = 1.05 I and one unit held on by its bias has
    # J_t = 1.05 diag(m_t) with m_t[0] = 1 always, so sigma_1(J_T ... J_1) = 1.05^T and the
    # top exponent is ln 1.05 (1e-12), whichever units the others switch off, while a random
    # start direction would grow only by its share of that unit.
    torch.manual_seed(3)
    rnn = nn.RNN(3, 8, nonlinearity="relu", dtype=DTYPE)
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(1.05 * torch.eye(8, dtype=DTYPE))
        rnn.bias_ih_l0[0] = 10.0
    layer = trace(rnn, torch.randn(60, 2, 3, dtype=DTYPE), lyapunov=2).layers[0]
    assert layer.lyapunov_max == pytest.approx(math.log(1.05), abs=1e-12)
    assert layer.lyapunov is not None
    assert float(layer.lyapunov.exponents[:, 0].sub(math.log(1.05)).abs().max()) < 1e-12
    torch.testing.assert_close(
        layer.log10_norm[:, 0],
        torch.full((2,), 60 * math.log10(1.05), dtype=DTYPE),
        atol=1e-12,
        rtol=0,
    )


def test_an_lstms_top_exponent_is_its_full_state_products_own_growth() -> None:
    # The LSTM's curve is of the h block, so its exponent comes from the backward frame.
    # Reference: autograd step Jacobians d(h_t, c_t)/d(h_{t-1}, c_{t-1}) through a one-step
    # call, multiplied out with the scale kept apart, (1/T) ln sigma_1 by torch.linalg.svdvals
    # (1e-10: over 80 steps the frame's error, (sigma_2 / sigma_1)^2 of the product, is gone).
    module, steps = make("lstm"), 80
    x = torch.randn(steps, B, IN, generator=torch.Generator().manual_seed(2), dtype=DTYPE)
    state = torch.zeros(B, 2 * H, dtype=DTYPE)

    def one_step(s: Tensor, t: int) -> Tensor:
        h, c = module(x[t : t + 1], (s[:, :H].unsqueeze(0), s[:, H:].unsqueeze(0)))[1]
        return torch.cat([h[0], c[0]], dim=-1)

    P, log_scale = torch.eye(2 * H, dtype=DTYPE).expand(B, 2 * H, 2 * H), torch.zeros(B, 1, 1)
    for t in range(steps):
        J = torch.einsum("bibj->bij", jacobian(lambda s, t=t: one_step(s, t), state))
        state = one_step(state, t).detach()
        P = J @ P
        peak = P.abs().amax(dim=(-2, -1), keepdim=True)
        P, log_scale = P / peak, log_scale + peak.log()
    exact = (torch.linalg.svdvals(P)[:, 0].log() + log_scale.flatten()) / steps
    layer = trace(module, x).layers[0]
    assert layer.lyapunov_max == pytest.approx(float(exact.mean()), abs=1e-10)


def test_traced_lyapunov_spectrum_equals_qr_on_autograd_jacobians() -> None:
    # Reference: each step Jacobian dh_t/dh_{t-1} by autograd through a one-step call of the
    # module, then the core's QR method from the backward frame of those Jacobians, from the
    # same seeded start (1e-10).
    module = make("rnn-tanh")
    x = sequence()
    states = torch.cat([torch.zeros(1, B, H, dtype=DTYPE), module(x)[0].detach()])
    steps = []
    for t in range(T):
        J = jacobian(lambda h, t=t: module(x[t : t + 1], h.unsqueeze(0))[1][0], states[t])
        steps.append(torch.einsum("bibj->bij", J))
    J = torch.stack(steps)
    expected = lyapunov_spectrum(J, 2, q0=backward_frame(J, start_frame(H, 2, seed=7)))
    spectrum = trace(module, x, lyapunov=2, seed=7).layers[0].lyapunov
    assert spectrum is not None
    torch.testing.assert_close(spectrum.exponents, expected.exponents, atol=1e-10, rtol=0)
    torch.testing.assert_close(
        spectrum.local_log_factors, expected.local_log_factors, atol=1e-10, rtol=0
    )


def test_fixed_point_of_a_two_unit_tanh_rnn_matches_the_closed_form() -> None:
    # Choose h* and set the bias so that h* = tanh(W_hh h* + W_ih x + b): then h* is a fixed
    # point, and with ||W_hh|| = 0.6 < 1 the map contracts, so it is the only one and a sink,
    # with eigenvalues those of diag(1 - h*^2) W_hh (1e-10).
    rnn = nn.RNN(1, 2, dtype=DTYPE)
    angle = torch.tensor(0.7, dtype=DTYPE)
    W_hh = 0.6 * torch.stack(
        [torch.stack([angle.cos(), -angle.sin()]), torch.stack([angle.sin(), angle.cos()])]
    )
    W_ih = torch.tensor([[0.5], [-1.0]], dtype=DTYPE)
    x, h_star = torch.tensor([0.8], dtype=DTYPE), torch.tensor([0.3, -0.2], dtype=DTYPE)
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(W_hh)
        rnn.weight_ih_l0.copy_(W_ih)
        rnn.bias_ih_l0.copy_(torch.atanh(h_star) - W_hh @ h_star - W_ih @ x)
        rnn.bias_hh_l0.zero_()
    found = layer_fixed_points(rnn, x, starts=16)
    assert isinstance(found, FixedPoints)
    assert len(found.points) == 1
    point = found.points[0]
    torch.testing.assert_close(point.state, h_star, atol=1e-10, rtol=0)
    assert point.kind == "sink"
    expected = torch.linalg.eigvals(torch.diag(1 - h_star**2) @ W_hh)
    torch.testing.assert_close(
        point.eigenvalues.abs().sort().values, expected.abs().sort().values, atol=1e-10, rtol=0
    )


# ---------------------------------------------------------------- refusals


class NoRecurrence(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(IN, 2, dtype=DTYPE)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x)


class OwnForward(nn.LSTM):
    def forward(self, x: Tensor, hx: object = None) -> tuple[Tensor, object]:  # type: ignore[override]
        out, state = super().forward(x)
        return 2 * out, state


def _nan_input() -> Tensor:
    x = sequence()
    x[2, 1, 0] = torch.nan
    return x


REFUSALS: dict[str, tuple[Callable[[], object], str]] = {
    "no-recurrent-module": (
        lambda: trace(NoRecurrence(), sequence()),
        r"holds no nn.RNN, nn.LSTM, nn.GRU or recurrent cell.*`trace_step\(step, inputs, s0\)`"
        ".*input_sensitivity",
    ),
    "feature-size-mismatch": (
        lambda: trace(make("lstm"), torch.randn(T, B, IN + 2, dtype=DTYPE)),
        "must have input_size = 3 features, got 5",
    ),
    "non-finite-input": (lambda: trace(make("gru"), _nan_input()), "must be finite, got 1 NaN"),
    "own-forward": (
        lambda: trace(OwnForward(IN, H, dtype=DTYPE), sequence()),
        "overrides the forward of nn.LSTM",
    ),
    "unknown-module": (
        lambda: trace(Tagger(), tokens(), module="encoder"),
        "`module` must be one of the recurrent modules 'lstm', got 'encoder'",
    ),
    "unknown-metric": (lambda: trace(make("rnn-tanh"), sequence(), metric="l1"), "`metric`"),
    "bad-lyapunov": (lambda: trace(make("rnn-tanh"), sequence(), lyapunov=0), "`lyapunov`"),
    "scalar-loss": (
        lambda: trace(make("rnn-tanh"), sequence(), loss_fn=lambda out: out[0]),
        "`loss_fn` must return a scalar tensor",
    ),
    "target-without-loss": (
        lambda: trace(make("rnn-tanh"), sequence(), target=torch.zeros(T, B, H)),
        r"`target` needs a `loss_fn` to be the target of, got a target \(a \(5, 2, 3\) "
        r"tensor\) and no loss_fn",
    ),
    "submodule-of-a-bare-module": (
        lambda: trace(make("lstm"), sequence(), module="encoder"),
        "`module` names a submodule, got 'encoder', but the model is itself the one recurrent "
        "module \\(LSTM\\); leave `module` out",
    ),
}


@pytest.mark.parametrize("name", REFUSALS)
def test_bad_input_is_refused_in_one_sentence(name: str) -> None:
    call, message = REFUSALS[name]
    with pytest.raises(GradtraceError, match=message) as err:
        call()
    assert "\n" not in str(err.value)


def test_gradtrace_trace_is_the_function_whatever_was_imported_first() -> None:
    # Regression: while the subpackage was called gradtrace.trace, importing any of its modules
    # rebound the name gradtrace.trace to the package; it is gradtrace.tracing now.
    import gradtrace
    import gradtrace.tracing.api
    import gradtrace.tracing.capture
    import gradtrace.tracing.fixed_points
    import gradtrace.tracing.modules
    import gradtrace.tracing.sensitivity
    import gradtrace.tracing.stepwise

    module, x = make("rnn-tanh"), sequence()
    via_package = gradtrace.trace(module, x)
    torch.testing.assert_close(
        via_package.layers[0].log10_norm, trace(module, x).layers[0].log10_norm
    )


def test_eval_mode_gives_the_same_trace_as_train_mode_without_dropout() -> None:
    module = make("lstm", layers=2, bidirectional=True)
    train = trace(module, sequence())
    evaluated = trace(module.eval(), sequence())
    for a, b in zip(train.layers, evaluated.layers, strict=True):
        torch.testing.assert_close(a.log10_norm, b.log10_norm, atol=0, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cudnn_module_in_eval_mode_traces_like_on_the_cpu() -> None:
    # cuDNN refuses backward in eval mode; the re-execution never calls it (1e-8, float64).
    module = make("lstm-proj", layers=2, bidirectional=True).eval()
    x = sequence()
    on_cpu = trace(module, x, loss_fn=lambda out: out[0].pow(2).sum())
    on_gpu = trace(module.cuda(), x.cuda(), loss_fn=lambda out: out[0].pow(2).sum())
    for a, b in zip(on_cpu.layers, on_gpu.layers, strict=True):
        torch.testing.assert_close(a.log10_norm, b.log10_norm, atol=ATOL, rtol=0)
        torch.testing.assert_close(a.loss_grad_log10, b.loss_grad_log10, atol=ATOL, rtol=0)


def test_a_model_whose_states_overflow_is_refused_not_read_as_vanishing() -> None:
    # A ReLU nn.RNN (and the same as a cell loop through trace_step) with recurrent weights
    # scaled 20x overflows float64 within 400 steps; its own forward returns Inf/NaN. Past
    # that point phi'(NaN) = 0 would make every product zero: gradtrace says where it broke.
    from gradtrace.tracing import trace_step

    torch.manual_seed(0)
    rnn = nn.RNN(3, 8, nonlinearity="relu").double()
    cell = nn.RNNCell(3, 8, nonlinearity="relu").double()
    with torch.no_grad():
        rnn.weight_hh_l0.mul_(20)
        cell.weight_hh.mul_(20)
    x = torch.randn(400, 2, 3, dtype=torch.float64)
    assert not bool(torch.isfinite(rnn(x)[0]).all())
    match = r"states overflow to Inf/NaN at step \d+ of 400"
    with pytest.raises(GradtraceError, match=match):
        trace(rnn, x)
    with pytest.raises(GradtraceError, match=match):
        trace_step(cell, x, torch.zeros(2, 8, dtype=torch.float64))
    assert trace(rnn, x[:30]).layers[0].log10_norm.isfinite().all()  # before it: measured


def test_a_float64_loss_gradient_below_1e_154_is_measured_not_read_as_zero() -> None:
    # A tanh nn.RNN with recurrent weights of norm 0.2 over 300 steps: dL/dh_0 is about
    # 1e-200, whose squares underflow float64, so a plain vector norm reads it as exactly zero.
    # Reference: the autograd gradients of L with respect to h_0 (the initial state) and
    # h_T, their norms taken after scaling by the largest entry (1e-10 decades).
    from gradtrace.tracing import trace_step

    torch.manual_seed(0)
    rnn = nn.RNN(3, 8).double()
    cell = nn.RNNCell(3, 8).double()
    with torch.no_grad():
        for W in (rnn.weight_hh_l0, cell.weight_hh):
            W.mul_(0.2 / torch.linalg.matrix_norm(W, ord=2))
    x = torch.randn(300, 2, 3, dtype=torch.float64)

    def log10_norm(g: Tensor) -> Tensor:
        peak = g.abs().amax(dim=-1)
        return torch.log10(peak) + torch.log10(torch.linalg.vector_norm(g / peak[:, None], dim=-1))

    h0 = torch.zeros(1, 2, 8, dtype=torch.float64, requires_grad=True)
    out, _ = rnn(x, h0)
    (g0,) = torch.autograd.grad(out[-1].sum(), h0)
    result = trace(rnn, x, h0.detach(), loss_fn=lambda o: o[0][-1].sum())
    profile = result.layers[0].loss_grad_log10
    assert profile is not None
    assert float(log10_norm(g0[0]).max()) < -160  # the test means something
    torch.testing.assert_close(profile[:, 0], log10_norm(g0[0]), atol=1e-10, rtol=0)

    s0 = torch.zeros(2, 8, dtype=torch.float64)
    stepped = trace_step(cell, x, s0, loss_fn=lambda states: states[-1].sum())
    assert stepped.loss_grad_log10 is not None
    assert bool(torch.isfinite(stepped.loss_grad_log10).all())
    assert float(stepped.loss_grad_log10[:, 0].max()) < -160


class DroppedCell(nn.Module):
    """A GRU cell with dropout on its input and BatchNorm on its state: random or batch-bound
    in train mode."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(9)
        self.cell = nn.GRUCell(IN, H, dtype=DTYPE)
        self.drop = nn.Dropout(0.3)
        self.norm = nn.BatchNorm1d(H, dtype=DTYPE)

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        return self.norm(self.cell(self.drop(x), h))


def test_trace_step_refuses_a_train_mode_step_that_draws_at_every_call() -> None:
    from gradtrace.tracing import trace_step

    cell, x, h0 = DroppedCell(), sequence(), torch.zeros(B, H, dtype=DTYPE)
    rng = torch.get_rng_state()
    with pytest.raises(GradtraceError, match=r"holds Dropout, BatchNorm1d in train mode"):
        trace_step(cell, x, h0)
    assert torch.equal(torch.get_rng_state(), rng)
    cell.eval()  # deterministic: traced, and left as it was (BatchNorm's statistics, the RNG)
    stats = (cell.norm.running_mean.clone(), cell.norm.running_var.clone())
    flow = trace_step(cell, x, h0, loss_fn=lambda s: s.pow(2).sum())
    assert flow.log10_norm.shape == (B, T) and not cell.training
    assert torch.equal(cell.norm.running_mean, stats[0])
    assert torch.equal(cell.norm.running_var, stats[1])
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(p.grad is None for p in cell.parameters())


def test_trace_step_names_the_input_when_the_step_rejects_it() -> None:
    from gradtrace.tracing import trace_step

    cell = nn.GRUCell(IN, H, dtype=DTYPE)
    x = torch.randn(T, B, IN + 4, dtype=DTYPE)
    with pytest.raises(
        GradtraceError, match=r"failed on an input x_t of shape \(2, 7\) \(float64\)"
    ):
        trace_step(cell, x, torch.zeros(B, H, dtype=DTYPE))
