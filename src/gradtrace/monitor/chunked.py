"""Gradient flow through time inside a training step, fused kernels included.

On a monitored step each nn.RNN / nn.LSTM / nn.GRU runs its forward layer by layer and
direction by direction as consecutive chunks of K steps: the module's own fused kernel
(`torch._VF.lstm` and friends, as nn.LSTM.forward calls it) on each chunk, the state passed
from one chunk to the next. It is the same arithmetic as the one fused call, so outputs and
parameter gradients are the same (in train mode the dropout between layers is drawn by
`torch.nn.functional.dropout`, from the same distribution). What it adds is access to the
states at the chunk boundaries. The state a chunk returns, h_b, is used twice: as the output at
step b (by the layer above, or the head) and as the next chunk's initial state. The fused call
returns those as two tensors, so tensor hooks split dL/dh_b into

    recurrent   the gradient of the state passed on: what flows back through time from the
                steps after b
    direct      the gradient of the output at step b
    total       their sum, dL/dh_b

and, for an LSTM, the part of dL/dc_b passed on to the next chunk (the cell state's own use
in h_b = o_b tanh(c_b) is inside the chunk's kernel and reaches c_b through dL/dh_b), and
dL/dh_0 at the initial state
(what truncated BPTT throws away). The hooks store gradients on the device; norms are taken
once, at the end of the step (`Profiler.profiles`). On the lag schedule the direct gradient of
every step and each layer's input are kept as well, for `gradtrace.monitor.lags`.

Cells called in a loop (`h, c = cell(x_t, (h, c))` over nn.RNNCell / LSTMCell / GRUCell, as in
pytorch/examples' time_sequence_prediction) already run one step per call, so nothing is
re-run: each call is the cell's own forward, and a call that receives the state the previous
call returned (`gradtrace.tracing.capture.continues`) extends that chain. Every K-th state
(K = `chunk`, or `CELL_CHUNK`, since the loop's length is known only when it ends) and the
last one keep a hook on the h the cell returned, which receives all of dL/dh_b (total); the
next call gets that state through aliases (`view_as`, the same values) whose hooks receive
what flows back through the recurrence (recurrent, and an LSTM's dL/dc_b). Any other use of
h_b (the next layer, a head) is the direct part: total - recurrent (a difference, so a direct
part under the dtype's rounding of the total, about 1e-7 of it in float32, reads as that
rounding). A new, unrelated chain
(the next sequence) starts a new record; the profile is the last chain's, of two steps or
more. Lag shares are measured for the fused modules only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from gradtrace.records.monitor import TimeProfile
from gradtrace.tracing.capture import continues, flat_state
from gradtrace.tracing.modules import CELL_TYPES, DIRECTIONS, MODULE_TYPES, cell_name

CHUNK_MIN, CHUNK_MAX, CHUNKS = 25, 50, 8  # K: T / 8 steps, within [25, 50], at most T / 2
CELL_CHUNK = CHUNK_MIN  # K for a loop over a cell, whose length is unknown while it runs


def chunk_size(steps: int, chunk: int | None) -> int:
    """K for a sequence of T steps: `chunk` if given, else T / 8 within [25, 50] (fewer,
    larger chunks would hide more, more chunks cost kernel launches), and at most T / 2, so
    that a short sequence still has a boundary before its last step."""
    if chunk is not None:
        return chunk
    return min(max(CHUNK_MIN, min(CHUNK_MAX, math.ceil(steps / CHUNKS))), max(1, (steps + 1) // 2))


@dataclass
class LayerRecord:
    """The gradients one layer and direction received at its boundaries in one forward."""

    module: str
    layer: int
    direction: int
    cell: str
    steps: int
    chunk: int
    boundaries: list[int] = field(default_factory=list)
    recurrent: dict[int, Tensor] = field(default_factory=dict)
    direct: dict[int, Tensor] = field(default_factory=dict)
    cell_state: dict[int, Tensor] = field(default_factory=dict)
    initial: list[Tensor] = field(default_factory=list)
    outputs_grad: dict[int, Tensor] = field(default_factory=dict)  # chunk start -> (t, B, P)
    totals: dict[int, Tensor] = field(default_factory=dict)  # a cell loop's dL/dh_b (total)
    loop: bool = False  # calls of a cell chained in a loop, rather than a module's chunks
    inputs: Tensor | None = None  # (T, B, I) what the layer read, its own time order
    s0: Tensor | None = None  # (B, S) its initial state


def _store(slot: dict[int, Tensor] | list[Tensor], key: int | None = None) -> Callable:
    def hook(grad: Tensor | None) -> None:
        if grad is None:  # autograd passes None where no gradient reached the tensor
            return
        if isinstance(slot, list):
            slot.append(grad.detach())
        else:
            assert key is not None
            slot[key] = grad.detach()

    return hook


def _layer_weights(module: nn.RNNBase, layer: int, reverse: bool) -> list[Tensor]:
    suffix = f"_l{layer}" + ("_reverse" if reverse else "")
    names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if module.bias else [])
    if getattr(module, "proj_size", 0):
        names.append("weight_hr")
    return [getattr(module, name + suffix) for name in names]


def _fused(module: nn.RNNBase, x: Tensor, state: Any, weights: list[Tensor]) -> tuple[Tensor, Any]:
    """One layer, one direction, one chunk through the module's own kernel (time-major)."""
    args = (weights, module.bias, 1, 0.0, module.training, False, False)
    if isinstance(module, nn.LSTM):
        out, h, c = torch._VF.lstm(x, list(state), *args)
        return out, (h, c)
    if isinstance(module, nn.GRU):
        out, h = torch._VF.gru(x, state, *args)
        return out, h
    run = torch._VF.rnn_tanh if module.nonlinearity == "tanh" else torch._VF.rnn_relu
    out, h = run(x, state, *args)
    return out, h


def _initial(module: nn.RNNBase, hx: Any, index: int, batch: int, like: Tensor) -> Any:
    """The initial state of layer-direction `index`, a tensor that takes a gradient hook."""
    P = module.proj_size if getattr(module, "proj_size", 0) else module.hidden_size
    is_lstm = isinstance(module, nn.LSTM)
    if hx is None:
        h = like.new_zeros(1, batch, P)
        c = like.new_zeros(1, batch, module.hidden_size) if is_lstm else None
    else:
        h = (hx[0] if is_lstm else hx)[index : index + 1]
        c = hx[1][index : index + 1] if is_lstm else None
    if not h.requires_grad:  # a carried, detached state: a leaf of its own, for dL/dh_0
        h = h.detach().requires_grad_(True)
    return (h, c) if is_lstm else h


def chunked_forward(
    module: nn.RNNBase,
    record: list[LayerRecord],
    path: str,
    chunk: int | None,
    keep: bool,
    on_packed: Callable[[str], None] | None = None,
) -> Callable[..., Any]:
    """A forward for `module` that runs in chunks and records into `record`; it takes and
    returns what the module's forward does. A PackedSequence goes to the module's own forward
    (not profiled: its sequences end at different steps), and `on_packed` hears of it."""
    own = type(module).forward

    def forward(input: Any, hx: Any = None) -> Any:
        packed, grad = isinstance(input, PackedSequence), torch.is_grad_enabled()
        if packed or not grad:
            if packed and grad and on_packed is not None:
                on_packed(path)
            return own(module, input, hx)
        unbatched = input.dim() == 2
        x = input.unsqueeze(1) if unbatched else input
        x = x.transpose(0, 1) if module.batch_first and not unbatched else x  # (T, B, I)
        if unbatched and hx is not None:
            hx = tuple(h.unsqueeze(1) for h in hx) if isinstance(hx, tuple) else hx.unsqueeze(1)
        T, B = x.shape[0], x.shape[1]
        K = chunk_size(T, chunk)
        D = 2 if module.bidirectional else 1
        cell = cell_name(module) or ""
        layer_input = x
        finals_h, finals_c = [], []
        for layer in range(module.num_layers):
            if layer and module.training and module.dropout > 0:
                layer_input = F.dropout(layer_input, module.dropout, training=True)
            outputs = []
            for d in range(D):
                rec = LayerRecord(path, layer, d, cell, T, K)
                record.append(rec)
                u = layer_input.flip(0) if d else layer_input  # its own time order
                weights = _layer_weights(module, layer, bool(d))
                state = _initial(module, hx, layer * D + d, B, x)
                h0 = state[0] if isinstance(state, tuple) else state
                h0.register_hook(_store(rec.initial))
                if keep:
                    rec.inputs = u.detach()
                    h0d = h0.detach()[0]
                    rec.s0 = torch.cat([h0d, state[1].detach()[0]], -1) if cell == "lstm" else h0d
                chunks = []
                for start in range(0, T, K):
                    stop = min(T, start + K)
                    out, state = _fused(module, u[start:stop], state, weights)
                    rec.boundaries.append(stop)
                    if out.requires_grad:
                        out.register_hook(_last(rec.direct, stop, rec.outputs_grad, start, keep))
                        h_next = state[0] if isinstance(state, tuple) else state
                        h_next.register_hook(_store(rec.recurrent, stop))
                        if isinstance(state, tuple):
                            state[1].register_hook(_store(rec.cell_state, stop))
                    chunks.append(out)
                out = torch.cat(chunks)  # (T, B, P)
                outputs.append(out.flip(0) if d else out)
                finals_h.append(state[0] if isinstance(state, tuple) else state)
                if isinstance(state, tuple):
                    finals_c.append(state[1])
            layer_input = torch.cat(outputs, dim=-1)  # (T, B, D P)
        output = layer_input
        h_n: Any = torch.cat(finals_h)  # (L D, B, P)
        if finals_c:
            h_n = (h_n, torch.cat(finals_c))
        if unbatched:
            output = output[:, 0]
            h_n = tuple(h[:, 0] for h in h_n) if isinstance(h_n, tuple) else h_n[:, 0]
        elif module.batch_first:
            output = output.transpose(0, 1)
        return output, h_n

    return forward


@dataclass
class _Chain:
    """A cell's current chain of calls: its record, what the last call returned, and that
    call's hooks (removed when the state turns out to be neither a boundary nor the last)."""

    rec: LayerRecord
    returned: list[Tensor]
    handles: list[Any]


def _cell_start(module: nn.Module, x: Tensor, hx: Any, rec: LayerRecord) -> Any:
    """The chain's initial state as the cell would use it (zeros when `hx` is None), through
    an alias whose hook receives dL/dh_0."""
    H = int(module.hidden_size)  # type: ignore[arg-type]
    if hx is None:
        zeros = x.new_zeros(*x.shape[:-1], H)
        hx = (zeros, zeros) if isinstance(module, nn.LSTMCell) else zeros
    h = hx[0] if isinstance(hx, tuple) else hx
    h = h.view_as(h) if h.requires_grad else h.detach().requires_grad_(True)
    h.register_hook(_store(rec.initial))
    return (h, *hx[1:]) if isinstance(hx, tuple) else h


def _aliased(hx: Any, rec: LayerRecord) -> Any:
    """The state passed on at boundary b = rec.steps through aliases whose hooks receive the
    recurrent part of dL/dh_b and, for an LSTM, dL/dc_b as a state of the recurrence (the
    part that flows through the next step; the cell's own h_b = o_b tanh(c_b) is not a use
    of the state passed on, as in the fused kernel's)."""
    slots = (rec.recurrent, rec.cell_state)
    parts = hx if isinstance(hx, tuple) else (hx,)
    aliases = []
    for part, slot in zip(parts, slots, strict=False):
        alias = part.view_as(part)
        if alias.requires_grad:
            alias.register_hook(_store(slot, rec.steps))
        aliases.append(alias)
    return tuple(aliases) if isinstance(hx, tuple) else aliases[0]


def cell_forward(
    module: nn.Module, record: list[LayerRecord], path: str, chunk: int | None
) -> Callable[..., Any]:
    """A forward for a recurrent cell that chains its calls and records their boundary
    gradients into `record` (see the module docstring); it takes and returns what the cell's
    forward does."""
    own = type(module).forward
    K = chunk or CELL_CHUNK
    cell = cell_name(module) or ""
    current: _Chain | None = None  # the chain the next call may continue

    def forward(input: Tensor, hx: Any = None) -> Any:
        nonlocal current
        if not torch.is_grad_enabled():
            return own(module, input, hx)
        if current is not None and continues(hx, current.returned):
            rec = current.rec
            if rec.steps % K:  # the previous state is not a boundary: drop its hooks
                for handle in current.handles:
                    handle.remove()
            else:  # a boundary: what reaches the aliases flows back through the recurrence
                hx = _aliased(hx, rec)
        else:
            rec = LayerRecord(path, 0, 0, cell, 0, K, loop=True)
            record.append(rec)
            current = _Chain(rec, [], [])
            hx = _cell_start(module, input, hx, rec)
        out = own(module, input, hx)
        rec.steps += 1
        h = out[0] if isinstance(out, tuple) else out
        handles = [h.register_hook(_store(rec.totals, rec.steps))] if h.requires_grad else []
        current.returned, current.handles = flat_state(out), handles
        return out

    return forward


def _last(
    direct: dict[int, Tensor], stop: int, full: dict[int, Tensor], start: int, keep: bool
) -> Callable:
    """A hook on a chunk's output: the direct gradient at its last step (and all of it)."""

    def hook(grad: Tensor) -> None:
        direct[stop] = grad[-1].detach()
        if keep:
            full[start] = grad.detach()

    return hook


@contextmanager
def chunked(
    modules: list[tuple[str, nn.Module]],
    chunk: int | None,
    keep: bool = False,
    on_packed: Callable[[str], None] | None = None,
) -> Iterator[list[LayerRecord]]:
    """Run `modules` chunked for the duration of the block; yields the records they fill.
    `on_packed` is told the path of a module that received a PackedSequence (not profiled).

    Each module's forward is replaced on the instance only (its class is untouched) and put
    back when the block ends, whatever happens inside.
    """
    record: list[LayerRecord] = []
    patched = []
    for path, module in modules:
        if type(module).forward is not _base(module).forward:
            continue  # a subclass with a forward of its own: left as it is
        if isinstance(module, nn.RNNBase):
            module.forward = chunked_forward(module, record, path, chunk, keep, on_packed)
        else:
            module.forward = cell_forward(module, record, path, chunk)
        patched.append(module)
    try:
        yield record
    finally:
        for module in patched:
            del module.forward


def _base(module: nn.Module) -> type[nn.Module]:
    return next(kind for kind in MODULE_TYPES + CELL_TYPES if isinstance(module, kind))


def _norm(t: Tensor | None) -> float:
    return math.nan if t is None else float(torch.linalg.vector_norm(t.to(torch.float64)))


def profiles(record: list[LayerRecord]) -> list[TimeProfile]:
    """Norms of what the hooks stored, one `TimeProfile` per layer and direction (the last
    forward of each, when a module ran more than once)."""
    latest: dict[tuple[str, int, int], LayerRecord] = {}
    for rec in record:
        if not rec.loop or rec.steps > 1:  # one call of a cell is no recurrence
            latest[(rec.module, rec.layer, rec.direction)] = rec
    out = []
    for rec in latest.values():
        if rec.loop:  # every K-th state and the last; direct = total - recurrent
            rec.boundaries = [*range(rec.chunk, rec.steps, rec.chunk), rec.steps]
            rec.direct = {
                b: total - rec.recurrent[b] if b in rec.recurrent else total
                for b, total in rec.totals.items()
            }
        if not rec.direct and not rec.recurrent and not rec.initial:
            continue  # no backward reached this forward
        zeros = None
        rec_norms, dir_norms, tot_norms, cell_norms = [], [], [], []
        for b in rec.boundaries:
            r, d = rec.recurrent.get(b), rec.direct.get(b)
            like = r if r is not None else d
            if like is None:
                rec_norms.append(0.0)
                dir_norms.append(0.0)
                tot_norms.append(0.0)
                cell_norms.append(_norm(rec.cell_state.get(b)) if rec.cell == "lstm" else 0.0)
                continue
            zeros = torch.zeros_like(like) if zeros is None else zeros
            r = zeros if r is None else r
            d = zeros if d is None else d
            rec_norms.append(_norm(r))
            dir_norms.append(_norm(d))
            tot_norms.append(_norm(r + d))
            c = rec.cell_state.get(b)
            cell_norms.append(_norm(c) if c is not None else 0.0)
        as_t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
        out.append(
            TimeProfile(
                module=rec.module,
                layer=rec.layer,
                direction=DIRECTIONS[rec.direction],
                cell=rec.cell,
                steps=rec.steps,
                chunk=rec.chunk,
                boundaries=tuple(rec.boundaries),
                recurrent=as_t(rec_norms),
                direct=as_t(dir_norms),
                total=as_t(tot_norms),
                cell_state=as_t(cell_norms) if rec.cell == "lstm" else None,
                initial=_norm(rec.initial[-1]) if rec.initial else 0.0,
            )
        )
    return out
