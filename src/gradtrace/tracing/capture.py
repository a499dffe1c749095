"""Run a model once with hooks on its recurrent modules and re-execute each one step by step.

A forward hook on each nn.RNN / nn.LSTM / nn.GRU sees what the module was given wherever it
sits in the model (embedding -> LSTM -> decoder, or inside any wrapper), re-executes it with
`gradtrace.tracing.modules.run_module`, and, when asked to splice, returns the re-execution as the
module's output. The rest of the forward then depends on the re-executed states, so a loss can
be differentiated by every hidden state of every layer, which the fused kernel never exposes.

A module called several times in one forward (a decoder stepping token by token) is re-executed
at its first call; the record says how many calls there were.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from gradtrace.errors import check
from gradtrace.tracing.modules import (
    LayerRun,
    check_traceable,
    final_states,
    initial_states,
    run_module,
)


@dataclass
class Call:
    """What one recurrent module did in the forward: its re-execution and how it compared.

    Attributes:
        path: The module's dotted path in the model ("" for the model itself).
        module: The module.
        runs: Its layers and directions, re-executed at its first call.
        calls: How many times the forward called it.
        output_error: Largest |re-executed output - module's own output| at the first call.
    """

    path: str
    module: nn.RNNBase
    runs: list[LayerRun] = field(default_factory=list)
    calls: int = 0
    output_error: float = 0.0


def _label(call: Call) -> str:
    return f"`{call.path or 'model'}` ({type(call.module).__name__})"


def _time_major(
    call: Call, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Tensor, Any, bool]:
    """The module's input as (T, B, I), its hx batched, and whether it came unbatched."""
    module = call.module
    x = args[0] if args else kwargs.get("input")
    hx = args[1] if len(args) > 1 else kwargs.get("hx")
    check(
        not isinstance(x, PackedSequence),
        f"{_label(call)} received a PackedSequence, which trace does not unpack; pass "
        "equal-length sequences as one padded tensor instead",
    )
    check(
        isinstance(x, Tensor) and x.ndim in (2, 3),
        f"the input of {_label(call)} must be a (T, B, I) tensor, got {getattr(x, 'shape', x)}",
    )
    assert isinstance(x, Tensor)  # for the type checker; `check` has just ensured it
    check(
        x.shape[-1] == module.input_size,
        f"`inputs` reach {_label(call)} with {x.shape[-1]} features, but it expects "
        f"input_size = {module.input_size}",
    )
    check(x.shape[-2 if x.ndim == 3 else 0] >= 1, f"the input of {_label(call)} has no time steps")
    bad = int((~torch.isfinite(x.detach())).sum())
    check(bad == 0, f"the input of {_label(call)} must be finite, got {bad} NaN/Inf entries")
    if x.ndim == 2:  # unbatched (T, I): PyTorch's hx is then (L D, P) without a batch axis
        if hx is not None:
            hx = tuple(h.unsqueeze(1) for h in hx) if isinstance(hx, tuple) else hx.unsqueeze(1)
        return x.unsqueeze(1), hx, True  # (T, 1, I)
    return (x.transpose(0, 1) if module.batch_first else x), hx, False  # (T, B, I)


def _module_layout(call: Call, output: Tensor, unbatched: bool) -> Tensor:
    """Turn a time-major (T, B, D P) output back into the layout the module returns."""
    if unbatched:
        return output[:, 0]  # (T, D P)
    return output.transpose(0, 1) if call.module.batch_first else output


def _check_hook(call: Call) -> Any:
    """Check the input before the module's own forward, whose errors are harder to read."""

    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if call.calls == 0:
            _time_major(call, args, kwargs)

    return hook


def _hook(call: Call, splice: bool) -> Any:
    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Any:
        call.calls += 1
        if call.calls > 1:
            return None
        x, hx, unbatched = _time_major(call, args, kwargs)
        s0 = initial_states(call.module, hx, x.shape[1], x)  # (L D, B, S)
        output, call.runs = run_module(call.module, x, s0)  # (T, B, D P)
        replay = _module_layout(call, output, unbatched)
        own = out[0]
        call.output_error = float((replay.detach() - own.detach()).abs().max())
        if not splice:
            return None
        last = final_states(call.module, call.runs)  # (L D, B, P) or a pair with (L D, B, H)
        if not unbatched:
            return replay, last
        return replay, (tuple(h[:, 0] for h in last) if isinstance(last, tuple) else last[:, 0])

    return hook


@contextmanager
def capture(targets: list[tuple[str, nn.RNNBase]], *, splice: bool) -> Iterator[list[Call]]:
    """Hook `targets` for the duration of the block; yields one `Call` per target.

    Args:
        targets: (path, module) pairs, e.g. from `select_modules`.
        splice: Return the re-execution as each module's output (needed for a loss).

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
        handles.append(module.register_forward_hook(_hook(call, splice), with_kwargs=True))
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


def step_tensors(calls: list[Call]) -> list[Tensor]:
    """Every re-executed state s_k of every run, in order, for one torch.autograd.grad call."""
    return [s for call in calls for run in call.runs for s in run.replay.graph or ()]


def loss_gradients(loss: Tensor, calls: list[Call]) -> dict[tuple[int, int, int], Tensor]:
    """dL/ds_k for every run, as (T + 1, B, S) tensors keyed by (call index, layer, direction).

    A state that the loss does not reach gets a zero gradient.
    """
    steps = step_tensors(calls)
    grads = torch.autograd.grad(loss, steps, allow_unused=True, materialize_grads=True)
    out, i = {}, 0
    for c, call in enumerate(calls):
        for run in call.runs:
            n = len(run.replay.graph or ())
            out[(c, run.layer, run.direction)] = torch.stack(grads[i : i + n])  # (T + 1, B, S)
            i += n
    return out
