"""Find nn.RNN, nn.LSTM and nn.GRU inside a model and re-execute them step by step.

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
state. Inter-layer dropout is random, so a module that applies it (train mode, dropout > 0,
L > 1) is refused rather than re-executed without it.

Shapes: T time, B batch, I input, H hidden, P projection (P = H without one), S state (H for
RNN and GRU, P + H for LSTM), D directions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from gradtrace.cells import Cell, GRUWeights, LSTMWeights, RNNWeights, get_cell
from gradtrace.cells.lstm import lstm_cell_path_jacobian
from gradtrace.errors import GradtraceError, check

RECURRENT_TYPES: dict[type[nn.Module], str] = {nn.RNN: "rnn", nn.LSTM: "lstm", nn.GRU: "gru"}
DIRECTIONS = ("forward", "reverse")
_JACOBIAN_CHUNK = 64  # time steps whose Jacobians are evaluated in one batched call

Weights = RNNWeights | LSTMWeights | GRUWeights


def cell_name(module: nn.Module) -> str | None:
    """ "rnn", "lstm" or "gru" for an nn.RNN, nn.LSTM or nn.GRU (or a subclass); else None."""
    for kind, name in RECURRENT_TYPES.items():
        if isinstance(module, kind):
            return name
    return None


def find_recurrent(model: nn.Module) -> list[tuple[str, nn.RNNBase]]:
    """Every nn.RNN, nn.LSTM and nn.GRU inside `model`, by its dotted path ("" for the model)."""
    found = []
    for path, sub in model.named_modules():
        if cell_name(sub) is not None:
            assert isinstance(sub, nn.RNNBase)  # for the type checker
            found.append((path, sub))
    return found


def select_modules(
    model: nn.Module, module: str | nn.Module | None
) -> list[tuple[str, nn.RNNBase]]:
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
        f"`model` ({type(model).__name__}) holds no nn.RNN, nn.LSTM or nn.GRU to trace; "
        "measure any sequence model with gradtrace.tracing.input_sensitivity instead",
    )
    if module is None:
        return found
    paths = ", ".join(repr(path) for path, _ in found)
    for path, sub in found:
        if module is sub or module == path:
            return [(path, sub)]
    shown = module if isinstance(module, str) else type(module).__name__
    raise GradtraceError(f"`module` must be one of the recurrent modules {paths}, got {shown!r}")


def check_traceable(path: str, module: nn.RNNBase) -> None:
    """Refuse a module whose outputs its weights alone do not determine.

    Raises:
        GradtraceError: for inter-layer dropout in train mode or a subclass with its own forward.
    """
    name = f"`{path or 'model'}` ({type(module).__name__})"
    check(
        not (module.training and module.dropout > 0 and module.num_layers > 1),
        f"{name} applies dropout = {module.dropout} between layers in train mode, which a "
        "re-execution cannot reproduce; call model.eval() or set dropout to 0",
    )
    base = next(kind for kind in RECURRENT_TYPES if isinstance(module, kind))
    check(
        type(module).forward is base.forward,
        f"{name} overrides the forward of nn.{base.__name__}, so its weights do not determine "
        "its output; measure it with gradtrace.tracing.input_sensitivity instead",
    )


def layer_weights(module: nn.RNNBase, layer: int, direction: int) -> Weights:
    """The weights of one layer and direction as a cell's weights (detached, not copied).

    Args:
        module: An nn.RNN, nn.LSTM or nn.GRU.
        layer: 0..num_layers-1.
        direction: 0 (forward) or 1 (reverse, bidirectional modules only).
    """
    D = 2 if module.bidirectional else 1
    check(
        0 <= layer < module.num_layers and 0 <= direction < D,
        f"`layer` and `direction` must be in 0..{module.num_layers - 1} and 0..{D - 1}, "
        f"got {layer} and {direction}",
    )
    suffix = f"_l{layer}" + ("_reverse" if direction else "")
    p = {name: t.detach() for name, t in module.named_parameters()}
    W_ih, W_hh = p["weight_ih" + suffix], p["weight_hh" + suffix]
    b_ih = p.get("bias_ih" + suffix, W_ih.new_zeros(W_ih.shape[0]))
    b_hh = p.get("bias_hh" + suffix, W_hh.new_zeros(W_hh.shape[0]))
    kind = cell_name(module)
    if kind == "rnn":
        assert isinstance(module, nn.RNN)  # for the type checker
        return RNNWeights(W_hh, W_ih, b_ih + b_hh, module.nonlinearity)
    if kind == "lstm":
        return LSTMWeights(W_ih, W_hh, b_ih + b_hh, p.get("weight_hr" + suffix))
    return GRUWeights(W_ih, W_hh, b_ih, b_hh)


@dataclass(frozen=True, eq=False)
class LayerRun:
    """One layer and direction re-executed: its weights, inputs and states in its own order.

    Attributes:
        layer: The layer index l.
        direction: 0 (forward) or 1 (reverse).
        cell: The cell that re-executed it.
        weights: Its weights.
        inputs: What it read, in its own time order, shape (T, B, I_l).
        steps: The states s_0..s_T, each (B, S); they stay in the autograd graph when the
            re-execution ran with gradients on, so a loss can be differentiated by each.
    """

    layer: int
    direction: int
    cell: Cell
    weights: Weights
    inputs: Tensor
    steps: tuple[Tensor, ...]

    @property
    def states(self) -> Tensor:
        """s_0..s_T detached, shape (T + 1, B, S)."""
        return torch.stack([s.detach() for s in self.steps])

    @property
    def hidden_size(self) -> int:
        """P, the size of h (the first P entries of the state)."""
        w = self.weights
        return w.proj_size if isinstance(w, LSTMWeights) else w.hidden_size


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


def run_module(module: nn.RNNBase, x: Tensor, s0: Tensor) -> tuple[Tensor, list[LayerRun]]:
    """Re-execute every layer and direction of `module` on x from the initial states s0.

    Runs under whatever gradient mode is active; with gradients on, the states stay in the
    graph and an s_0 that needs none is made a leaf that does. (`run_trajectory` is not used
    because a loss must reach each state s_k itself, not a stacked copy, and because its
    Jacobians are wanted only afterwards, detached, in chunks; see `step_jacobians`.)

    Args:
        module: An nn.RNN, nn.LSTM or nn.GRU.
        x: The module's input, time-major and batched, shape (T, B, I).
        s0: Initial states from `initial_states`, shape (L D, B, S).

    Returns:
        The module's output sequence, shape (T, B, D P), and one `LayerRun` per layer and
        direction in PyTorch's order (l D + d).
    """
    cell = get_cell(cell_name(module) or "")
    D = 2 if module.bidirectional else 1
    runs: list[LayerRun] = []
    layer_input = x  # (T, B, I_l)
    for layer in range(module.num_layers):
        outputs = []
        for d in range(D):
            w = layer_weights(module, layer, d)
            u = layer_input.flip(0) if d else layer_input  # (T, B, I_l) in this direction's order
            start = s0[layer * D + d]
            if torch.is_grad_enabled() and not start.requires_grad:
                start = start.clone().requires_grad_(True)
            steps = [start]
            for u_t in u:  # the recurrence is sequential; its Jacobians are batched later
                steps.append(cell.step(w, u_t, steps[-1]))  # (B, S)
            run = LayerRun(layer, d, cell, w, u, tuple(steps))
            h = torch.stack(steps[1:])[..., : run.hidden_size]  # (T, B, P)
            outputs.append(h.flip(0) if d else h)
            runs.append(run)
        layer_input = torch.cat(outputs, dim=-1)  # (T, B, D P)
    return layer_input, runs


def final_states(module: nn.RNNBase, runs: list[LayerRun]) -> Tensor | tuple[Tensor, Tensor]:
    """PyTorch's h_n (L D, B, P), or (h_n, c_n) for an LSTM, from the re-executed runs."""
    last = torch.stack([run.steps[-1] for run in runs])  # (L D, B, S)
    P = runs[0].hidden_size
    if cell_name(module) == "lstm":
        return last[..., :P], last[..., P:]
    return last


def step_jacobians(run: LayerRun) -> Tensor:
    """J_1..J_T of a run, evaluated on its trajectory, shape (T, B, S, S).

    The states are known once the run is over, so the Jacobians of many steps are evaluated in
    one batched call of the cell's analytic Jacobian (T B rows at a time, in chunks).
    """
    states = run.states  # (T + 1, B, S)
    T, B, S = states.shape[0] - 1, states.shape[1], states.shape[2]
    u = run.inputs.detach()
    blocks = []
    for t0 in range(0, T, _JACOBIAN_CHUNK):
        t1 = min(T, t0 + _JACOBIAN_CHUNK)
        rows = (t1 - t0) * B
        J = run.cell.jacobian(
            run.weights, u[t0:t1].reshape(rows, -1), states[t0:t1].reshape(rows, S)
        )
        blocks.append(J.reshape(t1 - t0, B, S, S))
    return torch.cat(blocks)  # (T, B, S, S)


def cell_path_jacobians(run: LayerRun) -> Tensor | None:
    """LSTM only: dc_t/dc_{t-1} at fixed h_{t-1} = diag(f_t), shape (T, B, H, H); else None."""
    if not isinstance(run.weights, LSTMWeights):
        return None
    states = run.states  # (T + 1, B, S)
    T, B, S = states.shape[0] - 1, states.shape[1], states.shape[2]
    u = run.inputs.detach().reshape(T * B, -1)  # (T B, I_l)
    diag = lstm_cell_path_jacobian(run.weights, u, states[:-1].reshape(T * B, S))  # (T B, H, H)
    return diag.reshape(T, B, *diag.shape[1:])  # (T, B, H, H)


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
