"""The engine: products of step Jacobians for every k in one backward sweep, in log scale.

Given step Jacobians J_1..J_T of any recurrence s_t = F(s_{t-1}, x_t), with J_t = ds_t/ds_{t-1},
the chain rule gives

    ds_T/ds_k = J_T J_{T-1} ... J_{k+1}            (k = 0..T-1)

and the contribution curve is c(k) = metric(ds_T/ds_k). The sweep keeps P_k = ds_T/ds_k and
extends it by one right-multiplication per step, P_{k-1} = P_k J_k, so all T products cost
O(T S^3) rather than O(T^2 S^3) for recomputing each product from scratch.

Numerics: after every step P_k is divided by its largest absolute entry and the logarithm of
that factor is added to a float64 running scale. The stored matrix therefore always has entries
in [-1, 1], and log10 c(k) = scale_k / ln 10 + log10 metric(P_k / scale). Products of 100,000
steps neither underflow nor overflow, in float32 or float64. The precision of log10 c(k) is that
of one matrix product in the Jacobians' dtype (about 1e-6 relative per step in float32, 1e-15 in
float64), accumulated additively over the steps; an exactly zero product gives -inf.

The loss-gradient profile (`gradtrace.core.gradient_profile`) is the same sweep applied to a
vector: g_{k-1} = J_k^T g_k with g_T = dL/ds_T, which costs O(T S^2).

Small states: when B S^3 <= 48^3 the per-step cost is Python's overhead, not arithmetic, so
steps are grouped into blocks of 32 whose suffix products come from a parallel (Hillis-Steele)
scan, log2(32) batched products over all steps, then T/32 sequential steps. Both sweeps then do
O(T S^3 log 32) arithmetic, which at that size is far below the overhead it saves; larger
states use the plain sweep and its stated cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from gradtrace.budgets import Work
from gradtrace.errors import check

METRICS = ("spectral", "frobenius", "maxabs")
_CHUNK = 256  # products stored before their metric is taken in one batched call
_LN10 = math.log(10.0)


@dataclass(frozen=True)
class ContributionCurve:
    """log10 c(k) = log10 metric(ds_T/ds_k) for k = 0..T-1.

    Attributes:
        log10_norm: (T,) for unbatched Jacobians, (B, T) for batched ones; float64.
        metric: one of `METRICS`.
    """

    log10_norm: Tensor
    metric: str

    @property
    def steps(self) -> int:
        return int(self.log10_norm.shape[-1])

    @property
    def k(self) -> Tensor:
        """The start steps k = 0..T-1, aligned with the last axis of `log10_norm`."""
        return torch.arange(self.steps)


def sweep_work(steps: int, batch: int, size: int, metric: str, itemsize: int = 8) -> Work:
    """The estimated cost of `contribution_curve` on (T, B, S, S) Jacobians, for budgets.

    The Jacobians themselves, the block scan's copies of them for small states, one matrix
    product per step (log2 32 more inside blocks), and the spectral metric's Gram eigenvalues.
    """
    T, B, S = steps, batch, size
    m = block_size(B, S)
    scan = 1 + math.log2(m) if m > 1 else 1.0
    flops = 2.0 * T * B * S**3 * scan + (10.0 * T * B * S**3 if metric == "spectral" else 0.0)
    memory = itemsize * T * B * S * S * (3.0 if m > 1 else 1.2)
    return Work(memory=memory, flops=flops, steps=T / m + T / _chunk(S))


def check_jacobians(jacobians: Tensor, name: str = "jacobians") -> Tensor:
    """Validate the shape of step Jacobians and return them as (T, B, S, S).

    Finiteness is checked on the results instead (`_refuse_non_finite`): a NaN or Inf entry
    always turns the sweep's output NaN, and a separate pass over (T, B, S, S) would cost as
    much memory traffic as the sweep itself.

    Raises:
        GradtraceError: on a wrong number of dimensions, non-square blocks or T = 0.
    """
    check(
        isinstance(jacobians, Tensor),
        f"`{name}` must be a torch.Tensor, got {type(jacobians).__name__}",
    )
    check(
        jacobians.ndim in (3, 4),
        f"`{name}` must have shape (T, S, S) or (T, B, S, S), got shape {tuple(jacobians.shape)}",
    )
    check(
        jacobians.shape[-1] == jacobians.shape[-2],
        f"`{name}` must hold square S x S matrices, got shape {tuple(jacobians.shape)}",
    )
    check(jacobians.shape[0] >= 1, f"`{name}` must hold at least one step (T >= 1), got T = 0")
    check(
        jacobians.is_floating_point(),
        f"`{name}` must be a floating-point tensor, got dtype {jacobians.dtype}",
    )
    return jacobians if jacobians.ndim == 4 else jacobians.unsqueeze(1)  # (T, B, S, S)


def suffix_sum(values: Tensor) -> Tensor:
    """Reverse cumulative sum along dim 0: out[k] = values[k] + values[k+1] + ... + values[T-1].

    For per-step logs l_1..l_T stored at rows 0..T-1 this gives row k = l_{k+1} + ... + l_T,
    the log of the product J_T ... J_{k+1} when each l_t is the log of a factor of J_t.
    """
    return torch.flip(torch.cumsum(torch.flip(values, [0]), 0), [0])


def refuse_non_finite(result: Tensor, jacobians: Tensor, name: str = "jacobians") -> None:
    """Raise if `result` shows what only non-finite Jacobians produce (NaN or +inf).

    With finite Jacobians every renormalised quantity is finite, or -inf for an exactly zero
    product, so only then is the full pass over the Jacobians paid for, to name the count.
    """
    if bool(torch.isnan(result).any() or (result == math.inf).any()):
        bad = int((~torch.isfinite(jacobians)).sum())
        check(bad == 0, f"`{name}` must be finite, got {bad} NaN/Inf entries")


def check_metric(metric: str) -> None:
    """Raise `GradtraceError` unless `metric` is one of `METRICS`."""
    check(metric in METRICS, f"`metric` must be one of {', '.join(METRICS)}, got {metric!r}")


def matrix_metric(matrices: Tensor, metric: str) -> Tensor:
    """metric of each matrix of a (..., R, C) stack, float64 of shape (...), any magnitude.

    Each matrix is divided by its largest entry first, so the squares inside the spectral and
    Frobenius norms neither under- nor overflow.
    """
    check_metric(metric)
    scaled, log_peak = normalise(matrices)
    return _metric(scaled, metric) * torch.exp(log_peak)


def _chunk(size: int) -> int:
    """Products measured in one batched metric call: fewer the larger each product is."""
    return max(1, min(_CHUNK, 2**16 // size**2))


def _metric(products: Tensor, metric: str) -> Tensor:
    """metric of each matrix in a (..., R, C) stack, as float64 of shape (...).

    The spectral norm is the square root of the largest eigenvalue of the smaller Gram matrix:
    about twice as fast as an SVD, and as accurate for the largest singular value (relative
    error of order the dtype's epsilon, since the products are normalised to entries <= 1).
    """
    if metric == "maxabs":
        value = products.abs().amax(dim=(-2, -1))
    elif metric == "frobenius":
        value = torch.linalg.matrix_norm(products, ord="fro")
    else:
        wide = products.shape[-1] > products.shape[-2]
        gram = products @ products.mT if wide else products.mT @ products  # (..., R, R) or C, C
        value = torch.linalg.eigvalsh(gram)[..., -1].clamp(min=0).sqrt()
    return value.to(torch.float64)


def normalise(products: Tensor) -> tuple[Tensor, Tensor]:
    """Divide each matrix of (..., S, S) by its largest |entry|; return it and ln(that entry)."""
    peak = torch.linalg.vector_norm(products, ord=math.inf, dim=(-2, -1))  # (...): max |entry|
    scaled = products / torch.where(peak > 0, peak, 1).unsqueeze(-1).unsqueeze(-1)
    return scaled, torch.log(peak.to(torch.float64))


def block_size(batch: int, size: int) -> int:
    """Steps combined per block: 1 (a plain sequential sweep) once matrix products dominate.

    For small states the sweep's cost is Python's per-step overhead, not arithmetic, so the
    steps are grouped into blocks whose suffix products come from a parallel scan: log2(m)
    batched products over all T steps, then T/m sequential steps instead of T.
    """
    return 1 if batch * size**3 > 48**3 else 32


def block_suffix_products(J: Tensor, m: int) -> tuple[Tensor, Tensor, int]:
    """Suffix products inside blocks of m steps, by a Hillis-Steele scan.

    With the steps padded in front by identities to a multiple of m, block b holds
    X_i = J_{b m + i + 1 - pad} for i = 0..m-1, and the result R[b, i] = X_{m-1} ... X_i,
    renormalised, with its ln-scale in `log_scale[b, i]`.

    Returns:
        R (nb, m, B, S, S), log_scale (nb, m, B) float64, and the padding length.
    """
    T, B, S, _ = J.shape
    if m == 1:  # a plain sequential sweep: nothing to combine, nothing to copy
        return J.unsqueeze(1), torch.zeros(T, 1, B, dtype=torch.float64, device=J.device), 0
    pad = (-T) % m
    eye = torch.eye(S, dtype=J.dtype, device=J.device).expand(pad, B, S, S)
    X = torch.cat([eye, J]).reshape(-1, m, B, S, S)  # (nb, m, B, S, S)
    R, log_scale = normalise(X)
    d = 1
    while d < m:
        joined, extra = normalise(R[:, d:] @ R[:, :-d])  # (nb, m-d, B, S, S)
        R = torch.cat([joined, R[:, m - d :]], dim=1)
        log_scale = torch.cat(
            [log_scale[:, d:] + log_scale[:, :-d] + extra, log_scale[:, m - d :]], 1
        )
        d *= 2
    return R, log_scale, pad


def contribution_curve(
    jacobians: Tensor,
    metric: str = "spectral",
    *,
    rows: slice | None = None,
    cols: slice | None = None,
) -> ContributionCurve:
    """c(k) = metric(J_T ... J_{k+1}) for every k = 0..T-1 in one backward sweep.

    Args:
        jacobians: J_1..J_T, (T, S, S) or batched (T, B, S, S); row t-1 holds J_t.
        metric: "spectral" (largest singular value), "frobenius" or "maxabs" (largest
            absolute entry).
        rows: optional block of the product's rows to measure (e.g. the h rows of an LSTM's
            (h, c) state); the whole product is still carried.
        cols: optional block of the product's columns to measure.

    Returns:
        A `ContributionCurve` with `log10_norm` of shape (T,) or (B, T).

    Raises:
        GradtraceError: on an unknown metric or malformed Jacobians.

    Example:
        >>> J = torch.full((50, 1, 1), 0.9, dtype=torch.float64)
        >>> contribution_curve(J).log10_norm[0]  # log10 0.9**50
        tensor(-2.2879, dtype=torch.float64)
    """
    check_metric(metric)
    J = check_jacobians(jacobians)  # (T, B, S, S)
    _, B, S, _ = J.shape
    whole = rows is None and cols is None
    m = block_size(B, S)
    R, R_scale, pad = block_suffix_products(J, m)
    out = torch.empty(R.shape[0] * m, B, dtype=torch.float64, device=J.device)
    carried = torch.eye(S, dtype=J.dtype, device=J.device).expand(B, S, S)  # ds_T/ds_T
    carried_scale = torch.zeros(B, dtype=torch.float64, device=J.device)
    pending: list[tuple[int, Tensor, Tensor]] = []
    chunk = _chunk(S)

    def flush() -> None:
        stops = [start for start, _, _ in pending]
        products = pending[0][1] if len(pending) == 1 else torch.cat([p for _, p, _ in pending])
        scales = pending[0][2] if len(pending) == 1 else torch.cat([s for _, _, s in pending])
        refuse_non_finite(scales, J)  # before a decomposition chokes on NaN
        if whole and metric == "maxabs":  # 1 after normalising, or 0 when the scale is -inf
            values = torch.ones_like(scales)
        else:
            # A block can be tiny next to the whole product: rescale it before squaring it.
            part, part_scale = normalise(products[..., rows or slice(None), cols or slice(None)])
            values, scales = _metric(part, metric), scales + part_scale
        block = torch.cat([torch.arange(s, s + m) for s in stops]).to(J.device)
        out[block] = scales / _LN10 + torch.log10(values)
        pending.clear()

    for b in range(R.shape[0] - 1, -1, -1):
        products, extra = normalise(carried.unsqueeze(0) @ R[b])  # (m, B, S, S): P_k, k in b
        scales = carried_scale + R_scale[b] + extra  # (m, B)
        pending.append((b * m, products, scales))
        if len(pending) * m >= chunk:
            flush()
        carried, carried_scale = products[0], scales[0]
    if pending:
        flush()
    refuse_non_finite(out, J)
    log10 = out[pad:].T  # (B, T)
    return ContributionCurve(log10[0] if jacobians.ndim == 3 else log10, metric)


def diagonal_curve(diagonals: Tensor, metric: str = "spectral") -> ContributionCurve:
    """c(k) for diagonal step Jacobians J_t = diag(d_t), in O(T S) rather than O(T S^3).

    The product is diag(prod_{t>k} d_t), so log|entry i| is a suffix sum of log|d_t,i|: the
    spectral and max-abs norms are its largest entry, the Frobenius norm its root sum of
    squares. This is the LSTM's cell-state path, dc_t/dc_{t-1} = diag(f_t).

    Args:
        diagonals: d_1..d_T, (T, S) or batched (T, B, S).
        metric: "spectral", "frobenius" or "maxabs".

    Returns:
        A `ContributionCurve` with `log10_norm` of shape (T,) or (B, T).
    """
    check_metric(metric)
    check(
        isinstance(diagonals, Tensor) and diagonals.ndim in (2, 3) and diagonals.shape[0] >= 1,
        "`diagonals` must have shape (T, S) or (T, B, S) with T >= 1, got "
        f"{tuple(diagonals.shape) if isinstance(diagonals, Tensor) else type(diagonals)}",
    )
    logs = torch.log10(diagonals.abs().to(torch.float64))  # (T, [B,] S)
    suffix = suffix_sum(logs)  # (T, [B,] S): log10 |prod_{t>k} d_t|
    if metric == "frobenius":
        curve = 0.5 * torch.logsumexp(2 * _LN10 * suffix, dim=-1) / _LN10
    else:
        curve = suffix.amax(dim=-1)  # (T, [B])
    refuse_non_finite(curve, diagonals, "diagonals")
    return ContributionCurve(curve.T if curve.ndim == 2 else curve, metric)
