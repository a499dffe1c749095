"""The models by name, and `build_model`, the one way to build one.

The keys of `MODELS` are the names the CLI takes; each value builds the model's recurrent core
with its initialisation, which its docstring states (`describe`). Every model is a
`SequenceModel`: the core, then a linear readout of h_t at every step, (B, T, I) -> (B, T, O),
the readout drawn as PyTorch's nn.Linear draws it, U(-1/sqrt(H), 1/sqrt(H)).

    fused (nn.RNN / LSTM / GRU)   tanh, relu, irnn, orthogonal, orthogonal-constrained, lstm,
                                  lstm-chrono, gru: `gradtrace.trace` and the monitor's
                                  through-time profile see them
    loops (`LoopRNN`)             sigmoid, skip: `gradtrace.trace_step(model.step, ...)`

orthogonal-constrained is fused: torch.nn.utils.parametrizations.orthogonal works on an
nn.RNN's weight_hh_l0 (nn.RNN re-reads its weights every forward, so the fused kernel gets
the parametrised W_hh, and its backward reaches the parametrisation's own parameter).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrizations

from gradtrace.errors import check, check_seed
from gradtrace.models import inits
from gradtrace.models.loops import LoopRNN
from gradtrace.models.sequence import SequenceModel


@dataclass(frozen=True)
class ModelOptions:
    """What a builder may use beyond the sizes.

    Attributes:
        t_max: The longest dependency in steps (lstm-chrono only).
        eps: The skip RNN's step size.
        generator: The CPU generator every draw comes from.
        dtype: The parameters' dtype.
    """

    t_max: int | None
    eps: float
    generator: torch.Generator
    dtype: torch.dtype


Builder = Callable[[int, int, ModelOptions], nn.Module]


def _rnn(I: int, H: int, nonlinearity: str, options: ModelOptions) -> nn.RNN:
    rnn = nn.RNN(I, H, nonlinearity=nonlinearity, batch_first=True, dtype=options.dtype)
    inits.uniform_default(rnn, H, options.generator)
    return rnn


def _lstm(I: int, H: int, options: ModelOptions) -> nn.LSTM:
    lstm = nn.LSTM(I, H, batch_first=True, dtype=options.dtype)
    inits.uniform_default(lstm, H, options.generator)
    return lstm


def _loop(I: int, H: int, activation: str, eps: float | None, options: ModelOptions) -> LoopRNN:
    loop = LoopRNN(I, H, activation, eps, dtype=options.dtype)
    inits.uniform_default(loop, H, options.generator)
    return loop


def tanh(I: int, H: int, options: ModelOptions) -> nn.Module:
    """nn.RNN, h_t = tanh(W_hh h_{t-1} + W_hx x_t + b_ih + b_hh); PyTorch's initialisation,
    every weight and bias U(-1/sqrt(H), 1/sqrt(H))."""
    return _rnn(I, H, "tanh", options)


def relu(I: int, H: int, options: ModelOptions) -> nn.Module:
    """nn.RNN, h_t = relu(W_hh h_{t-1} + W_hx x_t + b_ih + b_hh); PyTorch's initialisation,
    every weight and bias U(-1/sqrt(H), 1/sqrt(H))."""
    return _rnn(I, H, "relu", options)


def sigmoid(I: int, H: int, options: ModelOptions) -> nn.Module:
    """A loop (LoopRNN), h_t = sigmoid(W_hh h_{t-1} + W_hx x_t + b), one bias; W_hh, W_hx and
    b U(-1/sqrt(H), 1/sqrt(H)) as PyTorch's nn.RNN."""
    return _loop(I, H, "sigmoid", None, options)


def irnn(I: int, H: int, options: ModelOptions) -> nn.Module:
    """nn.RNN with relu, W_hh = I exactly, both biases exactly 0, W_hx ~ N(0, 0.001^2) (Le,
    Jaitly, Hinton 2015, "A simple way to initialize recurrent networks of rectified linear
    units")."""
    rnn = _rnn(I, H, "relu", options)
    inits.identity_relu(rnn, options.generator)
    return rnn


def orthogonal(I: int, H: int, options: ModelOptions) -> nn.Module:
    """nn.RNN with tanh, W_hh orthogonal at initialisation (nn.init.orthogonal_: the Q of a
    Gaussian matrix's QR), the rest U(-1/sqrt(H), 1/sqrt(H)); training may leave it
    non-orthogonal."""
    rnn = _rnn(I, H, "tanh", options)
    inits.orthogonal_recurrent(rnn, options.generator)
    return rnn


def orthogonal_constrained(I: int, H: int, options: ModelOptions) -> nn.Module:
    """nn.RNN with tanh, W_hh orthogonal at initialisation as `orthogonal` and kept orthogonal
    by torch.nn.utils.parametrizations.orthogonal on the fused module's weight_hh_l0 (its
    parameter is parametrizations.weight_hh_l0.original)."""
    rnn = _rnn(I, H, "tanh", options)
    inits.orthogonal_recurrent(rnn, options.generator)
    parametrizations.orthogonal(rnn, "weight_hh_l0")  # keeps the orthogonal W_hh it is given
    return rnn


def lstm(I: int, H: int, options: ModelOptions) -> nn.Module:
    """nn.LSTM with effective forget-gate bias exactly 1 (Jozefowicz, Zaremba, Sutskever
    2015, "An empirical exploration of recurrent network architectures"), written in
    bias_ih_l0 with bias_hh_l0's forget slice 0; everything else U(-1/sqrt(H), 1/sqrt(H)), so
    the i, g and o gates' effective biases are PyTorch's, a sum of two such draws."""
    module = _lstm(I, H, options)
    inits.forget_bias(module)
    return module


def lstm_chrono(I: int, H: int, options: ModelOptions) -> nn.Module:
    """nn.LSTM with the chrono initialisation (Tallec & Ollivier 2018, "Can recurrent neural
    networks warp time?"): effective b_f ~ log U(1, t_max - 1) and b_i = -b_f, written in
    bias_ih_l0 with bias_hh_l0's i and f slices 0; everything else U(-1/sqrt(H), 1/sqrt(H)).
    Needs `t_max` >= 3."""
    t_max = options.t_max
    check(
        isinstance(t_max, int) and not isinstance(t_max, bool) and t_max >= 3,
        "`t_max` must be a whole number of at least 3 for lstm-chrono (the longest "
        f"dependency, in steps), got {t_max!r}",
    )
    assert isinstance(t_max, int)  # for the type checker
    module = _lstm(I, H, options)
    inits.chrono(module, t_max, options.generator)
    return module


def gru(I: int, H: int, options: ModelOptions) -> nn.Module:
    """nn.GRU with PyTorch's initialisation, every weight and bias U(-1/sqrt(H), 1/sqrt(H))."""
    module = nn.GRU(I, H, batch_first=True, dtype=options.dtype)
    inits.uniform_default(module, H, options.generator)
    return module


def skip(I: int, H: int, options: ModelOptions) -> nn.Module:
    """A loop (LoopRNN), residual in time, h_t = h_{t-1} + eps tanh(W_hh h_{t-1} + W_hx x_t +
    b), J_t = I + eps diag(tanh'(a_t)) W_hh; W_hh, W_hx and b U(-1/sqrt(H), 1/sqrt(H))."""
    eps = options.eps
    check(
        isinstance(eps, int | float)
        and not isinstance(eps, bool)
        and math.isfinite(eps)
        and eps > 0,
        f"`eps` must be a finite number above 0 for the skip RNN, got {eps!r}",
    )
    return _loop(I, H, "tanh", float(eps), options)


MODELS: dict[str, Builder] = {
    "tanh": tanh,
    "relu": relu,
    "sigmoid": sigmoid,
    "irnn": irnn,
    "orthogonal": orthogonal,
    "orthogonal-constrained": orthogonal_constrained,
    "lstm": lstm,
    "lstm-chrono": lstm_chrono,
    "gru": gru,
    "skip": skip,
}


@dataclass(frozen=True)
class Footprint:
    """The shape of a model's step, for pricing work before the model is built.

    Attributes:
        gates: Weight blocks a step multiplies by (4 for an LSTM, 3 for a GRU, else 1).
        state: The state's size in units of H (2 for an LSTM's (h, c), else 1).
        loop: Whether the steps run in Python (`LoopRNN`), one call each, not a fused kernel.
        reparametrised: Whether every forward re-forms W_hh from a parametrisation (O(H^3)).
    """

    gates: int = 1
    state: int = 1
    loop: bool = False
    reparametrised: bool = False


_FOOTPRINTS = {
    "lstm": Footprint(gates=4, state=2),
    "lstm-chrono": Footprint(gates=4, state=2),
    "gru": Footprint(gates=3),
    "sigmoid": Footprint(loop=True),
    "skip": Footprint(loop=True),
    "orthogonal-constrained": Footprint(reparametrised=True),
}


def footprint(name: str) -> Footprint:
    """The `Footprint` of model `name`.

    Raises:
        GradtraceError: if `name` is not a key of `MODELS`.
    """
    return _FOOTPRINTS.get(_check_name(name), Footprint())


def _check_name(name: object) -> str:
    check(
        isinstance(name, str) and name in MODELS,
        f"`name` must be one of {', '.join(MODELS)}, got {name!r}",
    )
    assert isinstance(name, str)  # for the type checker
    return name


def describe(name: str) -> str:
    """The recurrence and initialisation of model `name`, in one paragraph.

    Raises:
        GradtraceError: if `name` is not a key of `MODELS`.
    """
    doc = MODELS[_check_name(name)].__doc__ or ""
    return " ".join(doc.split())


def _generator(seed: int, generator: torch.Generator | None) -> torch.Generator:
    check_seed(seed)
    if generator is None:
        return torch.Generator().manual_seed(seed)
    check(
        isinstance(generator, torch.Generator) and generator.device.type == "cpu",
        f"`generator` must be a CPU torch.Generator, got {generator!r}",
    )
    check(seed == 0, f"give `seed` or `generator`, not both; got seed = {seed} and a generator")
    return generator


def build_model(
    name: str,
    input_size: int,
    hidden_size: int,
    output_size: int,
    *,
    t_max: int | None = None,
    eps: float = 0.1,
    seed: int = 0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> SequenceModel:
    """The model `name`, initialised as `describe(name)` says, every draw from one generator.

    Args:
        name: A key of `MODELS`.
        input_size: I >= 1.
        hidden_size: H >= 1.
        output_size: O >= 1.
        t_max: lstm-chrono's longest dependency in steps (>= 3); the other models ignore it.
        eps: The skip RNN's step size (> 0); the other models ignore it.
        seed: Seeds a fresh generator when `generator` is None.
        generator: A CPU generator to draw from instead (it advances); not with `seed`.
        dtype: The parameters' dtype; draws are made in float64 and rounded to it.

    Returns:
        A `SequenceModel` on the CPU (move it with `.to(device)`); the same seed (or a
        generator in the same state) gives identical weights, and torch's global generator
        is left as it was.

    Raises:
        GradtraceError: on an unknown name, a size that is not a whole number >= 1, a bad
            `t_max` for lstm-chrono or `eps` for skip, or a bad seed, generator or dtype.

    Example:
        >>> model = build_model("irnn", 2, 16, 1, seed=3)
        >>> model(torch.zeros(4, 50, 2)).shape
        torch.Size([4, 50, 1])
    """
    builder = MODELS[_check_name(name)]
    for arg, value in (
        ("input_size", input_size),
        ("hidden_size", hidden_size),
        ("output_size", output_size),
    ):
        check(
            isinstance(value, int) and not isinstance(value, bool) and value >= 1,
            f"`{arg}` must be a whole number of at least 1, got {value!r}",
        )
    check(
        isinstance(dtype, torch.dtype) and dtype.is_floating_point,
        f"`dtype` must be a real floating-point torch.dtype, got {dtype!r}",
    )
    gen = _generator(seed, generator)
    options = ModelOptions(t_max, eps, gen, dtype)
    with torch.random.fork_rng(devices=[]):  # the modules' own default init draws globally
        core = builder(input_size, hidden_size, options)
        readout = nn.Linear(hidden_size, output_size, dtype=dtype)
    inits.uniform_default(readout, hidden_size, gen)
    return SequenceModel(name, core, readout)
