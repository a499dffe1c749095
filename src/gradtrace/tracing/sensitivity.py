"""Input sensitivity of any sequence model: how much the end depends on each input step.

For a model with inputs x_1..x_T and an output y_T at the last step (a recurrent net, a
Transformer encoder, a temporal convolution, anything differentiable):

    s(k) = ||dL/dx_k||_2               with a loss: one backward pass, whatever the output size
    s(k) = metric(R dy_T/dx_k)         otherwise, R the rows asked for: every output unit
                                       (R = I_O), a chosen set of `units`, or a `projection`

Row r of every R dy_T/dx_k comes from one backward pass of sum_b (R y_T[b])_r, so R backward
passes give the whole profile for all k and all B sequences at once. A vocabulary-sized output
therefore wants a loss, a few units or a projection: the request is costed first (memory up
front, time from the first backward pass) and refused in one sentence over the budget in force
(`gradtrace.budgets`). Autograd goes through the model's own kernels, fused cuDNN or MKL-DNN
RNNs included, so it sees what they compute. This assumes the sequences of a batch do not mix
(true unless a layer such as BatchNorm in train mode couples them); put the model in eval mode
or turn dropout off for a deterministic profile. Exact up to the dtype's rounding.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from gradtrace.budgets import Work, current, require
from gradtrace.core.engine import check_metric, matrix_metric
from gradtrace.errors import GradtraceError, check, described
from gradtrace.progress import progress
from gradtrace.records.trace import SensitivityProfile
from gradtrace.tracing.forward import (
    LossFn,
    call_loss,
    call_model,
    check_inputs,
    check_target,
    first_tensor,
    untouched,
)
from gradtrace.tracing.modules import eager_recurrent, own_batch_first


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


def _rows(y_T: Tensor, units: Sequence[int] | Tensor | None, projection: Tensor | None) -> Tensor:
    """The rows asked for, (B, R): y_T itself, its `units`, or y_T @ projection^T."""
    O = y_T.shape[1]
    check(
        units is None or projection is None,
        "give at most one of `units` and `projection`, got both",
    )
    if units is not None:
        given = units.tolist() if isinstance(units, Tensor) else units
        flat = [given] if isinstance(given, int) else given
        whole = isinstance(flat, Sequence) and not isinstance(flat, str)
        odd = [u for u in flat if not isinstance(u, int) or isinstance(u, bool)] if whole else []
        if not whole or odd:
            raise GradtraceError(
                "`units` must be whole-number indices of output units, got "
                + (
                    repr(odd[0])
                    if whole
                    else repr(units)
                    if isinstance(units, str)
                    else described(units)
                )
            )
        index = torch.as_tensor(flat, dtype=torch.long).reshape(-1)
        check(index.numel() > 0, "`units` must name at least one output unit, got none")
        bad = index[(index < -O) | (index >= O)]
        check(
            bad.numel() == 0,
            f"`units` must be output units in [0, {O}), got {bad[:3].tolist()}",
        )
        return y_T[:, index.to(y_T.device)]
    if projection is not None:
        check(
            isinstance(projection, Tensor) and projection.ndim == 2 and projection.shape[1] == O,
            f"`projection` must be an (R, O = {O}) tensor, got "
            + (
                str(tuple(projection.shape))
                if isinstance(projection, Tensor)
                else described(projection)
            ),
        )
        assert isinstance(projection, Tensor)  # for the type checker
        check(
            bool(torch.isfinite(projection).all()),
            "`projection` must be finite, got NaN/Inf entries",
        )
        return y_T @ projection.to(y_T.device, y_T.dtype).T  # (B, R)
    return y_T


def _refuse_slow(rows: int, seconds: float) -> None:
    limit = current().seconds
    if rows * seconds > limit:
        raise GradtraceError(
            f"dy_T/dx_k over {rows} output rows needs {rows} backward passes, about "
            f"{rows * seconds:.3g} s at {seconds:.2g} s each, over the budget of {limit:.3g} s; "
            "pass `loss_fn`, a few `units` or a `projection`, or raise the budget with "
            "`max_seconds` (or GRADTRACE_MAX_SECONDS)"
        )


def input_sensitivity(
    model: nn.Module | Callable[..., Any],
    inputs: Tensor,
    *args: Any,
    loss_fn: LossFn | None = None,
    target: Any = None,
    batch_first: bool | None = None,
    output: Callable[[Any], Tensor] | None = None,
    units: Sequence[int] | Tensor | None = None,
    projection: Tensor | None = None,
    metric: str = "spectral",
    **kwargs: Any,
) -> SensitivityProfile:
    """The input-sensitivity profile s(k) for every input step k.

    Args:
        model: Any differentiable callable, called as model(inputs, *args, **kwargs).
        inputs: (T, B, I) floats, or (B, T, I) with `batch_first`: the argument the profile
            differentiates by (embed token ids first).
        *args: The model's further positional arguments (a hidden state, a mask).
        loss_fn: With it, measure ||dL/dx_k|| with L = loss_fn(output, target) (or
            loss_fn(output) when `target` is None), `output` being what the model returns.
        target: The loss's target.
        batch_first: Whether time is the second axis of `inputs` (and of a 3-d output); by
            default the model's own (`gradtrace.tracing.modules.own_batch_first`).
        output: Selects y_T (B, O) from what the model returns; by default the last time step
            of its first tensor when that is 3-d, or the tensor itself when it is 2-d.
        units: Measure only these output units of y_T (indices into its O axis).
        projection: Measure projection @ dy_T/dx_k, an (R, O) tensor (for example a few
            directions of a vocabulary-sized output).
        metric: How the (R, I) matrix is measured: "spectral", "frobenius" or "maxabs".
        **kwargs: Passed to `model` as well.

    Returns:
        A `SensitivityProfile` with `log10_norm` of shape (B, T), column k-1 for step k.

    Raises:
        GradtraceError: on inputs that are not finite floating (T, B, I) tensors, an output
            without a (B, O) last step, bad `units` or `projection`, a loss that is not a
            finite scalar, or more backward passes than the budget allows.

    Example:
        >>> enc = torch.nn.TransformerEncoder(
        ...     torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0), 1,
        ...     enable_nested_tensor=False)
        >>> input_sensitivity(enc, torch.randn(20, 3, 8)).log10_norm.shape
        torch.Size([3, 20])
    """
    check_metric(metric)
    check_target(loss_fn, target)
    if isinstance(model, torch.jit.ScriptModule):
        model = eager_recurrent(model)  # hooks and the model's own state need the eager one
    if batch_first is None:
        batch_first = own_batch_first(model)
    check(
        isinstance(batch_first, bool),
        f"`batch_first` must be True or False, got {batch_first!r}",
    )
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
    guard = untouched(model) if isinstance(model, nn.Module) else nullcontext()
    with guard, torch.enable_grad():
        out = call_model(model, (x, *args), kwargs)
        if loss_fn is not None:
            (grad,) = torch.autograd.grad(
                call_loss(loss_fn, out, target), x, materialize_grads=True
            )
            norms = torch.linalg.vector_norm(grad.to(torch.float64), dim=-1)  # (T, B) or (B, T)
            log10 = torch.log10(norms if batch_first else norms.T)  # (B, T)
            return SensitivityProfile(log10.detach().cpu(), "dL/dx_k", "l2")
        y_T = (
            output(out) if output is not None else _last_step(first_tensor(out), batch, batch_first)
        )
        _last_step(y_T, batch, batch_first=False)  # (B, O)
        y_R = _rows(y_T, units, projection)  # (B, R)
        R = y_R.shape[1]
        require(Work(memory=2.0 * R * x.numel() * 8), "the output rows (`units`, `projection`)")
        rows: list[Tensor] = []
        seconds: list[float] = []
        with progress(R, "backward passes") as advance:
            for r in range(R):
                start = time.perf_counter()
                (row,) = torch.autograd.grad(
                    y_R[:, r].sum(), x, retain_graph=r + 1 < R, materialize_grads=True
                )
                rows.append(row)
                advance()
                seconds.append(time.perf_counter() - start)
                if r == 1:  # the faster of the first two passes (the first one warms up)
                    _refuse_slow(R, min(seconds))  # prices the rest before they are run
    J = torch.stack(rows, dim=-2)  # (T, B, R, I) or (B, T, R, I)
    J = J if batch_first else J.transpose(0, 1)  # (B, T, R, I)
    log10 = torch.log10(matrix_metric(J.to(torch.float64), metric))  # (B, T)
    quantity = "dy_T/dx_k" if units is None and projection is None else "R dy_T/dx_k"
    return SensitivityProfile(log10.detach().cpu(), quantity, metric)
