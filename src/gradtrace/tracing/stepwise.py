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

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from gradtrace.core import theory
from gradtrace.core.engine import check_metric, contribution_curve
from gradtrace.core.fixed_points import batched_jacobian
from gradtrace.core.gradient_profile import loss_gradient_profile
from gradtrace.core.lyapunov import top_exponent
from gradtrace.errors import check
from gradtrace.tracing.exponents import (
    LyapunovOption,
    check_lyapunov_option,
    traced_spectrum,
)
from gradtrace.tracing.forward import LossFn, call_loss, check_inputs
from gradtrace.tracing.records import LayerTrace

StepFn = Callable[[Tensor, Tensor], Tensor]


def _run(step: StepFn, x: Tensor, h0: Tensor) -> Tensor:
    """States h_0..h_T without gradients, shape (T + 1, B, S)."""
    states = [h0]
    with torch.no_grad():
        for x_t in x:  # (B, I)
            h = step(x_t, states[-1])
            check(
                isinstance(h, Tensor) and h.shape == h0.shape,
                f"`step` must return the state's shape {tuple(h0.shape)}, "
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
    return loss_gradient_profile(J, grad_last).log10_norm.cpu()


def trace_step(
    step: StepFn,
    inputs: Tensor,
    h0: Tensor,
    *,
    loss_fn: LossFn | None = None,
    target: Any = None,
    metric: str = "spectral",
    lyapunov: LyapunovOption = None,
    seed: int = 0,
) -> LayerTrace:
    """Trace a recurrence given as a function: c(k) = metric(dh_T/dh_k) and the rest.

    Args:
        step: h_t = step(x_t (B, I), h_{t-1} (B, S)) -> (B, S), differentiable by torch.
        inputs: x_1..x_T, shape (T, B, I).
        h0: The initial state, shape (B, S).
        loss_fn: Optional loss of the final state, loss_fn(h_T[, target]) -> scalar; gives
            ||dL/dh_k|| for k = 0..T.
        target: The loss's target.
        metric: "spectral", "frobenius" or "maxabs".
        lyapunov: K, "full" or None, as in `gradtrace.tracing.trace`.
        seed: Seeds the Lyapunov start directions.

    Returns:
        A `LayerTrace` of kind "step"; the theory fields that need weights are NaN and the
        bound is the product of the step norms.

    Raises:
        GradtraceError: on malformed or non-finite `inputs` or `h0`, or a step that changes
            the state's shape.
    """
    check_metric(metric)
    check_lyapunov_option(lyapunov)
    x = check_inputs(inputs)
    check(x.ndim == 3, f"`inputs` must have shape (T, B, I), got {tuple(x.shape)}")
    h0 = check_inputs(h0)
    check(
        h0.ndim == 2 and h0.shape[0] == x.shape[1],
        f"`h0` must have shape (B = {x.shape[1]}, S), got {tuple(h0.shape)}",
    )
    states = _run(step, x, h0)  # (T + 1, B, S)
    J = _step_jacobians(step, x, states)  # (T, B, S, S)
    curve = contribution_curve(J, metric).log10_norm  # (B, T)
    mean_curve = curve.mean(dim=0)  # (T,)
    rate = theory.measured_rate(mean_curve)
    verdict = theory.curve_verdict(mean_curve)
    S = J.shape[-1]
    return LayerTrace(
        module="step",
        kind="step",
        layer=0,
        direction="forward",
        calls=1,
        activation=None,
        hidden_size=S,
        proj_size=S,
        state_size=S,
        metric=metric,
        log10_norm=curve.cpu(),
        cell_path_log10=None,
        loss_grad_log10=_loss_profile(loss_fn, target, states, J),
        bound_log10=theory.norm_product_bound_log10(J, metric).amax(dim=0).cpu(),
        bound=theory.norm_product_bound_label(J),
        gamma=None,
        sigma_max=math.nan,
        spectral_radius=math.nan,
        blocks={},
        rate_per_step=rate,
        verdict=verdict,
        horizon=theory.memory_horizon(mean_curve),
        lyapunov_max=top_exponent(J),
        note=f"Step function: measured {rate:+.3g} decades per step ({verdict}); the bound "
        "uses the step norms.",
        lyapunov=traced_spectrum(J, lyapunov, seed),
        output_error=0.0,
    )
