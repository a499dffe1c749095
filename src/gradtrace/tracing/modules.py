"""Find recurrent modules inside a model and re-execute them step by step.

PyTorch runs a recurrent module as one fused kernel (cuDNN, MKL-DNN or ATen's own loop) that
shows neither the states of the inner layers nor any step Jacobian. This module reads the
module's parameters per layer and direction, rebuilds each as a cell of `gradtrace.cells`, and
runs the recurrence again step by step. That gives the states s_0..s_T, and the cells' analytic
derivatives give every step Jacobian J_t = ds_t/ds_{t-1}, exact up to the dtype's rounding.

PyTorch's layout of a module with L layers and D directions:

    layer 0 reads the module's input x_1..x_T (I features)
    layer l > 0 reads cat(h^(l-1, forward)_t, h^(l-1, reverse)_t)      (D P features)
    the forward direction reads x_1, ..., x_T; the reverse direction reads x_T, ..., x_1
    the initial state of layer l, direction d is h0[l D + d] (and c0[l D + d]); zeros if absent

Each direction keeps its own time order: step t of the reverse direction reads x_{T-t+1}, so
its s_T is the state after reading x_1 (PyTorch's h_n[l D + 1]) and its k = 0 is its initial
state. In train mode a module with dropout > 0 and L > 1 drops each layer's input but the
first with its own rate; the re-execution draws those masks from gradtrace's own seeded
generator (`dropout_mask`), so the recurrence is the one training runs, and reproducible.

The cells nn.RNNCell, nn.LSTMCell and nn.GRUCell are re-executed one call (one step) at a time;
`gradtrace.tracing.capture` chains the calls of a loop into one recurrence.

Shapes: T time, B batch, I input, H hidden, P projection (P = H without one), S state (H for
RNN and GRU, P + H for LSTM), D directions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from gradtrace.cells import Replay, cell_name, get_cell, replay, weights_from_torch
from gradtrace.errors import GradtraceError, check

MODULE_TYPES: tuple[type[nn.Module], ...] = (nn.RNN, nn.LSTM, nn.GRU)
CELL_TYPES: tuple[type[nn.Module], ...] = (nn.RNNCell, nn.LSTMCell, nn.GRUCell)
RECURRENT_TYPES = MODULE_TYPES + CELL_TYPES
DIRECTIONS = ("forward", "reverse")


def find_recurrent(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every recurrent module and cell inside `model`, by dotted path ("" for the model)."""
    return [(path, sub) for path, sub in model.named_modules() if isinstance(sub, RECURRENT_TYPES)]


def select_modules(model: nn.Module, module: str | nn.Module | None) -> list[tuple[str, nn.Module]]:
    """The recurrent modules to trace: all of them, or the one named by path or given.

    Raises:
        GradtraceError: if `model` holds no recurrent module, or `module` names none of them.
    """
    check(
        isinstance(model, nn.Module),
        f"`model` must be a torch.nn.Module, got {type(model).__name__}",
    )
    found = find_recurrent(model)
    check(
        bool(found),
        f"`model` ({type(model).__name__}) holds no nn.RNN, nn.LSTM, nn.GRU or recurrent cell "
        "to trace; for a cell written by hand, trace its step function with `trace_step(step, "
        "inputs, s0)`, and measure any sequence model with `input_sensitivity`",
    )
    if module is None:
        return found
    for path, sub in found:
        if module is sub or module == path:
            return [(path, sub)]
    shown = module if isinstance(module, str) else type(module).__name__
    if found == [("", model)]:  # a bare nn.LSTM: nothing inside it to choose
        raise GradtraceError(
            f"`module` names a submodule, got {shown!r}, but the model is itself the one "
            f"recurrent module ({type(model).__name__}); leave `module` out"
        )
    paths = ", ".join(repr(path) if path else "'' (the model itself)" for path, _ in found)
    raise GradtraceError(f"`module` must be one of the recurrent modules {paths}, got {shown!r}")


def check_traceable(path: str, module: nn.Module) -> None:
    """Refuse a module whose outputs its weights alone do not determine.

    Raises:
        GradtraceError: for a subclass with its own forward.
    """
    name = f"`{path or 'model'}` ({type(module).__name__})"
    base = next(kind for kind in RECURRENT_TYPES if isinstance(module, kind))
    check(
        type(module).forward is base.forward,
        f"{name} overrides the forward of nn.{base.__name__}, so its weights do not determine "
        "its output; measure it with `input_sensitivity` instead",
    )


def dropout_mask(rate: float, like: Tensor, generator: torch.Generator) -> Tensor:
    """A dropout mask of `like`'s shape, 0 with probability `rate` and 1 / (1 - rate) else,
    drawn from `generator` (PyTorch's nn.Dropout, with gradtrace's own seeded draws)."""
    keep = 1.0 - rate
    draw = torch.rand(like.shape, generator=generator, device=generator.device)
    return (draw < keep).to(like.dtype).to(like.device) / keep


@dataclass(frozen=True, eq=False)
class LayerRun:
    """One layer and direction re-executed: the replay of its recurrence in its own order.

    Attributes:
        layer: The layer index l.
        direction: 0 (forward) or 1 (reverse).
        replay: Its cell, weights, inputs and states; `replay.graph` holds the states in the
            autograd graph when the re-execution ran with gradients on.
    """

    layer: int
    direction: int
    replay: Replay

    @property
    def proj_size(self) -> int:
        """P, the size of h (the first P entries of the state)."""
        return int(self.replay.weights.proj_size)


def own_batch_first(model: Any) -> bool:
    """The input layout a model declares: True when its nn.RNN / LSTM / GRU modules all take
    (B, T, ...) input (batch_first=True); without such modules, `batch_first` of its first
    submodule that has one (a TransformerEncoderLayer, say); else False (and for callables
    that are not modules)."""
    if not isinstance(model, nn.Module):
        return False
    flags = {bool(m.batch_first) for m in model.modules() if isinstance(m, nn.RNNBase)}
    if flags:
        return flags == {True}
    for module in model.modules():
        value = getattr(module, "batch_first", None)
        if isinstance(value, bool):
            return value
    return False


def initial_states(module: nn.RNNBase, hx: Any, batch: int, like: Tensor) -> Tensor:
    """Flat initial states s_0 per layer and direction, shape (L D, B, S).

    Args:
        module: The recurrent module.
        hx: What the module was given: None, h0 (L D, B, P), or (h0, c0) for an LSTM; batched.
        batch: B.
        like: A tensor with the dtype and device of the states.
    """
    D = 2 if module.bidirectional else 1
    P = module.proj_size if getattr(module, "proj_size", 0) else module.hidden_size
    h_shape = (module.num_layers * D, batch, P)
    c_shape = (module.num_layers * D, batch, module.hidden_size)
    is_lstm = cell_name(module) == "lstm"
    if hx is None:
        shape = (h_shape[0], batch, P + (module.hidden_size if is_lstm else 0))
        return like.new_zeros(shape)
    parts = list(hx) if is_lstm else [hx]
    expected = [h_shape, c_shape] if is_lstm else [h_shape]
    got = [tuple(t.shape) for t in parts]
    check(
        got == expected,
        f"`hx` of the recurrent module must have shapes {expected}, got {got}",
    )
    return torch.cat(parts, dim=-1).to(like)  # (L D, B, S)


def run_module(
    module: nn.RNNBase, x: Tensor, s0: Tensor, generator: torch.Generator | None = None
) -> tuple[Tensor, list[LayerRun]]:
    """Re-execute every layer and direction of `module` on x from the initial states s0.

    Runs under whatever gradient mode is active; with gradients on, the states stay in the
    graph and an s_0 that needs none is made a leaf that does, so that a loss reaches each s_k.

    Args:
        module: An nn.RNN, nn.LSTM or nn.GRU.
        x: The module's input, time-major and batched, shape (T, B, I).
        s0: Initial states from `initial_states`, shape (L D, B, S).
        generator: With it, the inputs of layers 1..L-1 are dropped at the module's rate
            (train mode); None re-executes without dropout (eval mode).

    Returns:
        The module's output sequence, shape (T, B, D P), and one `LayerRun` per layer and
        direction in PyTorch's order (l D + d).
    """
    cell = get_cell(cell_name(module) or "")
    D = 2 if module.bidirectional else 1
    runs: list[LayerRun] = []
    layer_input = x  # (T, B, I_l)
    for layer in range(module.num_layers):
        if layer and generator is not None and module.dropout > 0:
            layer_input = layer_input * dropout_mask(module.dropout, layer_input, generator)
        outputs = []
        for d in range(D):
            w = weights_from_torch(module, layer, d)
            u = layer_input.flip(0) if d else layer_input  # (T, B, I_l) in this direction's order
            start = s0[layer * D + d]
            if torch.is_grad_enabled() and not start.requires_grad:
                start = start.clone().requires_grad_(True)
            run = LayerRun(layer, d, replay(cell, w, u, start))
            steps = run.replay.graph or tuple(run.replay.states)
            h = torch.stack(steps[1:])[..., : run.proj_size]  # (T, B, P)
            outputs.append(h.flip(0) if d else h)
            runs.append(run)
        layer_input = torch.cat(outputs, dim=-1)  # (T, B, D P)
    return layer_input, runs


def _final(run: LayerRun) -> Tensor:
    graph = run.replay.graph
    if graph is not None:
        return graph[-1]
    assert run.replay.final is not None  # a trajectory replay always has its last state
    return run.replay.final


def step_cell(module: nn.Module, x: Tensor, s0: Tensor) -> tuple[LayerRun, Tensor]:
    """One call of an nn.RNNCell / nn.LSTMCell / nn.GRUCell re-executed: its one-step run and
    the new flat state s_1 (B, S), in the graph when gradients are on."""
    cell = get_cell(cell_name(module) or "")
    w = weights_from_torch(module)
    start = s0
    if torch.is_grad_enabled() and not start.requires_grad:
        start = start.clone().requires_grad_(True)
    run = LayerRun(0, 0, replay(cell, w, x.unsqueeze(0), start))
    return run, (run.replay.graph or (run.replay.states[-1],))[-1]


def cell_initial_state(module: nn.Module, hx: Any, batch: int, like: Tensor) -> Tensor:
    """The flat state s_0 (B, S) of a cell call: cat(h, c) for an LSTMCell, h otherwise."""
    H = int(module.hidden_size)  # type: ignore[arg-type]
    is_lstm = isinstance(module, nn.LSTMCell)
    if hx is None:
        return like.new_zeros(batch, 2 * H if is_lstm else H)
    parts = list(hx) if is_lstm else [hx]
    expected = [(batch, H)] * len(parts)
    got = [tuple(t.shape) for t in parts]
    check(got == expected, f"`hx` of the recurrent cell must have shapes {expected}, got {got}")
    return torch.cat(parts, dim=-1).to(like)


def final_states(module: nn.RNNBase, runs: list[LayerRun]) -> Tensor | tuple[Tensor, Tensor]:
    """PyTorch's h_n (L D, B, P), or (h_n, c_n) for an LSTM, from the re-executed runs."""
    last = torch.stack([_final(run) for run in runs])  # (L D, B, S)
    P = runs[0].proj_size
    if cell_name(module) == "lstm":
        return last[..., :P], last[..., P:]
    return last


def eager_recurrent(script: nn.Module) -> nn.RNNBase:
    """An eager nn.RNN / nn.LSTM / nn.GRU equal to a TorchScript one (same weights and mode).

    TorchScript modules take no hooks, so only a bare recurrent module can be traced; it is
    rebuilt from its scripted attributes and state dict.

    Raises:
        GradtraceError: if `script` is any other TorchScript module.
    """
    kind = str(getattr(script, "original_name", type(script).__name__))
    classes: dict[str, type[nn.RNNBase]] = {"RNN": nn.RNN, "LSTM": nn.LSTM, "GRU": nn.GRU}
    check(
        kind in classes,
        f"`model` is a TorchScript {kind}, which takes no hooks, so trace cannot reach its "
        "recurrent layers; trace the eager module (torch.save it, or give a factory) instead",
    )
    names = ["input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout"]
    names += ["bidirectional", *{"LSTM": ["proj_size"], "RNN": ["nonlinearity"]}.get(kind, [])]
    options: dict[str, Any] = {name: getattr(script, name) for name in names}
    first = next(script.parameters())
    eager = classes[kind](**options, device=first.device, dtype=first.dtype)
    eager.load_state_dict(script.state_dict())
    return eager.train(script.training)
