"""The loss-gradient profile ||dL/ds_k|| for k = 0..T, by the engine's sweep on one row.

    g_T = dL/ds_T,    g_{k-1}^T = g_k^T J_k     (the backward pass of the recurrence)

is the engine's backward sweep (`gradtrace.core.engine.Sweep`) started from the row g_T^T
instead of the identity, renormalised every step in the same way, O(T S^2) for large states and
blocked for small ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from gradtrace.core.engine import Sweep, matrix_metric
from gradtrace.core.factors import StepSource, as_source
from gradtrace.errors import check

_LN10 = math.log(10.0)


@dataclass(frozen=True)
class GradientProfile:
    """log10 ||dL/ds_k|| for k = 0..T, from a given dL/ds_T.

    Attributes:
        log10_norm: (T+1,) or (B, T+1); float64. Entry T is the norm of the given gradient.
        vectors: dL/ds_k itself, (T+1, S) or (T+1, B, S), when asked for; entries beyond the
            dtype's range are inf or 0 (the log10 values stay exact).
    """

    log10_norm: Tensor
    vectors: Tensor | None = None


def loss_gradient_profile(
    jacobians: Tensor | StepSource, grad_last: Tensor, *, return_vectors: bool = False
) -> GradientProfile:
    """||dL/ds_k|| for k = 0..T from dL/ds_T, by the vector sweep g_{k-1} = J_k^T g_k.

    Args:
        jacobians: J_1..J_T, (T, S, S) or (T, B, S, S), or a step source.
        grad_last: dL/ds_T, (S,) for unbatched Jacobians or (B, S) for batched ones.
        return_vectors: also return dL/ds_k themselves (T+1 of them).

    Returns:
        A `GradientProfile` whose `log10_norm` is (T+1,) or (B, T+1), float64.

    Raises:
        GradtraceError: if `grad_last` does not match the Jacobians or is not finite.
    """
    source, batched = as_source(jacobians)
    B, S = source.batch, source.size
    expected = (B, S) if batched else (S,)
    check(
        isinstance(grad_last, Tensor) and tuple(grad_last.shape) == expected,
        f"`grad_last` must have shape {expected} to match the Jacobians, "
        f"got {tuple(grad_last.shape) if isinstance(grad_last, Tensor) else type(grad_last)}",
    )
    bad = int((~torch.isfinite(grad_last)).sum())
    check(bad == 0, f"`grad_last` must be finite, got {bad} NaN/Inf entries")  # only S numbers
    g = grad_last.reshape(B, 1, S).to(dtype=source.dtype, device=source.device)
    sweep = Sweep(source, g, "frobenius", keep=return_vectors).run()
    last = torch.log(matrix_metric(g.to(torch.float64), "frobenius"))  # (B,), any magnitude
    log_e = torch.cat([sweep.log_c, last.unsqueeze(0)])  # (T+1, B): natural log
    log10 = (log_e / _LN10).T  # (B, T+1)
    vectors = None
    if return_vectors:
        # In float64 and in log space, so a vanishing entry under a huge scale is 0, not 0 * inf.
        direction = sweep.products[:, :, 0].to(torch.float64)  # (T, B, S), normalised
        magnitude = torch.log(direction.abs()) + sweep.scales.unsqueeze(-1)
        rows = torch.sign(direction) * torch.exp(magnitude)
        vectors = torch.cat([rows, g[:, 0].to(torch.float64).unsqueeze(0)]).to(source.dtype)
        vectors = vectors if batched else vectors[:, 0]  # (T+1, [B,] S)
    return GradientProfile(log10 if batched else log10[0], vectors)
