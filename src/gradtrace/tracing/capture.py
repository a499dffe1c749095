"""Run a model once with hooks on its recurrent modules and re-execute each one step by step.

A forward hook on each nn.RNN / nn.LSTM / nn.GRU and each nn.RNNCell / nn.LSTMCell /
nn.GRUCell sees what the module was given wherever it sits in the model (embedding -> LSTM ->
decoder, inside any wrapper, or in a Python loop), re-executes it with
`gradtrace.tracing.modules`, and, when asked to splice, returns the re-execution as the
module's output. The rest of the forward then depends on the re-executed states, so a loss can
be differentiated by every hidden state of every layer, which the fused kernel never exposes.

Calls chain into one recurrence. A module called again with the state its previous call
returned (`h = cell(x_t, h)`, `out, h = gru(x[t:t+1], h)`, also through detach or a copy with
the same values) continues that call's recurrence: each layer and direction becomes one
`Track` over all the chained calls, traced as if the module had run the whole sequence at
once. A call that does not continue the chain (a second, unrelated sequence) is counted but
not traced.

A PackedSequence is unpacked and its re-execution packed again as the module would have
returned it. Sequences of one length are traced like the padded batch; sequences of different
lengths end at different steps (and a reverse direction starts at each one's own last step),
so each length is re-executed as its own batch over its own T steps, as the module runs it,
and gives its own tracks (`Track.rows`: which sequences of the batch they are). Such a call
is not chained with others.

Shapes: T time, B batch, I input, S state (the flat state: h, or cat(h, c) for an LSTM).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from gradtrace.cells import Cell, Replay
from gradtrace.errors import check, described
from gradtrace.tracing.modules import (
    CELL_TYPES,
    LayerRun,
    cell_initial_state,
    check_traceable,
    final_states,
    initial_states,
    run_module,
    step_cell,
)


@dataclass
class Track:
    """One layer and direction of a module over the calls chained so far.

    Attributes:
        layer: The layer index.
        direction: 0 (forward) or 1 (reverse).
        cell: The cell that re-executes it.
        weights: Its weights.
        inputs: x_t (B, I) of every step, detached.
        states: s_0, s_1, ... (B, S) each; in the autograd graph when spliced.
        dropout: The rate at which its input was dropped (0 for layer 0 and in eval mode).
        rows: The sequences of the batch it follows, for one length of a PackedSequence of
            different lengths; None: all of them.
    """

    layer: int
    direction: int
    cell: Cell
    weights: Any
    inputs: list[Tensor] = field(default_factory=list)
    states: list[Tensor] = field(default_factory=list)
    dropout: float = 0.0
    rows: tuple[int, ...] | None = None

    def extend(self, run: LayerRun, first: bool) -> None:
        """Add the steps of one more call's run (its s_0 too, for the first call)."""
        graph = run.replay.graph or tuple(run.replay.states)
        if first:
            self.states.append(graph[0])
        self.inputs.extend(run.replay.inputs.unbind(0))
        self.states.extend(graph[1:])

    def replay(self, spliced: bool) -> Replay:
        """The whole track as one replay."""
        detached = torch.stack([s.detach() for s in self.states])  # (T + 1, B, S)
        inputs = torch.stack(self.inputs)  # (T, B, I)
        graph = tuple(self.states) if spliced else None
        return Replay(self.cell, self.weights, inputs, detached[:-1], detached[-1], graph)


@dataclass
class Call:
    """What one recurrent module did in the forward: its chained re-execution.

    Attributes:
        path: The module's dotted path in the model ("" for the model itself).
        module: The module.
        tracks: Its layers and directions over the traced chain of calls.
        calls: How many times the forward called it.
        chained: How many of those calls form the traced chain.
        output_error: Largest |re-executed output - module's own output| over the chain, None
            where dropout masks make them differ by design.
        returned: The state tensors the chain's last call returned, to recognise the next.
        closed: Whether a call has broken the chain (later calls are only counted).
        fed_back: Chained calls whose input was computed from the state the call before
            returned (an autoregressive loop), as far as the autograd graph shows it: only
            with a loss, when the forward runs with gradients.
        by_length: Whether its tracks follow a PackedSequence of different lengths, one
            length each (such a call is not chained with others).
    """

    path: str
    module: nn.Module
    tracks: list[Track] = field(default_factory=list)
    calls: int = 0
    chained: int = 0
    output_error: float | None = 0.0
    returned: list[Tensor] = field(default_factory=list)
    closed: bool = False
    fed_back: int = 0
    by_length: bool = False


def _label(call: Call) -> str:
    return f"`{call.path or 'model'}` ({type(call.module).__name__})"


def flat_state(state: Any) -> list[Tensor]:
    """The tensors of a recurrent state (None, a tensor, or nested tuples such as (h, c))."""
    if state is None:
        return []
    if isinstance(state, Tensor):
        return [state]
    return [t for part in state for t in flat_state(part)]


def depends_on(x: Tensor, states: list[Tensor], limit: int = 256) -> bool:
    """Whether the autograd graph of `x` reaches one of `states` within `limit` nodes: an
    input computed from the previous step's output (a readout fed back). False without a
    graph (gradients off), or when the path is longer than `limit` nodes."""
    targets = {t.grad_fn for t in states if t.grad_fn is not None}
    if x.grad_fn is None or not targets:
        return False
    seen: set[Any] = set()
    stack = [x.grad_fn]
    while stack and len(seen) < limit:
        node = stack.pop()
        if node in targets:
            return True
        if node in seen:
            continue
        seen.add(node)
        stack.extend(n for n, _ in node.next_functions if n is not None)
    return False


def continues(hx: Any, returned: list[Tensor]) -> bool:
    """Whether `hx` is the state the previous call returned (the same tensors or values)."""
    given = flat_state(hx)
    if not given or len(given) != len(returned):
        return False
    return all(
        a is b or (a.shape == b.shape and bool(torch.equal(a.detach(), b.detach())))
        for a, b in zip(given, returned, strict=True)
    )


def of_one_length(packed: PackedSequence) -> bool:
    """Whether the sequences of `packed` all have one length (all run at every step)."""
    return int(packed.batch_sizes[0]) == int(packed.batch_sizes[-1])


def packed_lengths(packed: PackedSequence) -> Tensor:
    """The length of each sequence of `packed`, (B,) in the batch's own order, read from its
    batch sizes (the sequence in sorted place j runs at the steps whose batch size is > j)."""
    sizes = packed.batch_sizes
    places = torch.arange(int(sizes[0]))
    lengths = (sizes.unsqueeze(0) > places.unsqueeze(1)).sum(1)  # in the sorted order
    unsorted = packed.unsorted_indices
    return lengths if unsorted is None else lengths[unsorted.cpu()]


def each_length(
    x: Tensor, lengths: Tensor, hx: Any, run: Callable[[Tensor, Any, int, Tensor], Any]
) -> tuple[Tensor, Any]:
    """Run a batch of sequences of different lengths one length at a time, longest first:
    `run(x_L, hx_L, L, rows)` gets the sequences of length L as one batch over their first L
    steps, x_L (L, B_L, I), with their rows of hx (a state (L D, B, ...) or a tuple of them,
    or None), and returns their output (L, B_L, F) and final state (a tensor or a tuple,
    batch on dim 1). Returns the output (T, B, F), zero past each sequence's end, and the
    final states, in the batch's order. A recurrent module of a PackedSequence runs so."""
    T, B = x.shape[0], x.shape[1]
    output: Tensor | None = None
    ends: list[Tensor] = []
    for length in torch.unique(lengths).flip(0).tolist():
        rows = torch.nonzero(lengths == length).flatten().to(x.device)
        given = None if hx is None else _rows_of(hx, rows)
        part, end = run(x[:length].index_select(1, rows), given, length, rows)
        if output is None:
            output = part.new_zeros(T, B, part.shape[-1])
        output = output.index_copy(
            1, rows, torch.cat([part, part.new_zeros(T - length, *part.shape[1:])])
        )
        parts = list(end) if isinstance(end, tuple) else [end]
        if not ends:
            ends = [e.new_zeros(e.shape[0], B, *e.shape[2:]) for e in parts]
        ends = [whole.index_copy(1, rows, e) for whole, e in zip(ends, parts, strict=True)]
    assert output is not None
    return output, (tuple(ends) if len(ends) > 1 else ends[0])


def _rows_of(state: Any, rows: Tensor) -> Any:
    """The batch rows `rows` (dim 1) of a state, or of each part of (h, c)."""
    if isinstance(state, tuple):
        return tuple(part.index_select(1, rows) for part in state)
    return state.index_select(1, rows)


def repacked(output: Tensor, like: PackedSequence) -> PackedSequence:
    """The padded (T, B, F) output laid out as `like` packs its input: at step t the first
    batch_sizes[t] sequences in its sorted order."""
    rows = output if like.sorted_indices is None else output.index_select(1, like.sorted_indices)
    sizes = like.batch_sizes.to(output.device)
    steps = torch.arange(rows.shape[1], device=output.device)
    valid = steps.unsqueeze(0) < sizes.unsqueeze(1)  # (T, B): time-major, as packed data is
    data = rows[: sizes.numel()][valid]
    return PackedSequence(data, like.batch_sizes, like.sorted_indices, like.unsorted_indices)


def _time_major(
    call: Call, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Tensor, Any, bool, PackedSequence | None]:
    """The module's input as (T, B, I) (a cell's as (B, I)), its hx batched, whether it came
    unbatched, and the PackedSequence it came as, if it did."""
    module = call.module
    is_cell = isinstance(module, CELL_TYPES)
    x = args[0] if args else kwargs.get("input")
    hx = args[1] if len(args) > 1 else kwargs.get("hx")
    if isinstance(x, PackedSequence) and not is_cell:
        return pad_packed_sequence(x)[0], hx, False, x  # the batch's own order, as hx's
    dims = (1, 2) if is_cell else (2, 3)
    batch_first = bool(getattr(module, "batch_first", False))
    layout = "(B, I)" if is_cell else "(B, T, I)" if batch_first else "(T, B, I)"
    check(
        isinstance(x, Tensor) and x.ndim in dims,
        f"the input of {_label(call)} must be a {layout} tensor, got {described(x)}",
    )
    assert isinstance(x, Tensor)  # for the type checker; `check` has just ensured it
    features = int(module.input_size)  # type: ignore[arg-type]
    check(
        x.shape[-1] == features,
        f"the input of {_label(call)} must have input_size = {features} features, got "
        f"{x.shape[-1]} (shape {tuple(x.shape)})",
    )
    if not is_cell:
        check(
            x.shape[-2 if x.ndim == 3 else 0] >= 1, f"the input of {_label(call)} has no time steps"
        )
    bad = int((~torch.isfinite(x.detach())).sum())
    check(bad == 0, f"the input of {_label(call)} must be finite, got {bad} NaN/Inf entries")
    if x.ndim == dims[0]:  # unbatched: PyTorch's hx then has no batch axis either
        axis = 0 if is_cell else 1
        if hx is not None:
            hx = (
                tuple(h.unsqueeze(axis) for h in hx)
                if isinstance(hx, tuple)
                else hx.unsqueeze(axis)
            )
        return x.unsqueeze(axis), hx, True, None
    if is_cell:
        return x, hx, False, None
    return (x.transpose(0, 1) if getattr(module, "batch_first", False) else x), hx, False, None


def _unbatch(value: Any, axis: int) -> Any:
    if isinstance(value, tuple):
        return tuple(v.squeeze(axis) for v in value)
    return value.squeeze(axis)


def _module_call(
    call: Call, x: Tensor, hx: Any, unbatched: bool, packed: PackedSequence | None, out: Any,
    gen: Any,
) -> Any:  # fmt: skip
    """An nn.RNN / LSTM / GRU call: re-execute it, extend the tracks, return the splice."""
    module = call.module
    assert isinstance(module, nn.RNNBase)
    s0 = initial_states(module, hx, x.shape[1], x)  # (L D, B, S)
    drop = gen if module.training and module.dropout > 0 and module.num_layers > 1 else None
    if packed is not None and not of_one_length(packed):
        output, last = _by_length(call, x, s0, packed_lengths(packed), drop)
    else:
        output, runs = run_module(module, x, s0, drop)  # (T, B, D P)
        first = not call.tracks
        for i, run in enumerate(runs):
            if first:
                call.tracks.append(_track(run, module.dropout if drop is not None else 0.0))
            call.tracks[i].extend(run, first)
        last = final_states(module, runs)  # (L D, B, P) or a pair with (L D, B, H)
    if unbatched:
        replay_out: Any = output[:, 0]
    elif packed is not None:
        replay_out = repacked(output, packed)
    else:
        replay_out = output.transpose(0, 1) if module.batch_first else output
    if drop is not None:
        call.output_error = None  # gradtrace's masks are not the module's own draws
    elif call.output_error is not None:
        mine, own = (replay_out.data, out[0].data) if packed else (replay_out, out[0])
        error = float((mine.detach() - own.detach()).abs().max())
        call.output_error = max(call.output_error, error)
    return replay_out, (_unbatch(last, 1) if unbatched else last)


def _track(run: LayerRun, rate: float, rows: tuple[int, ...] | None = None) -> Track:
    """A new track for a layer and direction's run; `rate`: the module's inter-layer dropout
    rate where it applies (layers after the first)."""
    w = run.replay.weights
    dropped = rate if run.layer > 0 else 0.0
    return Track(run.layer, run.direction, run.replay.cell, w, dropout=dropped, rows=rows)


def _by_length(
    call: Call, x: Tensor, s0: Tensor, lengths: Tensor, drop: torch.Generator | None
) -> tuple[Tensor, Any]:
    """Re-execute a PackedSequence of different lengths one length at a time: the sequences
    of length L as one batch over their first L steps, as the packed module runs them (a
    reverse direction starts at step L). Each length's layers and directions become their own
    tracks (`Track.rows`), longest first. Returns the padded output (T, B, D P), zero past
    each sequence's end, and h_n (or (h_n, c_n)) in the batch's order."""
    module = call.module
    assert isinstance(module, nn.RNNBase)
    call.by_length = True
    rate = module.dropout if drop is not None else 0.0

    def run(x_part: Tensor, s0_part: Tensor, length: int, rows: Tensor) -> tuple[Tensor, Any]:
        part, runs = run_module(module, x_part, s0_part, drop)
        for layer_run in runs:
            call.tracks.append(_track(layer_run, rate, tuple(rows.tolist())))
            call.tracks[-1].extend(layer_run, True)
        return part, final_states(module, runs)

    output, last = each_length(x, lengths, s0, run)
    call.tracks.sort(key=lambda track: (track.layer, track.direction))  # lengths stay in order
    return output, last


def _cell_call(call: Call, x: Tensor, hx: Any, unbatched: bool, out: Any) -> Any:
    """An nn.RNNCell / LSTMCell / GRUCell call: one step, appended to the track."""
    module = call.module
    s0 = cell_initial_state(module, hx, x.shape[0], x)  # (B, S)
    run, s1 = step_cell(module, x, s0)
    first = not call.tracks
    if first:
        call.tracks.append(Track(0, 0, run.replay.cell, run.replay.weights))
    call.tracks[0].extend(run, first)
    H = int(module.hidden_size)  # type: ignore[arg-type]
    result: Any = (s1[:, :H], s1[:, H:]) if isinstance(module, nn.LSTMCell) else s1
    result = _unbatch(result, 0) if unbatched else result  # the layout the cell returns
    if call.output_error is not None:
        pairs = zip(flat_state(result), flat_state(out), strict=True)
        error = max(float((a.detach() - b.detach()).abs().max()) for a, b in pairs)
        call.output_error = max(call.output_error, error)
    return result


def _hook(call: Call, splice: bool, gen: torch.Generator | None) -> Any:
    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Any:
        call.calls += 1
        if call.closed:
            return None
        x, hx, unbatched, packed = _time_major(call, args, kwargs)
        one_length = packed is None or of_one_length(packed)
        chained = one_length and not call.by_length and continues(hx, call.returned)
        if call.tracks and not chained:
            call.closed = True  # a new, unrelated sequence: counted, not traced
            return None
        call.chained += 1
        if call.tracks and depends_on(x, call.returned):
            call.fed_back += 1
        if isinstance(module, CELL_TYPES):
            result = _cell_call(call, x, hx, unbatched, out)
            state = result
        else:
            result = _module_call(call, x, hx, unbatched, packed, out, gen)
            state = result[1]
        if not splice:  # the model goes on with its own outputs: recognise those next time
            own = out if isinstance(module, CELL_TYPES) else out[1]
            call.returned = flat_state(own)
            return None
        call.returned = flat_state(state)
        return result

    return hook


def _check_hook(call: Call) -> Any:
    """Check the input before the module's own forward, whose errors are harder to read."""

    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if call.calls == 0:
            _time_major(call, args, kwargs)

    return hook


@contextmanager
def capture(
    targets: list[tuple[str, nn.Module]],
    *,
    splice: bool,
    generator: torch.Generator | None = None,
) -> Iterator[list[Call]]:
    """Hook `targets` for the duration of the block; yields one `Call` per target.

    Args:
        targets: (path, module) pairs, e.g. from `select_modules`.
        splice: Return the re-execution as each module's output (needed for a loss).
        generator: Draws the inter-layer dropout masks of modules in train mode.

    Raises:
        GradtraceError: from the forward, if a module cannot be traced or gets bad input.
    """
    calls = []
    handles = []
    for path, module in targets:
        check_traceable(path, module)
        call = Call(path, module)
        calls.append(call)
        handles.append(module.register_forward_pre_hook(_check_hook(call), with_kwargs=True))
        handles.append(
            module.register_forward_hook(_hook(call, splice, generator), with_kwargs=True)
        )
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


def loss_gradients(loss: Tensor, calls: list[Call]) -> dict[tuple[int, int], Tensor]:
    """dL/ds_k for every track, as (T + 1, B, S) tensors keyed by (call index, track index).

    A state that the loss does not reach gets a zero gradient.
    """
    keys = [(c, i) for c, call in enumerate(calls) for i in range(len(call.tracks))]
    states = [s for call in calls for track in call.tracks for s in track.states]
    grads = torch.autograd.grad(loss, states, allow_unused=True, materialize_grads=True)
    out, at = {}, 0
    for c, i in keys:
        n = len(calls[c].tracks[i].states)
        out[(c, i)] = torch.stack(grads[at : at + n])  # (T + 1, B, S)
        at += n
    return out
