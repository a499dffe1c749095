"""Input sensitivity of any sequence model: how much the end depends on each input step.

For a model with inputs x_1..x_T and an output y_T at the last step (a recurrent net, a
Transformer encoder, a temporal convolution, anything differentiable):

    s(k) = metric(dy_T/dx_k)        (O, I) per sequence, k = 1..T
    s(k) = ||dL/dx_k||_2            with a loss instead

Row o of every dy_T/dx_k comes from one backward pass of sum_b y_T[b, o], so O backward passes
give the whole profile for all k and all B sequences at once. Autograd goes through the model's
own kernels, fused cuDNN or MKL-DNN RNNs included, so it sees what they compute. This assumes
the sequences of a batch do not mix (true unless a layer such as BatchNorm in train mode
couples them); put the model in eval mode or turn dropout off for a deterministic profile.
Exact up to the dtype's rounding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from gradtrace.core.engine import check_metric, matrix_metric
from gradtrace.errors import check
from gradtrace.records.trace import SensitivityProfile
from gradtrace.tracing.forward import LossFn, call_loss, call_model, check_inputs, first_tensor


def _last_step(y: Tensor, batch: int, batch_first: bool) -> Tensor:
    """y_T as (B, O): the last time step of a (T, B, O) / (B, T, O) output, or y itself."""
    if y.ndim == 3:
        y = y[:, -1] if batch_first else y[-1]
    elif y.ndim == 1:
        y = y.unsqueeze(-1)  # (B,) -> (B, 1)
    check(
        y.ndim == 2 and y.shape[0] == batch,
        f"the model's output must give y_T of shape (B = {batch}, O); got {tuple(y.shape)}; "
        "pass `output` to select it",
    )
    return y


def input_sensitivity(
    model: nn.Module | Callable[[Tensor], Any],
    inputs: Tensor,
    *,
    loss_fn: LossFn | None = None,
    target: Any = None,
    batch_first: bool = False,
    output: Callable[[Tensor], Tensor] | None = None,
    metric: str = "spectral",
) -> SensitivityProfile:
    """The input-sensitivity profile s(k) for every input step k.

    Args:
        model: Any differentiable callable of `inputs`; a tuple output counts by its first
            tensor.
        inputs: (T, B, I) floats, or (B, T, I) with `batch_first`.
        loss_fn: With it, measure ||dL/dx_k|| with L = loss_fn(output, target) (or
            loss_fn(output) when `target` is None).
        target: The loss's target.
        batch_first: Whether time is the second axis of `inputs` (and of a 3-d output).
        output: Selects y_T (B, O) from the output; by default the last time step of a 3-d
            output, or a 2-d output itself.
        metric: How dy_T/dx_k is measured: "spectral", "frobenius" or "maxabs".

    Returns:
        A `SensitivityProfile` with `log10_norm` of shape (B, T), column k-1 for step k.

    Raises:
        GradtraceError: on inputs that are not finite floating (T, B, I) tensors, an output
            without a (B, O) last step, or a loss that is not a finite scalar.

    Example:
        >>> enc = torch.nn.TransformerEncoder(
        ...     torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0), 1,
        ...     enable_nested_tensor=False)
        >>> input_sensitivity(enc, torch.randn(20, 3, 8)).log10_norm.shape
        torch.Size([3, 20])
    """
    check_metric(metric)
    inputs = check_inputs(inputs)
    check(
        inputs.is_floating_point(),
        f"`inputs` must be floating point to differentiate by them, got {inputs.dtype}; for "
        "token ids, measure from the embedded sequence",
    )
    check(
        inputs.ndim == 3,
        f"`inputs` must have shape {'(B, T, I)' if batch_first else '(T, B, I)'}, "
        f"got {tuple(inputs.shape)}",
    )
    x = inputs.detach().clone().requires_grad_(True)
    batch = x.shape[0 if batch_first else 1]
    with torch.enable_grad():
        y = first_tensor(call_model(model, x))  # type: ignore[arg-type]
        if loss_fn is not None:
            (grad,) = torch.autograd.grad(call_loss(loss_fn, y, target), x, materialize_grads=True)
            norms = torch.linalg.vector_norm(grad.to(torch.float64), dim=-1)  # (T, B) or (B, T)
            log10 = torch.log10(norms if batch_first else norms.T)  # (B, T)
            return SensitivityProfile(log10.detach().cpu(), "dL/dx_k", "l2")
        y_T = output(y) if output is not None else _last_step(y, batch, batch_first)  # (B, O)
        _last_step(y_T, batch, batch_first=False)
        rows = [
            torch.autograd.grad(
                y_T[:, o].sum(), x, retain_graph=o + 1 < y_T.shape[1], materialize_grads=True
            )[0]
            for o in range(y_T.shape[1])
        ]
    J = torch.stack(rows, dim=-2)  # (T, B, O, I) or (B, T, O, I)
    J = J if batch_first else J.transpose(0, 1)  # (B, T, O, I)
    log10 = torch.log10(matrix_metric(J.to(torch.float64), metric))  # (B, T)
    return SensitivityProfile(log10.detach().cpu(), "dy_T/dx_k", metric)
