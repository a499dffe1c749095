"""The loss-gradient profile ||dL/ds_k|| for k = 0..T, by the engine's sweep on a vector.

    g_T = dL/ds_T,    g_{k-1} = J_k^T g_k     (the backward pass of the recurrence)

renormalised every step like the matrix sweep in `gradtrace.core.engine`, whose block scan it
shares for small states; O(T S^2) for the plain sweep.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from gradtrace.core.engine import (
    block_size,
    block_suffix_products,
    check_jacobians,
    normalise,
    refuse_non_finite,
)
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
    jacobians: Tensor, grad_last: Tensor, *, return_vectors: bool = False
) -> GradientProfile:
    """||dL/ds_k|| for k = 0..T from dL/ds_T, by the vector sweep g_{k-1} = J_k^T g_k.

    Args:
        jacobians: J_1..J_T, (T, S, S) or (T, B, S, S).
        grad_last: dL/ds_T, (S,) for unbatched Jacobians or (B, S) for batched ones.
        return_vectors: also return dL/ds_k themselves (T+1 of them).

    Returns:
        A `GradientProfile` whose `log10_norm` is (T+1,) or (B, T+1), float64.

    Raises:
        GradtraceError: if `grad_last` does not match the Jacobians or is not finite.
    """
    J = check_jacobians(jacobians)  # (T, B, S, S)
    _, B, S, _ = J.shape
    expected = (S,) if jacobians.ndim == 3 else (B, S)
    check(
        isinstance(grad_last, Tensor) and tuple(grad_last.shape) == expected,
        f"`grad_last` must have shape {expected} to match the Jacobians, "
        f"got {tuple(grad_last.shape) if isinstance(grad_last, Tensor) else type(grad_last)}",
    )
    bad = int((~torch.isfinite(grad_last)).sum())
    check(bad == 0, f"`grad_last` must be finite, got {bad} NaN/Inf entries")  # only S numbers
    m = block_size(B, S) if S > 1 else 32
    R, R_scale, pad = block_suffix_products(J, m)
    g = grad_last.reshape(1, B, 1, S).to(dtype=J.dtype, device=J.device)  # (1, B, 1, S)
    g, scale = normalise(g)
    directions, logs = [g[0, :, 0]], [scale[0]]
    for b in range(R.shape[0] - 1, -1, -1):
        rows, extra = normalise(g @ R[b])  # (m, B, 1, S): g_k^T = g_{b m + m}^T R[b, i]
        block_scale = scale + R_scale[b] + extra  # (m, B)
        directions.extend(rows[:, :, 0].flip(0))
        logs.extend(block_scale.flip(0))
        g, scale = rows[:1], block_scale[:1]
    direction = torch.stack(directions[::-1])[pad:]  # (T+1, B, S)
    log_e = torch.stack(logs[::-1])[pad:]  # (T+1, B)
    refuse_non_finite(log_e, J)
    norms = torch.linalg.vector_norm(direction, dim=-1).to(torch.float64)  # (T+1, B)
    log10 = (log_e / _LN10 + torch.log10(norms)).T  # (B, T+1)
    vectors = None
    if return_vectors:
        # In float64 and in log space, so a vanishing entry under a huge scale is 0, not 0 * inf.
        magnitude = torch.log(direction.abs().to(torch.float64)) + log_e.unsqueeze(-1)
        vectors = (torch.sign(direction) * torch.exp(magnitude)).to(J.dtype)  # (T+1, B, S)
        vectors = vectors[:, 0] if jacobians.ndim == 3 else vectors
    return GradientProfile(log10[0] if jacobians.ndim == 3 else log10, vectors)
