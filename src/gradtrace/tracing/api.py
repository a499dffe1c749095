"""`trace(model, inputs)`: gradient flow through time in every recurrent layer of a real model.

The model runs once. Hooks find each nn.RNN / nn.LSTM / nn.GRU wherever it sits, see what it
was given, and re-execute it step by step from its own weights (`gradtrace.tracing.capture`).
Per layer and direction the cells' analytic step Jacobians J_t = ds_t/ds_{t-1} then go through
the core's engine and theory:

    c(k) = metric(dh_T/dh_k)          hidden-state path, k = 0..T-1 (for an LSTM the (h, h)
                                      block of d(h_T, c_T)/d(h_k, c_k))
    prod_t diag(f_t)                  LSTM cell-state path
    ||dL/dh_k||                       with a loss: the whole gradient of L at h_k, through later
                                      steps, the outputs and the layers above (autograd on the
                                      re-execution spliced into the model's forward)
    gamma, sigma_max, rho, bound, verdict, horizon, top Lyapunov exponent, and on request the
    top-K Lyapunov spectrum with its per-step local factors

Layer l's curve is its own recurrence dh^l_T/dh^l_k with the layers below held fixed. Because
the re-execution never calls the fused kernel's backward, it works in eval mode on cuDNN, for
ReLU RNNs, GRUs, stacked and bidirectional modules and LSTM projections alike.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from gradtrace.analysis.flow import LyapunovOption, Steps, assemble, check_lyapunov_option
from gradtrace.core.engine import check_metric
from gradtrace.errors import check
from gradtrace.records.flow import GradientFlow
from gradtrace.records.trace import TraceResult
from gradtrace.tracing.capture import Call, capture, loss_gradients
from gradtrace.tracing.forward import LossFn, call_loss, call_model, check_inputs, first_tensor
from gradtrace.tracing.modules import DIRECTIONS, LayerRun, eager_recurrent, select_modules


def trace(
    model: nn.Module,
    inputs: Tensor,
    *,
    module: str | nn.Module | None = None,
    loss_fn: LossFn | None = None,
    target: Any = None,
    metric: str = "spectral",
    lyapunov: LyapunovOption = None,
    seed: int = 0,
) -> TraceResult:
    """Measure how gradients flow back through time in each recurrent layer of `model`.

    Args:
        model: Any module holding an nn.RNN, nn.LSTM or nn.GRU (or one itself; a TorchScript
            one is rebuilt as an eager copy), on any device, in train or eval mode.
        inputs: What `model` takes, e.g. (T, B, I) floats or (T, B) token ids; the recurrent
            modules may be batch-first or not.
        module: Trace only this recurrent module (its dotted path or the module); None traces
            every one the forward calls.
        loss_fn: With it, also measure ||dL/dh_k||; called as loss_fn(output, target), or
            loss_fn(output) when `target` is None, on the forward's (first) output tensor.
        target: The loss's target.
        metric: How c(k) measures dh_T/dh_k: "spectral", "frobenius" or "maxabs".
        lyapunov: K >= 1 for the top-K Lyapunov exponents of each layer's full state (capped at
            its S), "full" for all of them, None for none beyond the top one.
        seed: Seeds the start directions of the Lyapunov QR method.

    Returns:
        A `TraceResult` with one `GradientFlow` per module, layer and direction. A reverse
        direction's curve runs over its own time order: its k = 0 is its initial state, and
        its last step reads x_1.

    Raises:
        GradtraceError: if `model` has no recurrent module (measure it with
            `input_sensitivity`), `inputs` do not fit it or are not finite, a module applies
            dropout between layers in train mode, or the output or loss is unusable.

    Example:
        >>> lstm = torch.nn.LSTM(3, 8, num_layers=2, dtype=torch.float64)
        >>> result = trace(lstm, torch.randn(50, 4, 3, dtype=torch.float64))
        >>> result.find(layer=1).log10_norm.shape  # (B, T)
        torch.Size([4, 50])
    """
    check_metric(metric)
    check_lyapunov_option(lyapunov)
    inputs = check_inputs(inputs)
    if isinstance(model, torch.jit.ScriptModule):
        model = eager_recurrent(model)
    splice = loss_fn is not None
    targets = select_modules(model, module)
    with capture(targets, splice=splice) as calls, torch.set_grad_enabled(splice):
        output = call_model(model, inputs)
        called = [call for call in calls if call.calls]
        names = ", ".join(f"`{call.path or 'model'}`" for call in calls)
        check(bool(called), f"`model` never called {names} on `inputs`, so there is no trace")
        loss, grads = None, {}
        if loss_fn is not None:
            loss = call_loss(loss_fn, first_tensor(output), target)
            grads = loss_gradients(loss, called)
    layers = [
        _record(call, run, grads.get((c, run.layer, run.direction)), metric, lyapunov, seed)
        for c, call in enumerate(called)
        for run in call.runs
    ]
    return TraceResult(
        tuple(layers), metric, tuple(inputs.shape), None if loss is None else float(loss.detach())
    )


def _loss_profile(grad: Tensor | None, run: LayerRun) -> Tensor | None:
    """log10 ||dL/dh_k|| for k = 0..T from dL/ds_k (T + 1, B, S), shape (B, T + 1)."""
    if grad is None:
        return None
    h_part = grad[..., : run.proj_size].to(torch.float64)  # (T + 1, B, P)
    return torch.log10(torch.linalg.vector_norm(h_part, dim=-1)).T  # (B, T + 1)


def _record(
    call: Call,
    run: LayerRun,
    grad: Tensor | None,
    metric: str,
    lyapunov: LyapunovOption,
    seed: int,
) -> GradientFlow:
    return assemble(
        Steps.of(run.replay),
        metric=metric,
        loss_grad_log10=_loss_profile(grad, run),
        lyapunov=lyapunov,
        seed=seed,
        module=call.path,
        layer=run.layer,
        direction=DIRECTIONS[run.direction],
        calls=call.calls,
        output_error=call.output_error,
    )
