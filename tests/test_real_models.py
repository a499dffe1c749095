"""Models traced as their authors wrote them: a word language model called as
forward(input, hidden) with dropout 0.5 in train mode, a loop over two nn.LSTMCell, an nn.GRU
called once per step, and a model that holds BatchNorm.

References never touch gradtrace. Each recurrence is re-run step by step through PyTorch's own
modules (a one-layer copy of each layer, or the cell itself): c(k) = ||dh_T/dh_k||_2 comes from
torch.autograd.functional.jacobian of h_T by h_k (c_k held fixed for an LSTM), and dL/dh_k from
autograd by a zero perturbation added to h_k wherever h_k is used. The dropout masks are the
ones the trace draws by its documented rule: the model's own nn.Dropout layers from torch's
global generator set to `seed`, the masks between a module's layers as
(rand(shape, generator=Generator().manual_seed(seed + 1)) < 1 - p) / (1 - p), layer by layer.
Float64 throughout; tolerance 1e-8 on log10 (the two sides agree to about 1e-13).
"""

from __future__ import annotations

import copy
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.functional import jacobian

from gradtrace import trace
from gradtrace.cli.main import run
from gradtrace.errors import GradtraceError
from gradtrace.records import TraceResult
from gradtrace.tracing.losses import named_loss

DTYPE = torch.float64
ATOL = 1e-8
T, B = 6, 3
RNN_TYPES = ("LSTM", "GRU", "RNN_TANH", "RNN_RELU")

# The word language model of pytorch/examples, as people write it (our own code): embedding,
# dropout, a 2-layer recurrent module with dropout between its layers, dropout, a decoder
# whose weight is the embedding's, log-softmax; called as model(input, hidden).
RNN_MODEL = """
import torch
import torch.nn.functional as F
from torch import nn


class RNNModel(nn.Module):
    def __init__(self, rnn_type, ntoken, ninp, nhid, nlayers, dropout=0.5, tie_weights=True):
        super().__init__()
        self.ntoken = ntoken
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        if rnn_type in ("LSTM", "GRU"):
            self.rnn = getattr(nn, rnn_type)(ninp, nhid, nlayers, dropout=dropout)
        else:
            nonlinearity = {"RNN_TANH": "tanh", "RNN_RELU": "relu"}[rnn_type]
            self.rnn = nn.RNN(ninp, nhid, nlayers, nonlinearity=nonlinearity, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        if tie_weights:
            self.decoder.weight = self.encoder.weight
        self.rnn_type, self.nhid, self.nlayers = rnn_type, nhid, nlayers

    def forward(self, input, hidden):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        output = self.drop(output)
        decoded = self.decoder(output).view(-1, self.ntoken)
        return F.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, bsz):
        weight = next(self.parameters())
        if self.rnn_type == "LSTM":
            return (weight.new_zeros(self.nlayers, bsz, self.nhid),
                    weight.new_zeros(self.nlayers, bsz, self.nhid))
        return weight.new_zeros(self.nlayers, bsz, self.nhid)


VOCAB, SIZE = 40, 6


def build(rnn_type):
    torch.manual_seed(7)
    model = RNNModel(rnn_type, VOCAB, SIZE, SIZE, 2).double()
    with torch.no_grad():  # a wider spread than the default init, so relu units switch
        for p in model.rnn.parameters():
            p.mul_(3.0)
    return model


def build_lstm():
    return build("LSTM")


def build_gru():
    return build("GRU")


def build_rnn_tanh():
    return build("RNN_TANH")


def build_rnn_relu():
    return build("RNN_RELU")
"""

namespace: dict[str, Any] = {}
exec(compile(RNN_MODEL, "rnn_model", "exec"), namespace)  # the same source the CLI imports
build = namespace["build"]
VOCAB = namespace["VOCAB"]


def data(seed: int = 0) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, VOCAB, (T, B), generator=gen)
    targets = torch.randint(0, VOCAB, (T, B), generator=gen)
    return tokens, targets


def random_hidden(model: nn.Module, seed: int = 1) -> Any:
    gen = torch.Generator().manual_seed(seed)
    shape = (model.nlayers, B, model.nhid)
    h = torch.randn(shape, generator=gen, dtype=DTYPE) * 0.5
    if model.rnn_type == "LSTM":
        return h, torch.randn(shape, generator=gen, dtype=DTYPE) * 0.5
    return h


def nll(out: tuple[Tensor, Any], targets: Tensor) -> Tensor:
    return F.nll_loss(out[0], targets.reshape(-1))


# ---------------------------------------------------------------- the reference


def one_layer(module: nn.RNNBase, layer: int, reverse: bool = False) -> nn.RNNBase:
    """A one-layer, unidirectional copy of layer `layer` of `module` (its reverse direction
    with `reverse`), with its parameters."""
    options: dict[str, Any] = {
        "input_size": module.input_size if layer == 0 else module.hidden_size,
        "hidden_size": module.hidden_size,
        "dtype": DTYPE,
    }
    if isinstance(module, nn.RNN):
        options["nonlinearity"] = module.nonlinearity
    with torch.random.fork_rng(devices=[]):  # its own init must not move the global generator
        copy = type(module)(**options)
    suffix = f"_l{layer}" + ("_reverse" if reverse else "")
    copy.load_state_dict(
        {
            name.removesuffix(suffix) + "_l0": p.detach()
            for name, p in module.named_parameters()
            if name.endswith(suffix)
        }
    )
    return copy


def step(copy: nn.RNNBase, x_t: Tensor, state: Any) -> Any:
    """One step of a one-layer copy: x_t (B, I), state h (1, B, H) or (h, c)."""
    return copy(x_t.unsqueeze(0), state)[1]


def h_of(state: Any) -> Tensor:
    return state[0] if isinstance(state, tuple) else state


def with_h(state: Any, h: Tensor) -> Any:
    return (h, state[1]) if isinstance(state, tuple) else h


def layer_curve(copy: nn.RNNBase, u: Tensor, states: list[Any]) -> Tensor:
    """log10 ||dh_T/dh_k||_2 for k = 0..T-1 by autograd through the copy, shape (B, T), for
    the T + 1 states s_0..s_T."""
    curve = []
    steps = len(states) - 1
    for k in range(steps):

        def final_h(h: Tensor, k: int = k) -> Tensor:
            state = with_h(states[k], h)
            for t in range(k, steps):
                state = step(copy, u[t], state)
            return h_of(state)[0]

        J = jacobian(final_h, h_of(states[k]).detach())  # (B, H, 1, B, H)
        J = torch.einsum("bibj->bij", J[:, :, 0])  # (B, H, H)
        curve.append(torch.log10(torch.linalg.matrix_norm(J, ord=2)))
    return torch.stack(curve, dim=1)


def reference(
    model: nn.Module, tokens: Tensor, hidden: Any, targets: Tensor, seed: int, train: bool
) -> tuple[list[Tensor], list[Tensor], float]:
    """Per layer: the curve (B, T) and log10 ||dL/dh_k|| (B, T + 1); and the loss."""
    model.train(train)
    rnn = model.rnn
    rate = rnn.dropout if train else 0.0
    torch.manual_seed(seed)  # the trace sets the global generator to `seed`
    emb = model.drop(model.encoder(tokens))  # the model's first draw
    with torch.no_grad():
        rnn(emb, hidden)  # its recurrent module draws next (its own inter-layer dropout)
    masks = torch.Generator().manual_seed(seed + 1)
    layer_input, curves, deltas = emb, [], []
    hs = hidden if isinstance(hidden, tuple) else (hidden,)
    for layer in range(rnn.num_layers):
        if layer and rate:
            keep = 1.0 - rate
            mask = (torch.rand(layer_input.shape, generator=masks) < keep).to(DTYPE) / keep
            layer_input = layer_input * mask
        copy = one_layer(rnn, layer)
        first = tuple(h[layer : layer + 1] for h in hs)
        state = first if len(first) == 2 else first[0]
        delta = [torch.zeros(1, B, model.nhid, dtype=DTYPE, requires_grad=True)]
        state = with_h(state, h_of(state) + delta[0])
        states, outputs = [state], []
        for t in range(T):
            state = step(copy, layer_input[t], state)
            delta.append(torch.zeros(1, B, model.nhid, dtype=DTYPE, requires_grad=True))
            state = with_h(state, h_of(state) + delta[-1])
            states.append(state)
            outputs.append(h_of(state)[0])
        u = layer_input.detach()
        curves.append(layer_curve(copy, u, [tuple(map(Tensor.detach, s)) if isinstance(s, tuple)
                                            else s.detach() for s in states]))  # fmt: skip
        deltas.append(delta)
        layer_input = torch.stack(outputs)  # (T, B, H)
    decoded = model.decoder(model.drop(layer_input)).view(-1, model.ntoken)
    loss = F.nll_loss(F.log_softmax(decoded, dim=1), targets.reshape(-1))
    flat = [d for delta in deltas for d in delta]
    grads = torch.autograd.grad(loss, flat)
    profiles = []
    for layer in range(rnn.num_layers):
        g = torch.stack(grads[layer * (T + 1) : (layer + 1) * (T + 1)])[:, 0]  # (T + 1, B, H)
        profiles.append(torch.log10(g.norm(dim=-1)).T)
    return curves, profiles, float(loss.detach())


# ---------------------------------------------------------------- the language model


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("rnn_type", RNN_TYPES)
def test_word_language_model_equals_autograd_in_train_and_eval_mode(
    rnn_type: str, train: bool
) -> None:
    model = build(rnn_type)
    tokens, targets = data()
    hidden = random_hidden(model)
    seed = 11
    result = trace(
        model, tokens, hidden, loss_fn=nll, target=targets, seed=seed,
        mode="train" if train else "eval",
    )  # fmt: skip
    curves, profiles, loss = reference(model, tokens, hidden, targets, seed, train)
    assert result.mode == ("train" if train else "eval")
    assert result.dropout_seed == (seed if train else None)
    assert [(r.module, r.layer) for r in result.layers] == [("rnn", 0), ("rnn", 1)]
    assert [r.dropout for r in result.layers] == ([0.0, 0.5] if train else [0.0, 0.0])
    for rec, curve, profile in zip(result.layers, curves, profiles, strict=True):
        torch.testing.assert_close(rec.log10_norm, curve, atol=ATOL, rtol=0)
        assert rec.loss_grad_log10 is not None
        torch.testing.assert_close(rec.loss_grad_log10, profile, atol=ATOL, rtol=0)
    assert result.loss == pytest.approx(loss, rel=1e-12)


def test_a_train_mode_trace_is_reproducible_and_its_seed_matters() -> None:
    model = build("LSTM")
    tokens, targets = data()
    hidden = model.init_hidden(B)
    first = trace(model, tokens, hidden, loss_fn=nll, target=targets, seed=3, mode="train")
    again = trace(model, tokens, hidden, loss_fn=nll, target=targets, seed=3, mode="train")
    other = trace(model, tokens, hidden, loss_fn=nll, target=targets, seed=4, mode="train")
    for a, b, c in zip(first.layers, again.layers, other.layers, strict=True):
        torch.testing.assert_close(a.log10_norm, b.log10_norm, atol=0, rtol=0)
        assert not torch.allclose(a.loss_grad_log10, c.loss_grad_log10)  # type: ignore[arg-type]


class DroppedTagger(nn.Module):
    """A one-layer LSTM (no dropout of its own) between the model's own nn.Dropout layers."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(8)
        self.drop = nn.Dropout(0.5)
        self.lstm = nn.LSTM(4, 5, dtype=DTYPE)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.lstm(self.drop(x))[0])


def test_the_seed_of_the_models_own_dropout_layers_is_recorded() -> None:
    # Their masks shape the recurrence's input and the loss: the trace depends on the seed.
    model, x = DroppedTagger(), torch.randn(T, B, 4, dtype=DTYPE)
    runs = {
        (mode, seed): trace(model, x, loss_fn=lambda y: y.pow(2).mean(), mode=mode, seed=seed)
        for mode in ("train", "eval")
        for seed in (1, 2)
    }
    assert [run.dropout_seed for run in runs.values()] == [1, 2, None, None]
    assert all(run.layers[0].dropout == 0.0 for run in runs.values())  # no masks of ours
    assert not torch.allclose(
        runs["train", 1].layers[0].log10_norm, runs["train", 2].layers[0].log10_norm
    )


def _model_state(model: nn.Module) -> dict[str, Any]:
    return {
        "parameters": [p.detach().clone() for p in model.parameters()],
        "buffers": [b.detach().clone() for b in model.buffers()],
        "modes": [m.training for m in model.modules()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "rng": torch.get_rng_state(),
    }


def _assert_same(before: dict[str, Any], after: dict[str, Any]) -> None:
    for key in ("parameters", "buffers", "grads"):
        assert len(before[key]) == len(after[key]), key
        for a, b in zip(before[key], after[key], strict=True):
            assert (a is None and b is None) or torch.equal(a, b), key
    assert before["modes"] == after["modes"]
    assert torch.equal(before["rng"], after["rng"])


class NormedTagger(nn.Module):
    """BatchNorm over the features, an LSTM, a head: train mode updates BatchNorm's stats."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.norm = nn.BatchNorm1d(4, dtype=DTYPE)
        self.lstm = nn.LSTM(4, 5, num_layers=2, dropout=0.3, dtype=DTYPE)
        self.head = nn.Linear(5, 2, dtype=DTYPE)

    def forward(self, x: Tensor) -> Tensor:  # x (T, B, 4)
        x = self.norm(x.reshape(-1, 4)).reshape(x.shape)
        return self.head(self.lstm(x)[0])


@pytest.mark.parametrize("mode", ["model", "train", "eval"])
def test_the_model_is_left_exactly_as_it_was(mode: str) -> None:
    for model, args, loss_fn in (
        (build("LSTM"), (data()[0], random_hidden(build("LSTM"))), nll),
        (NormedTagger(), (torch.randn(T, B, 4, dtype=DTYPE),), None),
    ):
        model.train()
        model.decoder.eval() if hasattr(model, "decoder") else model.head.eval()  # mixed modes
        params = list(model.parameters())
        params[0].grad = torch.ones_like(params[0])  # one grad set, the others None
        torch.manual_seed(99)
        before = _model_state(model)
        if loss_fn is None:
            trace(model, *args, loss_fn=lambda y: y.pow(2).mean(), mode=mode)
        else:
            trace(model, *args, loss_fn=loss_fn, target=data()[1], mode=mode)
        _assert_same(before, _model_state(model))


class Stateful(nn.Module):
    """Keeps its hidden state between calls, as stateful language-model tutorials do; counts
    its calls, adds to a tensor in place and leaves a new attribute on a submodule."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(6)
        self.lstm = nn.LSTM(4, 5, dtype=DTYPE)
        self.hidden = (torch.zeros(1, B, 5, dtype=DTYPE), torch.zeros(1, B, 5, dtype=DTYPE))
        self.calls = 0
        self.total = torch.zeros(1, dtype=DTYPE)

    def forward(self, x: Tensor) -> Tensor:
        out, self.hidden = self.lstm(x, self.hidden)
        self.calls += 1
        self.total += out.detach().sum()
        self.lstm.last_output = out
        return out


def test_a_stateful_model_keeps_its_own_state_and_trains_on_after_a_trace() -> None:
    model, x = Stateful(), torch.randn(T, B, 4, dtype=DTYPE)
    hidden, total = model.hidden, model.total
    trace(model, x, loss_fn=lambda y: y.pow(2).mean(), mode="train")
    assert model.hidden is hidden and not hidden[0].requires_grad  # not the trace's state
    assert torch.equal(hidden[0], torch.zeros(1, B, 5, dtype=DTYPE))
    assert model.calls == 0 and model.total is total and float(total) == 0.0
    assert not hasattr(model.lstm, "last_output")
    model(x).pow(2).mean().backward()  # the user's next step: no graph of ours behind it
    assert all(p.grad is not None for p in model.lstm.parameters())


class PackedClassifier(nn.Module):
    """How sentence classifiers are written: embedding, the batch packed by its lengths (in
    any order), an LSTM, a head on h_n."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(7)
        self.embedding = nn.Embedding(VOCAB, 4, dtype=DTYPE)
        self.lstm = nn.LSTM(4, 5, dtype=DTYPE)
        self.head = nn.Linear(5, 2, dtype=DTYPE)

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        emb = self.embedding(tokens)
        packed = nn.utils.rnn.pack_padded_sequence(emb, lengths, enforce_sorted=False)
        _, (h_n, _) = self.lstm(packed)
        return self.head(h_n[-1])


def test_a_packed_batch_of_equal_lengths_is_traced_as_the_recurrence_it_packs() -> None:
    model, (tokens, _) = PackedClassifier(), data()
    lengths, labels = torch.full((B,), T), torch.tensor([0, 1, 1])
    result = trace(model, tokens, lengths, loss_fn=F.cross_entropy, target=labels)
    # reference: the LSTM's one-layer copy stepped by hand, autograd for both profiles
    copy, emb = one_layer(model.lstm, 0), model.embedding(tokens).detach()
    states: list[Any] = [(torch.zeros(1, B, 5, dtype=DTYPE), torch.zeros(1, B, 5, dtype=DTYPE))]
    states[0][0].requires_grad_(True)
    for t in range(T):
        states.append(step(copy, emb[t], states[-1]))
    for h, _ in states[1:]:
        h.retain_grad()
    loss = F.cross_entropy(model.head(states[-1][0][0]), labels)
    loss.backward()
    grads = torch.stack([h.grad[0] for h, _ in states])  # (T + 1, B, H)
    layer = result.layers[0]
    expected = layer_curve(copy, emb, [tuple(s.detach() for s in st) for st in states])
    torch.testing.assert_close(layer.log10_norm, expected, atol=ATOL, rtol=0)
    assert layer.loss_grad_log10 is not None
    torch.testing.assert_close(
        layer.loss_grad_log10, torch.log10(grads.norm(dim=-1)).T, atol=ATOL, rtol=0
    )
    own = F.cross_entropy(model(tokens, lengths), labels).detach()
    assert result.loss == pytest.approx(float(own), rel=1e-12)
    assert layer.output_error is not None and layer.output_error < 1e-12


class PackedBidirectional(nn.Module):
    """A classifier over packed sequences of different lengths, read both ways."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(8)
        self.embedding = nn.Embedding(VOCAB, 4, dtype=DTYPE)
        self.lstm = nn.LSTM(4, 5, bidirectional=True, dtype=DTYPE)
        self.head = nn.Linear(10, 2, dtype=DTYPE)

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(
            self.embedding(tokens), lengths, enforce_sorted=False
        )
        _, (h_n, _) = self.lstm(packed)
        return self.head(torch.cat([h_n[0], h_n[1]], dim=-1))


def test_a_packed_batch_of_unequal_lengths_is_traced_one_length_at_a_time() -> None:
    # Lengths 6, 4, 6: the sequences of each length are one recurrence over their own steps,
    # the reverse direction starting at each one's own last step, as the packed LSTM runs
    # them. Reference: one-direction copies of the LSTM stepped by hand over each sequence's
    # own steps, autograd for c(k) and for ||dL/dh_k|| with the model's own loss (1e-10).
    model, (tokens, _) = PackedBidirectional(), data()
    lengths, labels = torch.tensor([6, 4, 6]), torch.tensor([0, 1, 1])
    result = trace(model, tokens, lengths, loss_fn=F.cross_entropy, target=labels)
    assert [(r.direction, r.sequences, r.steps) for r in result.layers] == [
        ("forward", (0, 2), 6), ("forward", (1,), 4), ("reverse", (0, 2), 6), ("reverse", (1,), 4)
    ]  # fmt: skip
    assert result.layers[0].label == "lstm layer 0 forward, sequences 0, 2"
    assert result.find(direction="reverse", sequence=1) is result.layers[3]
    assert TraceResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    emb = model.embedding(tokens).detach()
    finals: dict[tuple[int, int], Tensor] = {}
    runs: dict[tuple[int, int], tuple[nn.RNNBase, Tensor, list[Any]]] = {}
    for d, reverse in enumerate((False, True)):
        copy = one_layer(model.lstm, 0, reverse)
        for b, n in enumerate(lengths.tolist()):
            u = emb[:n, b : b + 1].flip(0) if reverse else emb[:n, b : b + 1]
            zero = torch.zeros(1, 1, 5, dtype=DTYPE)
            states: list[Any] = [(zero.clone().requires_grad_(True), zero)]
            for t in range(n):
                states.append(step(copy, u[t], states[-1]))
            for h, _ in states[1:]:
                h.retain_grad()
            finals[(d, b)] = states[-1][0][0, 0]
            runs[(d, b)] = (copy, u, states)
    h_n = torch.stack([torch.cat([finals[(0, b)], finals[(1, b)]]) for b in range(B)])
    loss = F.cross_entropy(model.head(h_n), labels)
    loss.backward()
    assert result.loss == pytest.approx(float(loss.detach()), rel=1e-12)
    for record in result.layers:
        d = 0 if record.direction == "forward" else 1
        assert record.sequences is not None
        for row, b in enumerate(record.sequences):
            copy, u, states = runs[(d, b)]
            detached = [tuple(s.detach() for s in st) for st in states]
            expected = layer_curve(copy, u, detached)[0]
            torch.testing.assert_close(record.log10_norm[row], expected, atol=ATOL, rtol=0)
            grads = torch.stack([h.grad[0, 0] for h, _ in states])  # (T + 1, H)
            assert record.loss_grad_log10 is not None
            torch.testing.assert_close(
                record.loss_grad_log10[row], torch.log10(grads.norm(dim=-1)), atol=ATOL, rtol=0
            )
        assert record.output_error is not None and record.output_error < 1e-12


def test_a_packed_batch_of_unequal_lengths_gives_the_modules_own_output() -> None:
    # The re-execution, packed again, is what the module returns (data, batch sizes and
    # order), so the rest of the model runs on as it would: 1e-12 against its own forward.
    model, (tokens, _) = PackedBidirectional(), data()
    lengths = torch.tensor([3, 6, 5])
    packed = nn.utils.rnn.pack_padded_sequence(
        model.embedding(tokens), lengths, enforce_sorted=False
    )
    own_out, (own_h, own_c) = model.lstm(packed)

    class Encoder(nn.Module):  # returns the LSTM's packed output as it is
        def __init__(self) -> None:
            super().__init__()
            self.embedding, self.lstm = model.embedding, model.lstm

        def forward(self, tokens: Tensor, lengths: Tensor) -> Any:
            emb = self.embedding(tokens)
            return self.lstm(nn.utils.rnn.pack_padded_sequence(emb, lengths, enforce_sorted=False))

    outputs: list[Any] = []

    def loss(out: Any) -> Tensor:
        outputs.append(out)
        return out[0].data.sum() + out[1][0].sum()

    result = trace(Encoder(), tokens, lengths, loss_fn=loss)
    spliced_out, (spliced_h, spliced_c) = outputs[0]
    assert torch.equal(spliced_out.batch_sizes, own_out.batch_sizes)
    torch.testing.assert_close(spliced_out.data, own_out.data, atol=1e-12, rtol=0)
    torch.testing.assert_close(spliced_h, own_h, atol=1e-12, rtol=0)
    torch.testing.assert_close(spliced_c, own_c, atol=1e-12, rtol=0)
    assert sorted(r.sequences for r in result.layers if r.direction == "forward") == [
        (0,), (1,), (2,)
    ]  # fmt: skip


# ---------------------------------------------------------------- loops over cells


class TwoCellSequence(nn.Module):
    """Two stacked nn.LSTMCell in one Python loop (pytorch/examples time_sequence_prediction)."""

    def __init__(self, hidden: int = 5) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.hidden = hidden
        self.lstm1 = nn.LSTMCell(1, hidden, dtype=DTYPE)
        self.lstm2 = nn.LSTMCell(hidden, hidden, dtype=DTYPE)
        self.linear = nn.Linear(hidden, 1, dtype=DTYPE)

    def forward(self, input: Tensor) -> Tensor:  # (B, T)
        outputs = []
        zeros = input.new_zeros(input.size(0), self.hidden)
        h_t, c_t, h_t2, c_t2 = zeros, zeros, zeros, zeros
        for input_t in input.split(1, dim=1):
            h_t, c_t = self.lstm1(input_t, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            outputs += [self.linear(h_t2)]
        return torch.cat(outputs, dim=1)


def cell_curve(cell: nn.Module, u: Tensor, states: list[tuple[Tensor, Tensor]]) -> Tensor:
    """log10 ||dh_T/dh_k||_2 through the cell itself, c_k held fixed, shape (B, T)."""
    curve = []
    for k in range(T):

        def final_h(h: Tensor, k: int = k) -> Tensor:
            state = (h, states[k][1])
            for t in range(k, T):
                state = cell(u[t], state)
            return state[0]

        J = torch.einsum("bibj->bij", jacobian(final_h, states[k][0]))
        curve.append(torch.log10(torch.linalg.matrix_norm(J, ord=2)))
    return torch.stack(curve, dim=1)


def test_a_loop_over_two_lstm_cells_is_one_recurrence_per_cell() -> None:
    model = TwoCellSequence()
    x = torch.randn(B, T, generator=torch.Generator().manual_seed(2), dtype=DTYPE)
    result = trace(model, x, loss_fn=lambda y: y.pow(2).sum())
    assert [(r.module, r.calls, r.steps) for r in result.layers] == [
        ("lstm1", T, T),
        ("lstm2", T, T),
    ]
    with torch.no_grad():  # the states each cell went through, and what it read
        zeros = x.new_zeros(B, model.hidden)
        s1, s2 = [(zeros, zeros)], [(zeros, zeros)]
        for t in range(T):
            s1.append(model.lstm1(x[:, t : t + 1], s1[-1]))
            s2.append(model.lstm2(s1[-1][0], s2[-1]))
    u1 = x.T.unsqueeze(-1)  # (T, B, 1)
    u2 = torch.stack([s[0] for s in s1[1:]])  # (T, B, H)
    for rec, cell, u, states in ((result.layers[0], model.lstm1, u1, s1),
                                 (result.layers[1], model.lstm2, u2, s2)):  # fmt: skip
        torch.testing.assert_close(rec.log10_norm, cell_curve(cell, u, states), atol=ATOL, rtol=0)
        assert rec.cell == "lstm" and rec.output_error is not None and rec.output_error < 1e-12
    # The loss gradient at h2_k, by a zero perturbation of h2_k inside the same loop.
    deltas = [torch.zeros(B, model.hidden, dtype=DTYPE, requires_grad=True) for _ in range(T + 1)]
    state1, state2 = s1[0], (s2[0][0] + deltas[0], s2[0][1])
    outputs = []
    for t in range(T):
        state1 = model.lstm1(x[:, t : t + 1], state1)
        h2, c2 = model.lstm2(state1[0], state2)
        state2 = (h2 + deltas[t + 1], c2)
        outputs.append(model.linear(state2[0]))
    grads = torch.autograd.grad(torch.cat(outputs, dim=1).pow(2).sum(), deltas)
    expected = torch.log10(torch.stack(grads).norm(dim=-1)).T  # (B, T + 1)
    assert result.layers[1].loss_grad_log10 is not None
    torch.testing.assert_close(result.layers[1].loss_grad_log10, expected, atol=ATOL, rtol=0)


class StepwiseGRU(nn.Module):
    """An nn.GRU called once per time step, its hidden state carried by hand."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.gru = nn.GRU(3, 4, num_layers=2, batch_first=True, dtype=DTYPE)
        self.out = nn.Linear(4, 2, dtype=DTYPE)

    def forward(self, x: Tensor) -> Tensor:  # (B, T, 3)
        h, outputs = None, []
        for t in range(x.shape[1]):
            o, h = self.gru(x[:, t : t + 1], h)
            outputs.append(self.out(o))
        return torch.cat(outputs, dim=1)


def test_an_nn_gru_called_once_per_step_is_one_recurrence() -> None:
    model = StepwiseGRU()
    x = torch.randn(B, T, 3, generator=torch.Generator().manual_seed(8), dtype=DTYPE)
    result = trace(model, x)
    whole = trace(model.gru, x)  # the same module run over the whole sequence at once
    assert [(r.layer, r.calls, r.steps) for r in result.layers] == [(0, T, T), (1, T, T)]
    for got, want in zip(result.layers, whole.layers, strict=True):
        torch.testing.assert_close(got.log10_norm, want.log10_norm, atol=1e-12, rtol=0)
    # And against autograd through one-layer copies of each layer, stepped by hand.
    with torch.no_grad():
        u = x.transpose(0, 1)  # (T, B, 3)
        for layer, rec in enumerate(result.layers):
            copy = one_layer(model.gru, layer)
            states = [torch.zeros(1, B, 4, dtype=DTYPE)]
            for t in range(T):
                states.append(step(copy, u[t], states[-1]))
            with torch.enable_grad():
                expected = layer_curve(copy, u, states)
            torch.testing.assert_close(rec.log10_norm, expected, atol=ATOL, rtol=0)
            u = torch.stack([s[0] for s in states[1:]])


# ---------------------------------------------------------------- the command line


def invoke(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        run(args)
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "wlm_models.py").write_text(textwrap.dedent(RNN_MODEL))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("rnn_type", RNN_TYPES)
def test_the_cli_traces_the_language_model_without_a_wrapper(
    rnn_type: str, train: bool, factory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tokens, targets = data()
    torch.save(tokens, factory / "tokens.pt")
    torch.save(targets, factory / "targets.pt")
    spec = f"wlm_models:build_{rnn_type.lower()}"
    mode = "train" if train else "eval"
    args = ["trace", "--model", spec, "--input", "tokens.pt", "--init-hidden"]
    args += ["--loss", "cross-entropy", "--target", "targets.pt", "--mode", mode]
    code, out, err = invoke([*args, "--seed", "5", "--json", "--device", "cpu"], capsys)
    assert code == 0, err
    got = TraceResult.from_dict(json.loads(out))
    model = build(rnn_type)
    hidden = model.init_hidden(B)
    want = trace(
        model, tokens, hidden, loss_fn=named_loss("cross-entropy"), target=targets, seed=5,
        mode=mode,
    )  # fmt: skip
    curves, profiles, loss = reference(model, tokens, hidden, targets, 5, train)
    assert got.mode == mode and got.dropout_seed == want.dropout_seed
    for g, w, curve, profile in zip(got.layers, want.layers, curves, profiles, strict=True):
        torch.testing.assert_close(g.log10_norm, w.log10_norm, atol=0, rtol=0)
        torch.testing.assert_close(g.log10_norm, curve, atol=ATOL, rtol=0)
        torch.testing.assert_close(g.loss_grad_log10, profile, atol=ATOL, rtol=0)
    assert got.loss == pytest.approx(loss, rel=1e-12)


def test_the_cli_takes_the_hidden_state_as_a_second_input(
    factory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = build("LSTM")
    tokens, _ = data()
    hidden = random_hidden(model)
    torch.save(tokens, factory / "tokens.pt")
    torch.save(hidden, factory / "hidden.pt")  # a tuple (h, c)
    args = ["trace", "--model", "wlm_models:build_lstm", "--input", "tokens.pt"]
    args += ["--input", "hidden.pt", "--mode", "eval", "--json", "--device", "cpu"]
    code, out, err = invoke(args, capsys)
    assert code == 0, err
    got = TraceResult.from_dict(json.loads(out))
    want = trace(model, tokens, hidden, mode="eval")
    for g, w in zip(got.layers, want.layers, strict=True):
        torch.testing.assert_close(g.log10_norm, w.log10_norm, atol=0, rtol=0)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--loss", "hinge"], "`--loss` must be one of mean-square, sum, cross-entropy"),
        (["--target", "targets.pt"], "`--target` needs a `--loss`"),
        (["--loss", "cross-entropy"], "`--target` is needed for cross-entropy"),
        (["--mode", "training"], "`--mode` must be one of model, train, eval"),
        (["--loss", "cross-entropy", "--target", "bad.pt"], "`--target` must give one class"),
    ],
)
def test_cli_loss_errors_are_one_sentence(
    extra: list[str], message: str, factory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tokens, targets = data()
    torch.save(tokens, factory / "tokens.pt")
    torch.save(targets, factory / "targets.pt")
    torch.save(targets[:2], factory / "bad.pt")
    args = ["trace", "--model", "wlm_models:build_gru", "--input", "tokens.pt", "--init-hidden"]
    code, _, err = invoke([*args, *extra], capsys)
    assert code == 2
    assert err.startswith("gradtrace: error: ") and message in err and err.count("\n") == 1


class KeywordTagger(nn.Module):
    """A forward that takes keywords only and returns a dict, and has its own `mode`."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(3, 6, batch_first=True, dtype=torch.float64)
        self.out = nn.Linear(6, 2, dtype=torch.float64)

    def forward(self, *, x: Tensor, mode: str = "mean") -> dict[str, Tensor]:
        h, _ = self.rnn(x)
        pooled = h.mean(1) if mode == "mean" else h[:, -1]
        return {"logits": self.out(pooled), "states": h}


def test_a_keyword_only_forward_is_called_with_its_keywords() -> None:
    # refused before as "`model` must be given its inputs ... got none"
    torch.manual_seed(0)
    model, x = KeywordTagger(), torch.randn(2, 9, 3, dtype=torch.float64)
    loss = lambda out: out["logits"].pow(2).sum()  # noqa: E731
    by_keyword = trace(model, x=x, loss_fn=loss)
    reference = trace(model.rnn, x)  # the same GRU on the same input
    layer = by_keyword.layers[0]
    assert torch.allclose(layer.log10_norm, reference.layers[0].log10_norm, rtol=0, atol=1e-12)
    assert layer.loss_grad_log10 is not None


def test_a_forward_option_named_like_a_trace_option_goes_through_forward_kwargs() -> None:
    torch.manual_seed(0)
    model, x = KeywordTagger(), torch.randn(2, 9, 3, dtype=torch.float64)
    loss = lambda out: out["logits"].pow(2).sum()  # noqa: E731
    with pytest.raises(GradtraceError) as refused:
        trace(model, x=x, loss_fn=loss, mode="last")  # the model's mode, read as trace's
    message = str(refused.value)
    assert message.startswith("`mode` must be one of model, train, eval, got 'last'")
    assert "`model.forward` also takes `mode`" in message and "forward_kwargs" in message
    last = trace(model, x=x, loss_fn=loss, forward_kwargs={"mode": "last"}, mode="eval")
    mean = trace(model, x=x, loss_fn=loss)
    # the same recurrence; the loss reads the last state only, so dL/dh_k differs
    assert torch.equal(last.layers[0].log10_norm, mean.layers[0].log10_norm)
    assert last.layers[0].loss_grad_log10 is not None and mean.layers[0].loss_grad_log10 is not None
    assert not torch.allclose(last.layers[0].loss_grad_log10, mean.layers[0].loss_grad_log10)
    with pytest.raises(GradtraceError, match="`forward_kwargs` must be a dict"):
        trace(model, x=x, forward_kwargs=["mode"])  # type: ignore[arg-type]


def test_an_input_that_is_not_a_tensor_is_named_by_its_type_and_the_modules_layout() -> None:
    # the message held the whole nested list (10 KB) and the time-major layout
    model = nn.LSTM(3, 4, batch_first=True)
    with pytest.raises(GradtraceError) as refused:
        trace(model, torch.randn(2, 5, 3).tolist())
    assert str(refused.value) == "the input of `model` (LSTM) must be a (B, T, I) tensor, got list"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_half_precision_model_is_measured_in_float32_from_its_own_states(
    dtype: torch.dtype,
) -> None:
    # LAPACK takes neither half type: the trace raised torch's NotImplementedError from eigh.
    # Reference: the same weights in float64 on the same (rounded) input; the half model's
    # own states differ by its rounding, so the curves agree to 0.05 decades, not 1e-12.
    torch.manual_seed(7)
    lstm = nn.LSTM(5, 16).to(dtype)
    x = torch.randn(12, 2, 5).to(dtype)
    before = {k: v.clone() for k, v in lstm.state_dict().items()}
    flow = trace(lstm, x).layers[0]
    wide = trace(copy.deepcopy(lstm).double(), x.double()).layers[0]
    assert flow.dtype == "float32"
    assert "Measured in float32 from the model's" in flow.note and str(dtype)[6:] in flow.note
    assert float((flow.log10_norm - wide.log10_norm).abs().max()) < 0.05
    assert all(torch.equal(v, lstm.state_dict()[k]) for k, v in before.items())
    assert next(lstm.parameters()).dtype == dtype


class Generator(nn.Module):
    """A GRUCell loop; with `feed` each next input is the readout of the state before."""

    def __init__(self, feed: bool) -> None:
        super().__init__()
        self.feed = feed
        self.cell = nn.GRUCell(3, 5, dtype=torch.float64)
        self.read = nn.Linear(5, 3, dtype=torch.float64)

    def forward(self, x: Tensor) -> Tensor:
        h, inputs, outs = x.new_zeros(x.shape[1], 5), x[0], []
        for t in range(x.shape[0]):
            h = self.cell(inputs, h)
            outs.append(self.read(h))
            inputs = outs[-1] if self.feed else x[min(t + 1, x.shape[0] - 1)]
        return torch.stack(outs)


def test_an_autoregressive_cell_loop_says_its_curve_holds_the_fed_back_input() -> None:
    # c(k) is the cell's own recurrence with x_t as given; a readout fed back adds a path
    # (a new user measured 0.45 decades more through it by autograd) that the note now names
    torch.manual_seed(0)
    x = torch.randn(8, 2, 3, dtype=torch.float64)
    loss = lambda out: out.pow(2).sum()  # noqa: E731
    fed = trace(Generator(feed=True), x, loss_fn=loss).layers[0]
    assert "All 8 calls but the first took an input computed from the state before" in fed.note
    forced = trace(Generator(feed=False), x, loss_fn=loss).layers[0]
    assert "autoregressive loop" not in forced.note and "Each call's input" not in forced.note
    unknown = trace(Generator(feed=True), x).layers[0]  # no graph without a loss
    assert "Each call's input is held as given" in unknown.note
