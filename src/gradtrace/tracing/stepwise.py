"""A user's own recurrent step h_t = step(x_t, h_{t-1}) through the full engine.

No analytic Jacobian is needed: after the forward pass every (x_t, h_{t-1}) is known, so all
T B step Jacobians J_t = dstep/dh at those points come from S backward passes of one batched
call (`gradtrace.core.fixed_points.batched_jacobian`). They then go through the core's
engine and theory as any cell's would: c(k), the bound prod_t ||J_t||_2, rate, verdict,
horizon, Lyapunov spectrum, and ||dL/dh_k|| for a loss on the final state. The step must treat
the rows of a batch independently (any ordinary cell does). Shapes: T time, B batch, I input,
S state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from gradtrace.analysis.flow import LyapunovOption, Steps, assemble, check_lyapunov_option
from gradtrace.core.engine import check_metric
from gradtrace.core.fixed_points import batched_jacobian
from gradtrace.core.gradient_profile import loss_gradient_profile
from gradtrace.errors import check
from gradtrace.records.flow import GradientFlow
from gradtrace.tracing.forward import LossFn, call_loss, check_inputs

StepFn = Callable[[Tensor, Tensor], Tensor]


def _run(step: StepFn, x: Tensor, s0: Tensor) -> Tensor:
    """States s_0..s_T without gradients, shape (T + 1, B, S)."""
    states = [s0]
    with torch.no_grad():
        for x_t in x:  # (B, I)
            h = step(x_t, states[-1])
            check(
                isinstance(h, Tensor) and h.shape == s0.shape,
                f"`step` must return the state's shape {tuple(s0.shape)}, "
                f"got {getattr(h, 'shape', type(h).__name__)}",
            )
            states.append(h)
    return torch.stack(states)


def _step_jacobians(step: StepFn, x: Tensor, states: Tensor) -> Tensor:
    """J_1..J_T by autograd, one batched call over all T B rows, shape (T, B, S, S)."""
    T, B, S = states.shape[0] - 1, states.shape[1], states.shape[2]
    x_rows = x.reshape(T * B, -1)  # (T B, I)
    J = batched_jacobian(lambda h: step(x_rows, h), states[:-1].reshape(T * B, S))  # (T B, S, S)
    return J.reshape(T, B, S, S)


def _loss_profile(loss_fn: LossFn | None, target: Any, states: Tensor, J: Tensor) -> Tensor | None:
    """log10 ||dL/dh_k||, (B, T + 1), for a loss on h_T, by the engine's vector sweep."""
    if loss_fn is None:
        return None
    with torch.enable_grad():
        h_T = states[-1].clone().requires_grad_(True)
        (grad_last,) = torch.autograd.grad(call_loss(loss_fn, h_T, target), h_T)
    return loss_gradient_profile(J, grad_last).log10_norm


def trace_step(
    step: StepFn,
    inputs: Tensor,
    s0: Tensor,
    *,
    loss_fn: LossFn | None = None,
    target: Any = None,
    metric: str = "spectral",
    lyapunov: LyapunovOption = None,
    seed: int = 0,
) -> GradientFlow:
    """Trace a recurrence given as a function: c(k) = metric(dh_T/dh_k) and the rest.

    Args:
        step: h_t = step(x_t (B, I), h_{t-1} (B, S)) -> (B, S), differentiable by torch.
        inputs: x_1..x_T, shape (T, B, I).
        s0: The initial state, shape (B, S).
        loss_fn: Optional loss of the final state, loss_fn(h_T[, target]) -> scalar; gives
            ||dL/dh_k|| for k = 0..T.
        target: The loss's target.
        metric: "spectral", "frobenius" or "maxabs".
        lyapunov: K, "full" or None, as in `gradtrace.tracing.trace`.
        seed: Seeds the Lyapunov start directions.

    Returns:
        A `GradientFlow` of cell "step"; the theory numbers that need weights are NaN and the
        bound is the product of the step norms.

    Raises:
        GradtraceError: on malformed or non-finite `inputs` or `s0`, or a step that changes
            the state's shape.
    """
    check_metric(metric)
    check_lyapunov_option(lyapunov)
    x = check_inputs(inputs)
    check(x.ndim == 3, f"`inputs` must have shape (T, B, I), got {tuple(x.shape)}")
    s0 = check_inputs(s0)
    check(
        s0.ndim == 2 and s0.shape[0] == x.shape[1],
        f"`s0` must have shape (B = {x.shape[1]}, S), got {tuple(s0.shape)}",
    )
    states = _run(step, x, s0)  # (T + 1, B, S)
    J = _step_jacobians(step, x, states)  # (T, B, S, S)
    return assemble(
        Steps(J, None, "step", "trajectory"),
        metric=metric,
        loss_grad_log10=_loss_profile(loss_fn, target, states, J),
        lyapunov=lyapunov,
        seed=seed,
        module="step",
    )
