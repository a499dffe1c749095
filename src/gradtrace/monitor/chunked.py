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
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from gradtrace.records.monitor import TimeProfile
from gradtrace.tracing.capture import (
    continues,
    each_length,
    flat_state,
    of_one_length,
    packed_lengths,
    repacked,
)
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
    part: tuple[int, int] | None = None  # (call, length): one length of a packed batch


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
    returns what the module's forward does. A PackedSequence of sequences of one length runs
    as its padded batch; sequences of different lengths run one length at a time (each over
    its own steps, as the packed kernel runs them), recorded as parts of one forward
    (`LayerRecord.part`) that `profiles` puts together; their lag shares are not kept, and
    `on_packed` hears of it when they were asked for."""
    own = type(module).forward
    calls = iter(range(1 << 62))

    def forward(input: Any, hx: Any = None) -> Any:
        if not torch.is_grad_enabled():
            return own(module, input, hx)
        if isinstance(input, PackedSequence):
            return packed_forward(input, hx)
        unbatched = input.dim() == 2
        x = input.unsqueeze(1) if unbatched else input
        x = x.transpose(0, 1) if module.batch_first and not unbatched else x  # (T, B, I)
        if unbatched and hx is not None:
            hx = tuple(h.unsqueeze(1) for h in hx) if isinstance(hx, tuple) else hx.unsqueeze(1)
        output, h_n = run(x, hx, keep, None)
        if unbatched:
            output = output[:, 0]
            h_n = tuple(h[:, 0] for h in h_n) if isinstance(h_n, tuple) else h_n[:, 0]
        elif module.batch_first:
            output = output.transpose(0, 1)
        return output, h_n

    def packed_forward(input: PackedSequence, hx: Any) -> Any:
        padded = pad_packed_sequence(input)[0]  # (T, B, I), the batch's own order
        if of_one_length(input):
            whole, h_n = run(padded, hx, keep, None)
            return repacked(whole, input), h_n
        if keep and on_packed is not None:
            on_packed(path)
        call = next(calls)
        K = chunk_size(padded.shape[0], chunk)  # the longest's, for every length: one set of b

        def part(x_part: Tensor, hx_part: Any, length: int, rows: Tensor) -> tuple[Tensor, Any]:
            return run(x_part, hx_part, False, (call, length), K)

        output, h_n = each_length(padded, packed_lengths(input), hx, part)
        return repacked(output, input), h_n

    def run(
        x: Tensor, hx: Any, keep: bool, part: tuple[int, int] | None, K: int | None = None
    ) -> tuple[Tensor, Any]:
        """Every layer and direction over x (T, B, I) in chunks of K steps (by default
        `chunk_size` of T), from hx (batched, or None); the output (T, B, D P) and h_n (or
        (h_n, c_n))."""
        T, B = x.shape[0], x.shape[1]
        K = chunk_size(T, chunk) if K is None else K
        D = 2 if module.bidirectional else 1
        cell = cell_name(module) or ""
        layer_input = x
        finals_h, finals_c = [], []
        for layer in range(module.num_layers):
            if layer and module.training and module.dropout > 0:
                layer_input = F.dropout(layer_input, module.dropout, training=True)
            outputs = []
            for d in range(D):
                rec = LayerRecord(path, layer, d, cell, T, K, part=part)
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
        h_n: Any = torch.cat(finals_h)  # (L D, B, P)
        if finals_c:
            h_n = (h_n, torch.cat(finals_c))
        return layer_input, h_n

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

    def hook(grad: Tensor | None) -> None:
        if grad is None:  # the output is not used (a classifier of h_n): no direct part
            return
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
    `on_packed` is told the path of a module whose PackedSequence of different lengths kept
    no lag shares (when `keep` asked for them).

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
    forward of each, when a module ran more than once; the lengths of a packed batch
    together, each boundary's norms over the parts that reach it)."""
    latest: dict[tuple[str, int, int], list[LayerRecord]] = {}
    for rec in record:
        if rec.loop and rec.steps <= 1:  # one call of a cell is no recurrence
            continue
        key = (rec.module, rec.layer, rec.direction)
        before = latest.get(key, [])
        call = None if rec.part is None else rec.part[0]
        if call is not None and before and before[-1].part and before[-1].part[0] == call:
            before.append(rec)  # another length of the same packed batch
        else:
            latest[key] = [rec]
    out = []
    for recs in latest.values():
        for rec in recs:
            if rec.loop:  # every K-th state and the last; direct = total - recurrent
                rec.boundaries = [*range(rec.chunk, rec.steps, rec.chunk), rec.steps]
                rec.direct = {
                    b: total - rec.recurrent[b] if b in rec.recurrent else total
                    for b, total in rec.totals.items()
                }
        if all(not r.direct and not r.recurrent and not r.initial for r in recs):
            continue  # no backward reached this forward
        first = recs[0]
        T = max(r.steps for r in recs)
        boundaries = [*range(first.chunk, T, first.chunk), T] if first.part else first.boundaries
        # rec, dir, tot, cell at each boundary, from every part that reaches it: a part's
        # last boundary is its sequences' own last step, T of the whole
        found: list[list[Tensor]] = [[] for _ in boundaries]
        for rec in recs:
            for b, values in _norms(rec).items():
                found[boundaries.index(T if b == rec.steps else b)].append(values)
        norms = torch.stack([_combined(parts, 4) for parts in found])  # (n, 4)
        starts = [
            torch.tensor([_norm(r.initial[-1])], dtype=torch.float64) for r in recs if r.initial
        ]
        initial = float(_combined(starts, 1)[0])
        out.append(
            TimeProfile(
                module=first.module,
                layer=first.layer,
                direction=DIRECTIONS[first.direction],
                cell=first.cell,
                steps=T,
                chunk=first.chunk,
                boundaries=tuple(boundaries),
                recurrent=norms[:, 0].clone(),
                direct=norms[:, 1].clone(),
                total=norms[:, 2].clone(),
                cell_state=norms[:, 3].clone() if first.cell == "lstm" else None,
                initial=initial,
            )
        )
    return out


def _combined(parts: list[Tensor], n: int) -> Tensor:
    """The norm over the parts of a packed batch of what each measured, (n,) float64: the
    one part's own values when there is one (exactly), zeros when none reached it."""
    if not parts:
        return torch.zeros(n, dtype=torch.float64)
    if len(parts) == 1:
        return parts[0].to(torch.float64)
    return torch.linalg.vector_norm(torch.stack(parts).to(torch.float64), dim=0)


def _norms(rec: LayerRecord) -> dict[int, Tensor]:
    """Norms of the recurrent, direct and total parts of dL/dh_b and of the cell state's,
    (4,) float64, at each boundary b of one record (0 where nothing reached it)."""
    out = {}
    for b in rec.boundaries:
        r, d = rec.recurrent.get(b), rec.direct.get(b)
        c = rec.cell_state.get(b) if rec.cell == "lstm" else None
        present = [g for g in (r, d) if g is not None]
        total = present[0] + present[1] if len(present) == 2 else next(iter(present), None)
        values = [0.0 if g is None else _norm(g) for g in (r, d, total, c)]
        out[b] = torch.tensor(values, dtype=torch.float64)
    return out
