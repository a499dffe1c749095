"""Lyapunov spectrum of a product of step Jacobians by repeated QR.

The forward tangent dynamics along a trajectory is v_t = J_t v_{t-1}, t = 1..T, so a
perturbation of the first state grows as the product P_T = J_T ... J_2 J_1. Its singular values
grow (or shrink) like exp(lambda_i T); the lambda_1 >= lambda_2 >= ... are the Lyapunov
exponents, and lambda_1 is the long-run growth rate of the gradient through the product.

Multiplied out, the product can under- or overflow within a few hundred steps, so it is
re-orthonormalised after every step (Benettin, Galgani, Giorgilli, Strelcyn 1980, "Lyapunov
characteristic exponents for smooth dynamical systems and for Hamiltonian systems; a method for
computing all of them"; Shimada and Nagashima 1979, "A numerical approach to ergodic
problem of dissipative dynamical systems"):

    Q_0         a random (S, K) matrix with orthonormal columns
    Q_t R_t   = qr(J_t Q_{t-1}),  with the signs fixed so that diag(R_t) > 0
    lambda_i  = (1/T) sum_t log R_t[i, i]

Since J_t ... J_1 Q_0 = Q_T R_T ... R_1, the log R_t[i, i] are the per-step local expansion
factors of the i-th direction, and each step only handles numbers of the size of one Jacobian.

For products of i.i.d. Gaussian matrices with N(0, g^2/N) entries the exponents are known
exactly (Newman 1986, "The distribution of Lyapunov exponents: exact results for random
matrices"): lambda_i = ln g + (ln(2/N) + digamma((N - i + 1)/2)) / 2, the tests' reference.

Precision: every step is one QR of an (S, K) matrix the size of one Jacobian, so nothing
under- or overflows whatever T is and rounding does not compound. In float32 the top local
factor agrees with a float64 run to about 1e-5 relative per step, and the exponents to about
1e-6 (S = 8) to 1e-4 (S = 32) absolute; lower local factors can differ more step by step, since
rounding tilts the frame between nearly equal directions, but that moves expansion between them
and cancels in the mean. The larger error is in the estimate itself: for random Jacobians the
mean converges like 1/sqrt(T), plus a transient of order 1/T from the random start Q_0.

A random Q_0 measures the product's growth along Q_0: on a long chaotic trajectory that is the
same rate, but on a short or degenerate product (a ReLU RNN whose units switch off one by one)
it is only Q_0's share of the growth. `backward_frame` runs the same recursion backwards over
the transposed product and ends at its top right singular directions; from there the growth
factors are the product's own singular values, (1/T) ln sigma_i(J_T ... J_1), to within about
(sigma_{i+1} / sigma_i)^2 / T of the product, which long products make negligible. The records
start from it (`gradtrace.analysis.flow.lyapunov_of`).

Shape letters: T steps, B batch, S state size, K number of exponents (see `gradtrace.core`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import chain

import torch
from torch import Tensor

from gradtrace.core.engine import BLOCK, block_size, block_suffix, refuse_non_finite
from gradtrace.core.factors import (
    StepSource,
    as_source,
    chunk_steps,
    chunks_backward,
    chunks_forward,
)
from gradtrace.core.products import times_thin
from gradtrace.errors import check, described
from gradtrace.records.flow import LyapunovSpectrum


def lyapunov_spectrum(
    jacobians: Tensor,
    k: int | None = None,
    *,
    q0: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> LyapunovSpectrum:
    """Top-K Lyapunov exponents of J_T ... J_1 by the QR method.

    Args:
        jacobians: J_1..J_T in the order they act (J_1 first), shape (T, S, S), or (T, B, S, S)
            for B independent trajectories handled in one batched QR per step.
        k: how many exponents to compute, 1..S; None computes all S.
        q0: starting directions, shape (S, K) or (B, S, K); its columns only need to be
            linearly independent, they are orthonormalised first. None draws a Gaussian one
            (shared by all B trajectories).
        generator: seeds the random Q_0 when `q0` is None.

    Returns:
        The exponents, sorted descending, and the local log factors they average.

    Raises:
        GradtraceError: if `jacobians` is not a finite real (T, S, S) or (T, B, S, S) tensor
            with T >= 1, or `k` or `q0` do not fit it.

    Example:
        >>> J = torch.diag(torch.tensor([2.0, 0.5])).expand(100, 2, 2)
        >>> lyapunov_spectrum(J, q0=torch.eye(2)).exponents  # ln 2, -ln 2
        tensor([ 0.6931, -0.6931])
    """
    check(
        isinstance(jacobians, Tensor),
        f"`jacobians` must be a torch.Tensor, got {type(jacobians).__name__}",
    )
    shape = tuple(jacobians.shape)
    check(
        jacobians.ndim in (3, 4) and shape[-1] == shape[-2],
        f"`jacobians` must have shape (T, S, S) or (T, B, S, S), got shape {shape}",
    )
    check(shape[0] > 0, f"`jacobians` must hold at least one step, got shape {shape}")
    check(
        jacobians.is_floating_point(),
        f"`jacobians` must have a real floating dtype, got {jacobians.dtype}",
    )
    check(
        bool(torch.isfinite(jacobians).all()),
        "`jacobians` must be finite, got NaN or inf entries",
    )
    return _spectrum(iter(jacobians.unbind(0)), jacobians[0], k, q0, generator)


def source_spectrum(source: StepSource, k: int, q0: Tensor) -> LyapunovSpectrum:
    """`lyapunov_spectrum` of a step source, streamed forwards a chunk at a time, each step
    applied as J_t Q (`Factors.right`), so no (T, B, S, S) tensor is ever held.

    Args:
        source: J_1..J_T of B sequences (e.g. a cell's `Replay`).
        k: how many exponents, 1..S.
        q0: starting directions (S, K), shared by the B sequences, or one frame per
            sequence (B, S, K) such as `backward_frame`'s.

    Returns:
        Exponents (B, K) and local log factors (T, B, K).
    """
    T, B, S = source.steps, source.batch, source.size
    check(
        isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= S,
        f"`k` must be an integer from 1 to S = {S}, got {k!r}",
    )
    q, _ = torch.linalg.qr(q0.to(dtype=source.dtype, device=source.device))
    q = q.expand(B, S, k).contiguous()  # (B, S, K)
    logs = []
    for start, stop in chunks_forward(T, chunk_steps(source)):
        factors = source.factors(start, stop)
        for i in range(factors.steps):
            q, log_r = _orthonormalise(factors.right(i, q))
            logs.append(log_r)
    stacked = torch.stack(logs)  # (T, B, K)
    refuse_non_finite(stacked)
    exponents, order = stacked.mean(dim=0).sort(dim=-1, descending=True)
    return LyapunovSpectrum(exponents, stacked.gather(-1, order.expand_as(stacked)))


def lyapunov_spectrum_streaming(
    step_jacobians: Iterable[Tensor],
    k: int | None = None,
    *,
    q0: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> LyapunovSpectrum:
    """`lyapunov_spectrum` for Jacobians produced one at a time.

    Holds one (S, S) Jacobian and the (T, K) local factors instead of all (T, S, S) Jacobians,
    so trajectories of millions of steps fit in memory.

    Args:
        step_jacobians: J_1, J_2, ... each of shape (S, S), or all (B, S, S).
        k: as in `lyapunov_spectrum`.
        q0: as in `lyapunov_spectrum`.
        generator: as in `lyapunov_spectrum`.

    Returns:
        The same `LyapunovSpectrum` that `lyapunov_spectrum` gives on the stacked Jacobians.

    Raises:
        GradtraceError: if the iterable is empty, a step is not a finite real square matrix
            (or batch of them), a step's shape differs from the first one's, or `k` or `q0`
            do not fit.
    """
    steps = iter(step_jacobians)
    first = next(steps, None)
    check(first is not None, "`step_jacobians` must yield at least one Jacobian, got none")
    assert first is not None  # for the type checker; `check` has refused None
    _check_step(first, 1, None)
    checked = (_check_step(J, t, first) for t, J in enumerate(steps, start=2))
    return _spectrum(chain([first], checked), first, k, q0, generator)


def _check_step(J: Tensor, t: int, first: Tensor | None) -> Tensor:
    """Validate step t of `step_jacobians`, later ones against the first step; return it."""
    check(
        isinstance(J, Tensor),
        f"`step_jacobians` must yield torch.Tensor, got {type(J).__name__} at step {t}",
    )
    shape = tuple(J.shape)
    if first is None:
        check(
            J.ndim in (2, 3) and shape[-1] == shape[-2],
            f"`step_jacobians` must yield (S, S) or (B, S, S) tensors, got shape {shape} "
            f"at step {t}",
        )
        check(
            J.is_floating_point(),
            f"`step_jacobians` must yield real floating tensors, got {J.dtype} at step {t}",
        )
    else:
        like_first = (first.shape, first.dtype, first.device)
        check(
            (J.shape, J.dtype, J.device) == like_first,
            f"`step_jacobians` must keep the first step's shape {tuple(first.shape)}, "
            f"dtype {first.dtype} and device {first.device}, got {shape}, {J.dtype} and "
            f"{J.device} at step {t}",
        )
    check(
        bool(torch.isfinite(J).all()),
        f"`step_jacobians` must be finite, got NaN or inf entries at step {t}",
    )
    return J


def _spectrum(
    steps: Iterator[Tensor],
    first: Tensor,
    k: int | None,
    q0: Tensor | None,
    generator: torch.Generator | None,
) -> LyapunovSpectrum:
    """Run the QR sweep over validated steps shaped like `first` and sort the result."""
    S = first.shape[-1]
    k = S if k is None else k
    check(
        isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= S,
        f"`k` must be an integer from 1 to S = {S}, got {k!r}",
    )
    q = _start_frame(first, k, q0, generator)  # (S, K) or (B, S, K)
    logs = torch.stack(_sweep(steps, q))  # (T, K) or (T, B, K)
    exponents, order = logs.mean(dim=0).sort(dim=-1, descending=True)  # (K,) or (B, K)
    return LyapunovSpectrum(exponents, logs.gather(-1, order.expand_as(logs)))


def _sweep(steps: Iterator[Tensor], q: Tensor) -> list[Tensor]:
    """The QR recursion: log diag R_t for every step, each (K,) or (B, K)."""
    logs = []
    for J in steps:
        q, log_r = _qr_step(J, q)
        logs.append(log_r)
    return logs


def _qr_step(J: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
    """One step Q_t R_t = qr(J_t Q_{t-1}); return Q_t and log diag R_t with diag R_t > 0."""
    return _orthonormalise(times_thin(J, q))


def _orthonormalise(Jq: Tensor) -> tuple[Tensor, Tensor]:
    """Q R = qr(J_t Q_{t-1}) with the signs fixed; Q and log diag R."""
    Q, R = torch.linalg.qr(Jq)  # (..., S, K), (..., K, K)
    diag = torch.diagonal(R, dim1=-2, dim2=-1)  # (..., K)
    # Flipping column i of Q with row i of R keeps Q R; without it Householder QR returns
    # either sign and Q_t would jump between steps.
    sign = torch.where(diag < 0, -1.0, 1.0).to(diag.dtype)
    return Q * sign.unsqueeze(-2), diag.abs().log()


def _start_frame(
    first: Tensor, k: int, q0: Tensor | None, generator: torch.Generator | None
) -> Tensor:
    """Q_0: `q0` or a Gaussian draw, with orthonormal columns, shape (S, K) or (B, S, K)."""
    S = first.shape[-1]
    if q0 is None:
        device = generator.device if generator is not None else first.device
        q0 = torch.randn(S, k, generator=generator, dtype=first.dtype, device=device)
    else:
        allowed = [(S, k), (*first.shape[:-2], S, k)]
        check(
            isinstance(q0, Tensor) and tuple(q0.shape) in allowed,
            f"`q0` must have shape {' or '.join(map(str, dict.fromkeys(allowed)))} for "
            f"S = {S}, K = {k}, got {described(q0)}",
        )
        check(bool(torch.isfinite(q0).all()), "`q0` must be finite, got NaN or inf entries")
    q, _ = torch.linalg.qr(q0.to(dtype=first.dtype, device=first.device))
    return q


def start_frame(size: int, k: int, seed: int) -> Tensor:
    """Seeded Gaussian start directions Q_0, shape (S, K), float64, drawn on the CPU.

    Drawing on the CPU keeps Q_0, and so every estimate, the same on any device.
    """
    return torch.randn(size, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def top_exponent(
    jacobians: Tensor | StepSource, seed: int = 0, start: Tensor | None = None
) -> float:
    """lambda_1 in nats per step from a seeded start, averaged over the batch if there is one.

    With K = 1 the QR method is v_t = J_t v_{t-1} / ||J_t v_{t-1}|| and lambda_1 =
    (1/T) ln ||J_T ... J_1 v_0||, so one forward sweep of the vector gives the same number
    without a QR per step. The Jacobians stream a chunk at a time; for small states the
    chunk's block products (`gradtrace.core.engine.block_suffix`) carry v a block at a time.
    From `backward_frame`'s first direction, ||J_T ... J_1 v_0|| is sigma_1 of the product.

    Args:
        jacobians: J_1..J_T in the order they act, (T, [B,] S, S) or a step source.
        seed: Seeds v_0 (see `start_frame`), the same on any device.
        start: v_0 itself instead, (S,) or one per sequence (B, S).
    """
    source, _ = as_source(jacobians)
    B, S = source.batch, source.size
    if start is None:
        start = start_frame(S, 1, seed)[:, 0]
    v0 = start.to(device=source.device, dtype=source.dtype).expand(B, S)
    v = v0 / torch.linalg.vector_norm(v0, dim=-1, keepdim=True).clamp_min(_tiny(source))
    total = _carry(source, v.unsqueeze(-1).clone(), backward=False)[1]
    refuse_non_finite(total)
    return float(total.mean()) / source.steps


def backward_frame(jacobians: Tensor | StepSource, q0: Tensor) -> Tensor:
    """The top-K right singular directions of each sequence's product P = J_T ... J_1, as
    an orthonormal frame (B, S, K): the start from which the QR method measures the product
    itself rather than a random direction's share of it.

    The QR method run backwards over the transposed product, W_T = q0^T, W_{t-1} = W_t J_t
    with the rows re-orthonormalised each step (`Factors.left` on K rows), ends at W_0 whose
    rows span P^T applied to K directions: the top right singular subspace of P, to within
    about sigma_{K+1} / sigma_K of P. From it the forward sweep's growth factors are P's own
    singular values, (1/T) ln sigma_i(J_T ... J_1): the finite-time exponents, free of the
    transient a random start leaves (about ln |v_0 . v_1| / T, which is large on short or
    degenerate products, such as a ReLU RNN whose units switch off one by one).

    Args:
        jacobians: J_1..J_T in the order they act, (T, [B,] S, S) or a step source.
        q0: The backward sweep's start, (S, K), K <= S.
    """
    source, _ = as_source(jacobians)
    B, S, K = source.batch, source.size, q0.shape[-1]
    w = q0.to(device=source.device, dtype=source.dtype).mT.expand(B, K, S).contiguous()
    if K == 1:  # a vector: renormalised, not orthonormalised, and blocked for small states
        w = w / torch.linalg.vector_norm(w, dim=-1, keepdim=True).clamp_min(_tiny(source))
        return _carry(source, w, backward=True)[0].mT
    for begin, stop in chunks_backward(source.steps, chunk_steps(source)):
        factors = source.factors(begin, stop)
        for i in range(factors.steps - 1, -1, -1):
            w = torch.linalg.qr(factors.left(i, w).mT)[0].mT  # (B, K, S)
    return w.mT.contiguous()


def _tiny(source: StepSource) -> float:
    return float(torch.finfo(source.dtype).tiny)


def _carry(source: StepSource, v: Tensor, backward: bool) -> tuple[Tensor, Tensor]:
    """Carry unit vectors through every step, forwards as columns v (B, S, 1) -> J_t v, or
    backwards as rows v (B, 1, S) -> v J_t, renormalised after each product; the last
    vectors and the total log growth (B,) float64."""
    T, B, S = source.steps, source.batch, source.size
    total = torch.zeros(B, dtype=torch.float64, device=source.device)
    blocked = block_size(B, S) > 1
    n = chunk_steps(source, BLOCK if blocked else 1)
    # ||v|| after every product, written in place; their logs are summed once at the end
    norms = torch.empty(T, B, 1, 1, dtype=source.dtype, device=source.device)
    tiny = _tiny(source)
    count = 0

    def renormalise(v: Tensor) -> Tensor:
        nonlocal count
        norm = norms[count]
        torch.linalg.vector_norm(v, dim=(1, 2), keepdim=True, out=norm)
        count += 1
        return v / norm.clamp_min(tiny)

    chunks = chunks_backward(T, n) if backward else chunks_forward(T, n)
    for begin, stop in chunks:
        factors = source.factors(begin, stop)
        done = 0
        if blocked and factors.steps >= BLOCK:
            done = factors.steps - factors.steps % BLOCK
        singles = range(done, factors.steps)
        if backward:  # the chunk's last steps first, one by one, then its blocks
            for i in reversed(singles):
                v = renormalise(factors.left(i, v))
        if done:
            suffix, logs = block_suffix(factors.dense()[:done], BLOCK)
            blocks = range(suffix.shape[0])
            for b in reversed(blocks) if backward else blocks:
                product = suffix[b, :, :, 0]  # R_{b,0}: the whole block, J_last ... J_first
                v = renormalise(v @ product if backward else product @ v)
                total = total + logs[b, 0]
        if not backward:
            for i in singles:
                v = renormalise(factors.right(i, v))
    total = total + torch.log(norms[:count].view(count, B).to(torch.float64)).sum(0)
    return v, total
