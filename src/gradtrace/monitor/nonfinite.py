"""Where a non-finite value first appeared: the replay of a step that went NaN or Inf.

Normal steps pay nothing for this. When a step's loss or gradient norm is not finite, the
monitor replays the batch (fairseq's method) with the random-number state the step started
from and a hook on every module:

    forward    the first module, in the order they ran, whose output holds NaN/Inf although
               every tensor it was given is finite; for a recurrent module gradtrace's
               re-execution (`gradtrace.tracing.modules.run_module`) then names the layer,
               direction and time step where its state first went non-finite
    backward   with a replay closure (`Monitor.step(..., replay=...)`, returning the loss),
               the first module, in backward order, whose gradient with respect to its input
               is not finite although the gradient it received is

and the parameters whose gradients are not finite. The model is left as it was
(`gradtrace.tracing.forward.untouched`): replaying changes no weight, buffer, mode, gradient
or random state.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from gradtrace.records.monitor import NonFiniteOrigin
from gradtrace.tracing.forward import untouched
from gradtrace.tracing.modules import (
    CELL_TYPES,
    DIRECTIONS,
    MODULE_TYPES,
    cell_initial_state,
    initial_states,
    run_module,
    step_cell,
)


def _tensors(value: Any) -> list[Tensor]:
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, tuple | list):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []


def _finite(value: Any) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in _tensors(value) if t.is_floating_point())


def _first_bad(value: Any) -> tuple[int, ...]:
    for t in _tensors(value):
        if t.is_floating_point():
            bad = torch.nonzero(~torch.isfinite(t.detach()))
            if bad.numel():
                return tuple(int(i) for i in bad[0])
    return ()


@dataclass
class _Found:
    path: str
    module: nn.Module
    args: tuple[Any, ...]
    output: Any


def _forward_origin(model: nn.Module, call: Callable[[], Any]) -> _Found | None:
    """Run `call` with a hook on every module; the first that turned finite inputs non-finite."""
    found: list[_Found] = []
    handles = []

    def hook(path: str) -> Callable:
        def fire(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if not found and _finite(args) and not _finite(output):
                found.append(_Found(path, module, args, output))

        return fire

    for path, module in model.named_modules():
        handles.append(module.register_forward_hook(hook(path)))
    try:
        with torch.no_grad():
            call()
    finally:
        for handle in handles:
            handle.remove()
    return found[0] if found else None


def _backward_origin(
    model: nn.Module, replay: Callable[[], Tensor]
) -> tuple[str, nn.Module] | None:
    """Run `replay` and its backward with a hook on every module; the first (in backward
    order) whose input gradient is not finite while its output gradient is."""
    found: list[tuple[str, nn.Module]] = []
    handles = []

    def hook(path: str) -> Callable:
        def fire(module: nn.Module, grad_input: Any, grad_output: Any) -> None:
            if not found and _finite(grad_output) and not _finite(grad_input):
                found.append((path, module))
            elif not found and not path and not _finite(grad_output):
                found.append(("", model))  # dL/d(output) itself: the loss's own backward

        return fire

    for path, module in model.named_modules():  # the model's own hook fires first
        handles.append(module.register_full_backward_hook(hook(path)))
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        with torch.enable_grad(), warnings.catch_warnings():
            # torch warns when a module's inputs need no gradient (an embedding's ids): the
            # hook then sees only its output's, which is all this search reads there
            warnings.simplefilter("ignore", UserWarning)
            loss = replay()
            torch.autograd.grad(loss, params, allow_unused=True)
    finally:
        for handle in handles:
            handle.remove()
    return found[0] if found else None


def _bad_argument(args: tuple[Any, ...] | None, kwargs: dict[str, Any]) -> str | None:
    """Which of the step's inputs holds NaN/Inf, in words ("input 0 at index (3, 0, 1)")."""
    named = [(f"input {i}", a) for i, a in enumerate(args or ())] + list(kwargs.items())
    for name, value in named:
        if isinstance(value, Tensor) and value.is_floating_point():
            bad = torch.nonzero(~torch.isfinite(value.detach()))
            if bad.numel():
                return f"{name} at index {tuple(bad[0].tolist())}"
    return None


def _recurrent_position(found: _Found) -> tuple[int | None, str | None, int | None]:
    """Layer, direction and time step where a recurrent module's state first went bad."""
    module = found.module
    x = found.args[0] if found.args else None
    if not isinstance(x, Tensor):
        return None, None, None
    hx = found.args[1] if len(found.args) > 1 else None
    with torch.no_grad():
        if isinstance(module, CELL_TYPES):
            x2 = x if x.ndim == 2 else x.unsqueeze(0)
            s0 = cell_initial_state(module, hx, x2.shape[0], x2)
            _, s1 = step_cell(module, x2, s0)
            return (0, "forward", 0) if not bool(torch.isfinite(s1).all()) else (None, None, None)
        assert isinstance(module, nn.RNNBase)
        xt = x.transpose(0, 1) if module.batch_first and x.ndim == 3 else x
        xt = xt if xt.ndim == 3 else xt.unsqueeze(1)
        _, runs = run_module(module, xt, initial_states(module, hx, xt.shape[1], xt))
    best: tuple[int, int, int] | None = None
    for run in runs:
        states = run.replay.states[1:] if run.replay.final is not None else run.replay.states
        bad = torch.nonzero(~torch.isfinite(states.flatten(1)).all(dim=1))
        if bad.numel():
            t = int(bad[0])
            t = t if run.direction == 0 else len(states) - 1 - t  # in the input's order
            key = (run.layer, t, run.direction)
            best = key if best is None or key < best else best
    if best is None:
        return None, None, None
    return best[0], DIRECTIONS[best[2]], best[1]


def locate(
    model: nn.Module,
    quantity: str,
    args: tuple[Any, ...] | None,
    kwargs: dict[str, Any],
    rng: Tensor | None,
    replay: Callable[[], Tensor] | None,
) -> NonFiniteOrigin:
    """Replay a step whose `quantity` ("loss" or "gradient norm") was not finite and say where
    the first non-finite value appeared (see the module docstring).

    Args:
        model: The model, as it was during the step (its weights not yet updated when the
            optimizer step is the one that saw the non-finite norm).
        quantity: What was not finite.
        args, kwargs: What the model was called with on the step (None if it was not called).
        rng: The CPU random state at the start of the step, so dropout draws the same masks.
        replay: The user's closure that recomputes the step's loss, if given.
    """
    bad_params = tuple(
        name for name, p in model.named_parameters() if p.grad is not None and not _finite(p.grad)
    )
    found: _Found | None = None
    batch = _bad_argument(args, kwargs)
    if batch is not None:
        return NonFiniteOrigin(
            quantity, "input", None, "", bad_params, None, None, None, (),
            f"the batch itself holds NaN/Inf ({batch}): the model was called on it",
        )  # fmt: skip
    with untouched(model):
        if rng is not None:
            torch.set_rng_state(rng)
        if replay is not None:
            found = _forward_origin(model, replay)
        elif args is not None:
            found = _forward_origin(model, lambda: model(*args, **kwargs))
        if found is None and replay is not None:
            if rng is not None:
                torch.set_rng_state(rng)
            back = _backward_origin(model, replay)
            if back is not None:
                path, module = back
                note = (
                    f"the forward stayed finite; the gradient first went non-finite in the "
                    f"backward of `{path}` ({type(module).__name__})"
                    if path
                    else "the forward stayed finite, but the loss's gradient by the model's "
                    "output already is not: the loss's own backward made it (a sqrt or log "
                    "at 0, say)"
                )
                return NonFiniteOrigin(
                    quantity, "backward", path, type(module).__name__, bad_params,
                    None, None, None, (), note,
                )  # fmt: skip
    if found is None:
        where = "the forward replayed finite" + (
            "" if replay is not None else "; pass replay= to Monitor.step to search the backward"
        )
        note = where + (
            f"; non-finite gradients in {', '.join(bad_params[:5])}" if bad_params else ""
        )
        return NonFiniteOrigin(
            quantity, "unknown", None, "", bad_params, None, None, None, (), note
        )
    layer = direction = time_index = None
    recurrent = isinstance(found.module, (*MODULE_TYPES, *CELL_TYPES))
    broken = [n for n, p in found.module.named_parameters() if not _finite(p)]
    if recurrent and not broken:
        layer, direction, time_index = _recurrent_position(found)
    index = _first_bad(found.output)
    if time_index is None and index and not recurrent:
        time_index = index[0]  # the first axis of a (T, B, ...) output
    name = f"`{found.path or 'model'}` ({type(found.module).__name__})"
    where = f" at time step {time_index}" if time_index is not None else ""
    inside = f", layer {layer} {direction}" if layer is not None else ""
    note = f"the forward first went non-finite in {name}{inside}{where}, from finite inputs"
    if broken:
        note += (
            f"; its own parameters hold NaN/Inf ({', '.join(broken[:4])}), left by an earlier "
            "update"
        )
    return NonFiniteOrigin(
        quantity, "forward", found.path, type(found.module).__name__, bad_params,
        layer, direction, time_index, index, note,
    )  # fmt: skip
