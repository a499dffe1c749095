"""A user's own recurrent step s_t = step(x_t, s_{t-1}) through the full engine.

No analytic Jacobian is needed: after the forward pass every (x_t, s_{t-1}) is known, so the
step Jacobians J_t = dstep/ds at those points come from S backward passes of one batched call
(`gradtrace.core.fixed_points.batched_jacobian`), a chunk of steps at a time, as the engine
asks for them: memory stays O(T B S) plus one chunk, never the (T, B, S, S) stack. They then go
through the core's engine and theory as any cell's would: c(k), the largest step norm and
spectral radius, the bound prod_t ||J_t||_2, rate, verdict, horizon, the Lyapunov spectrum,
and ||dL/ds_k|| for a loss of every step's state.

The state may be a tensor (B, S) or a tuple of them, such as an LSTM cell's (h, c), in which
case the step takes and returns the tuple (so `nn.LSTMCell` itself is a step) and the state
is their concatenation; `block` picks the part measured. The step must treat the rows of a
batch independently (any ordinary cell does). Shapes: T time, B batch, I input, S state.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from gradtrace.analysis.flow import (
    LyapunovOption,
    Steps,
    assemble,
    check_lyapunov_option,
    check_trajectory,
)
from gradtrace.core.engine import check_metric, matrix_metric
from gradtrace.core.factors import DenseFactors, StatesShape
from gradtrace.core.fixed_points import batched_jacobian
from gradtrace.errors import GradtraceError, check
from gradtrace.records.flow import GradientFlow
from gradtrace.tracing.forward import LossFn, call_loss, check_inputs, check_target, untouched

State = Tensor | tuple[Tensor, ...]
StepFn = Callable[[Tensor, Any], Any]


@dataclass(frozen=True)
class _Layout:
    """How a (possibly tuple) state maps to the flat (B, S) state and back."""

    sizes: tuple[int, ...] | None  # the widths of a tuple state's parts, None for a tensor

    def flat(self, state: Any) -> Tensor:
        return state if self.sizes is None else torch.cat(state, dim=-1)

    def split(self, flat: Tensor) -> Any:
        return flat if self.sizes is None else tuple(flat.split(self.sizes, dim=-1))


def _layout(s0: Any) -> _Layout:
    if isinstance(s0, Tensor):
        return _Layout(None)
    check(
        isinstance(s0, tuple) and len(s0) > 0 and all(isinstance(s, Tensor) for s in s0),
        f"`s0` must be a tensor (B, S) or a tuple of them such as (h, c), got {type(s0).__name__}",
    )
    return _Layout(tuple(int(s.shape[-1]) for s in s0))


def _dtype(t: Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _call(step: StepFn, layout: _Layout, x_t: Tensor, s: Tensor) -> Tensor:
    """One step on the flat state, checked to keep its shape, (B, S)."""
    try:
        out = step(x_t, layout.split(s))
    except GradtraceError:
        raise
    except (RuntimeError, TypeError, ValueError, IndexError) as err:
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        message = (
            f"`step` failed on an input x_t of shape {tuple(x_t.shape)} ({_dtype(x_t)}) and a "
            f"state of shape {tuple(s.shape)} ({_dtype(s)}): {detail}"
        )
        raise GradtraceError(message) from err
    same = (
        isinstance(out, Tensor)
        if layout.sizes is None
        else isinstance(out, tuple | list) and len(out) == len(layout.sizes)
    )
    flat = layout.flat(tuple(out)) if same and layout.sizes is not None else out
    check(
        same and isinstance(flat, Tensor) and flat.shape == s.shape,
        f"`step` must return the state's shape {tuple(s.shape)}"
        + ("" if layout.sizes is None else f" as a tuple of {len(layout.sizes)} parts")
        + f", got {getattr(out, 'shape', type(out).__name__)}",
    )
    return flat


@dataclass(frozen=True, eq=False)
class StepFunctionSource(StatesShape):
    """The step Jacobians of a step function along its trajectory, by autograd, a chunk of
    steps at a time (a `gradtrace.core.factors.StepSource`)."""

    step: StepFn
    layout: _Layout
    inputs: Tensor  # (T, B, I)
    starts: Tensor  # s_0..s_{T-1}, (T, B, S)

    def factors(self, start: int, stop: int) -> DenseFactors:
        n, B, S = stop - start, self.batch, self.size
        x = self.inputs[start:stop].reshape(n * B, -1)  # (n B, I)
        s = self.starts[start:stop].reshape(n * B, S)

        def at(h: Tensor) -> Tensor:
            return _call(self.step, self.layout, x, h)

        return DenseFactors(batched_jacobian(at, s).reshape(n, B, S, S))


def _block(block: str | slice, layout: _Layout, S: int) -> slice | None:
    """The entries of the flat state that `block` measures; None for all of them."""
    if block == "full":
        return None
    if block == "h":
        return None if layout.sizes is None else slice(0, layout.sizes[0])
    check(
        isinstance(block, slice) and len(range(S)[block]) > 0 and block.step in (None, 1),
        f"`block` must be 'full', 'h' or a contiguous slice of the state's {S} entries, "
        f"got {block!r}",
    )
    assert isinstance(block, slice)  # for the type checker
    rows = range(S)[block]
    return slice(rows.start, rows.stop)


def _states(step: StepFn, layout: _Layout, x: Tensor, s0: Tensor, graph: bool) -> list[Tensor]:
    """s_0..s_T (B, S) each, in the autograd graph when `graph` (s_0 a leaf)."""
    with torch.set_grad_enabled(graph):
        states = [s0.detach().clone().requires_grad_(graph)]
        for x_t in x:  # (B, I)
            states.append(_call(step, layout, x_t, states[-1]))
    return states


def _loss_profile(
    loss_fn: LossFn, target: Any, layout: _Layout, states: list[Tensor], block: slice | None
) -> Tensor:
    """log10 ||dL/ds_k|| (of the measured block), k = 0..T, (B, T + 1), with L a loss of
    every step's state: loss_fn(states (T, B, S) or a tuple of parts[, target])."""
    stacked = torch.stack(states[1:])  # (T, B, S)
    loss = call_loss(loss_fn, layout.split(stacked), target)
    grads = torch.autograd.grad(loss, states, allow_unused=True, materialize_grads=True)
    g = torch.stack(grads)[..., block or slice(None)].detach().to(torch.float64)  # (T + 1, B, S')
    return torch.log10(matrix_metric(g.unsqueeze(-2), "frobenius")).T  # any magnitude


def trace_step(
    step: StepFn,
    inputs: Tensor,
    s0: State,
    *,
    loss_fn: LossFn | None = None,
    target: Any = None,
    block: str | slice = "h",
    metric: str = "spectral",
    lyapunov: LyapunovOption = None,
    seed: int = 0,
) -> GradientFlow:
    """Trace a recurrence given as a function: c(k) = metric(ds_T/ds_k) and the rest.

    Args:
        step: s_t = step(x_t (B, I), s_{t-1}) -> s_t, differentiable by torch; the state is
            (B, S) or a tuple such as (h, c), as `s0` gives it (`nn.LSTMCell` is a step).
        inputs: x_1..x_T, shape (T, B, I).
        s0: The initial state, (B, S) or a tuple of (B, S_i) parts.
        loss_fn: Optional loss of every step's state, called with the states s_1..s_T
            stacked, (T, B, S) (a tuple of (T, B, S_i) for a tuple state), and `target` if
            given; gives ||dL/ds_k|| for k = 0..T, the whole gradient at s_k.
        target: The loss's target.
        block: Which part of the state c(k) and ||dL/ds_k|| measure: "h" (the first part of
            a tuple state, such as the h of (h, c); the whole of a tensor state), "full", or
            a slice of the flat state.
        metric: "spectral", "frobenius" or "maxabs".
        lyapunov: K, "full" or None, as in `gradtrace.tracing.trace` (of the full state).
        seed: Seeds the Lyapunov start directions.

    Returns:
        A `GradientFlow` of cell "step": theory.sigma_max and theory.spectral_radius are the
        largest over the steps of ||J_t||_2 and rho(J_t), and the bound is the product of the
        step norms.

    Raises:
        GradtraceError: on malformed or non-finite `inputs` or `s0`, a step that fails or
            changes the state's shape, or a bad `block`.

    Example:
        >>> cell = torch.nn.LSTMCell(3, 4, dtype=torch.float64)
        >>> s0 = (torch.zeros(2, 4, dtype=torch.float64),) * 2
        >>> trace_step(cell, torch.randn(20, 2, 3, dtype=torch.float64), s0).log10_norm.shape
        torch.Size([2, 20])
    """
    check_metric(metric)
    check_lyapunov_option(lyapunov)
    check_target(loss_fn, target)
    _check_deterministic(step)
    x = check_inputs(inputs)
    check(x.ndim == 3, f"`inputs` must have shape (T, B, I), got {tuple(x.shape)}")
    layout = _layout(s0)
    flat0 = layout.flat(s0)
    for part in (s0,) if isinstance(s0, Tensor) else s0:
        check_inputs(part)
    check(
        flat0.ndim == 2 and flat0.shape[0] == x.shape[1],
        f"`s0` must have shape (B = {x.shape[1]}, S), got {tuple(flat0.shape)}",
    )
    measured = _block(block, layout, flat0.shape[1])
    guard = untouched(step) if isinstance(step, nn.Module) else nullcontext()
    with guard:  # a module's grads, attributes and the global RNGs stay as they were
        states = _states(step, layout, x, flat0, graph=loss_fn is not None)
        profile = None
        if loss_fn is not None:
            profile = _loss_profile(loss_fn, target, layout, states, measured)
        trajectory = torch.stack([s.detach() for s in states])  # (T + 1, B, S)
        check_trajectory(trajectory)
        starts = trajectory[:-1]  # (T, B, S): the state each step starts from
        source = StepFunctionSource(step, layout, x.detach(), starts)
        return assemble(
            Steps(source, None, "step", "trajectory", block=measured),
            metric=metric,
            loss_grad_log10=profile,
            lyapunov=lyapunov,
            seed=seed,
            module="step",
        )


# Modules whose output in train mode depends on more than their input: fresh random masks at
# every call, or the batch's own statistics (which the call also writes into the buffers).
_STOCHASTIC = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm, nn.RReLU)


def _check_deterministic(step: Any) -> None:
    """Refuse a step module that, in train mode, is not a function of its input: its Jacobians
    (S more calls of it at each step) would not be those of the forward."""
    if not isinstance(step, nn.Module):
        return
    live = [type(m).__name__ for m in step.modules() if isinstance(m, _STOCHASTIC) and m.training]
    check(
        not live,
        f"`step` ({type(step).__name__}) holds {', '.join(dict.fromkeys(live))} in train mode, "
        "which draws new masks or uses the batch's statistics at every call, so its Jacobians "
        "would not be the forward's; pass step.eval(), or a step function with fixed masks",
    )
