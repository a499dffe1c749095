"""Matrix metrics of stacks of products: the spectral norm certified, the others direct.

The spectral norm sigma_1(M) of the engine's products M (..., R, C) comes from Rayleigh-Ritz on
an r-dimensional subspace U of the row space that the engine refines once per chunk of steps
(the top left singular vectors of J_T ... J_{k+1} settle as k falls, and a subspace follows them
far better than one vector). The engine carries each product in an orthonormal basis of the row
space whose first r vectors span U, so Y = U^T M is the product's first r rows, and measures each
product by F = ||M||_F^2 as it goes; the Ritz values theta_1 >= ... >= theta_r
(the eigenvalues of Y Y^T, r x r) cost no pass over M. Each answer carries a certificate.

First, by interlacing (lambda_i >= theta_i), lambda_1 <= F - theta_2 - ... - theta_r, so

    theta_1 <= lambda_1 <= theta_1 + (F - theta_1 - ... - theta_r),

the last term being the Frobenius mass of M outside span(U). Long products, whose singular
values beyond the r-th have fallen far below sigma_1, are settled by that alone (`settled`).
For the others, with the top Ritz vector u = U w (unit),

    theta = ||M^T u||^2            a lower bound on lambda_1 = sigma_1^2 (Rayleigh quotient)
    r     = ||M M^T u - theta u||  some eigenvalue of M M^T lies within r of theta
                                   (one product M (Y^T w) per matrix)
    a     = F - theta - t          an upper bound on lambda_2, t = theta_3 + ... + theta_r

and if theta > a >= lambda_2, by Kato-Temple

    theta <= lambda_1 <= theta + r^2 / (theta - a).

A product is accepted when either interval is within `TOLERANCE` (1e-12) of theta, relative, so
sqrt(theta) is sigma_1 to 5e-13 relative or better; between Kato-Temple tests, up to `ROUNDS`
rounds of subspace iteration (two passes over M each) sharpen u. (When the carried subspace
settled none of a chunk's products, a round comes before the first test: from that subspace the
test certified none of them on the benchmarks' Gaussian, tanh RNN and language-model sweeps.)
That test needs theta to carry more than half the Frobenius mass, which most products do; short
ones, whose singular values are still spread, go to a second certificate, by inertia: on the
smaller Gram matrix G a few rounds of subspace iteration give a Ritz value theta <= lambda_1,
and a Cholesky factorisation of theta (1 + tol) I - G proves lambda_1 < theta (1 + tol)
(`_by_inertia`). What none certifies gets the exact largest eigenvalue of G
(`torch.linalg.eigvalsh`), and so do the products the first tier left when they are too few for
the rounds' fixed cost to pay (m n^3 up to `DIRECT_WORK`: the first short chunks of a 64-unit
state). In float32 the tolerance is `TOLERANCE_FLOAT32` (1e-4), above the Cholesky's own
rounding there.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from gradtrace.core.products import times_thin
from gradtrace.errors import check

METRICS = ("spectral", "frobenius", "maxabs")
ROUNDS = 3  # rounds of subspace iteration before the exact fallback
FAR_GAP = 0.2  # a Ritz gap under this share of the mass outside span(U) goes to inertia
POWER_SIZE = 32  # Gram matrices up to this size are bracketed by batched squaring
LAPACK_SIZE = 16  # up to this size, those the first bracket leaves open get eigvalsh at once
SQUARINGS = 6  # G^64: the bracket closes to 1e-12 for lambda_2 / lambda_1 up to about 0.65
STAGES = (1, 3, SQUARINGS)  # squarings after which `bracket_top` reads its brackets
DIRECT_WORK = 2**22  # m n^3 up to which m Gram matrices get exact eigenvalues, not inertia
TOLERANCE = 1e-12  # relative width of the certified interval for lambda_1 = sigma_1^2
TOLERANCE_FLOAT32 = 1e-4  # the same in float32, where n eps ||G|| is about 1e-5


def check_metric(metric: str) -> None:
    """Raise `GradtraceError` unless `metric` is one of `METRICS`."""
    check(metric in METRICS, f"`metric` must be one of {', '.join(METRICS)}, got {metric!r}")


def eigh_psd(G: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvalues (ascending) and eigenvectors of symmetric positive semi-definite G (..., n, n).

    LAPACK's eigh can fail to converge on matrices with clusters of (nearly) equal eigenvalues,
    such as the Gram matrices of an identity-initialised RNN's products; for a PSD matrix the
    SVD is the same decomposition (singular values are the eigenvalues), so it takes over then.
    """
    try:
        return torch.linalg.eigh(G)
    except torch.linalg.LinAlgError:
        U, values, _ = torch.linalg.svd((G + G.mT) / 2)  # descending, for PSD G
        return values.flip(-1), U.flip(-1)


def eigvalsh_psd(G: Tensor) -> Tensor:
    """The eigenvalues (ascending) of symmetric PSD G (..., n, n); see `eigh_psd`."""
    try:
        return torch.linalg.eigvalsh(G)
    except torch.linalg.LinAlgError:
        return torch.linalg.svdvals((G + G.mT) / 2).flip(-1)


def gram_spectral(M: Tensor) -> Tensor:
    """sigma_1 of each (..., R, C) matrix from the top eigenvalue of the smaller Gram matrix G:
    bracketed by batched squaring up to `POWER_SIZE` (`bracket_top`), the exact eigenvalue
    where the bracket is wider than the tolerance or the matrices are larger. Up to
    `LAPACK_SIZE` the matrices that the first bracket (no squaring) leaves open go to the
    exact eigenvalue at once: one LAPACK call there (7 us at n = 16) costs less than the
    further squarings and reads (on a sweep's 1,000 products at n = 16, one thread:
    1.0-1.9 ms against 1.6-2.3 ms for the whole bracket and its fallback)."""
    gram = _smaller_gram(M)  # (..., n, n)
    n = gram.shape[-1]
    if n > POWER_SIZE or gram.numel() == 0:
        return eigvalsh_psd(gram)[..., -1].clamp(min=0).sqrt()
    G = gram.reshape(-1, n, n)
    tol = TOLERANCE if G.dtype == torch.float64 else TOLERANCE_FLOAT32
    lam, upper = bracket_top(G, tol, squarings=n > LAPACK_SIZE)
    todo = torch.nonzero(~(upper <= lam * (1 + tol))).flatten()
    if todo.numel():
        lam[todo] = eigvalsh_psd(G[todo])[..., -1].clamp(min=0).to(torch.float64)
    return lam.view(gram.shape[:-2]).sqrt().to(M.dtype)


def bracket_top(G: Tensor, tol: float = 0.0, squarings: bool = True) -> tuple[Tensor, Tensor]:
    """Bounds rho <= lambda_1 <= upper on the top eigenvalue of each symmetric PSD (m, n, n)
    matrix, float64, from batched products alone.

    Small matrices come in large stacks, for which one LAPACK call per matrix costs more than
    the arithmetic. Squarings give G^p (p = 2^s after s of them, normalised to unit trace as
    they go) and

        rho = x^T G x / x^T x  <=  lambda_1  <=  tr(G^p)^(1/p)  <=  lambda_1 n^(1/p)

    for x the column of G^p with the largest diagonal entry (G^p's top eigenvector dominates
    it); the upper bound falls to lambda_1 as (lambda_2 / lambda_1)^p, so the bracket is tight
    unless the top eigenvalues crowd. The same x gives a second upper bound, by Kato-Temple:
    with the residual r = ||G x - rho x|| / ||x|| and a = (||G||_F^2 - rho^2)^(1/2) >= lambda_2
    (lambda_1^2 + lambda_2^2 <= ||G||_F^2), lambda_1 <= rho + r^2 / (rho - a) when rho > a. It
    needs x only to about the square root of the tolerance, where the trace bound needs it to
    the tolerance itself, so it closes about one squaring earlier; the tighter of the two is
    taken. The brackets are read after each of `STAGES` squarings:
    a matrix whose bracket is within `tol` of rho then stops (the long products of a sweep,
    whose top eigenvalue stands far above the rest, after one), the others square on, to
    `SQUARINGS` (with tol = 0, all of them). Without `squarings` (and tol > 0) the brackets
    of the first read, before any squaring, are returned as they are. Its rounding is about
    n eps relative. G = 0 gives 0, 0.
    """
    m = G.shape[0]
    trace = G.diagonal(dim1=-2, dim2=-1).sum(-1)  # (m,)
    zero = trace <= 0
    trace = torch.where(zero, torch.ones_like(trace), trace)
    rho = torch.zeros(m, dtype=torch.float64, device=G.device)
    upper = torch.zeros_like(rho)
    active = torch.arange(m, device=G.device)

    def settle(low: Tensor, high: Tensor, last: bool) -> Tensor:
        """Record the brackets within tol (all of them when `last`); the others' rows."""
        tight = (high <= low * (1 + tol)) | last
        rho[active[tight]], upper[active[tight]] = low[tight], high[tight]
        return ~tight

    stages: tuple[int, ...] = (SQUARINGS,)
    frob: Tensor | None = None  # ||G||_F^2 of the open matrices, for Kato-Temple
    if tol > 0:  # the first stage, G^2, needs no product: tr(G^2) = ||G||_F^2, and the
        # column of G^2 with the largest diagonal entry is G times G's longest column (its
        # longest row: G is symmetric, and rows are the faster reduction)
        lengths = torch.linalg.vector_norm(G, dim=-1)  # (m, n)
        longest = lengths.argmax(-1).view(-1, 1, 1)
        x = (G @ torch.take_along_dim(G, longest, dim=-1)).to(torch.float64)
        high = torch.linalg.vector_norm(lengths, dim=-1).to(torch.float64)  # ||G||_F
        frob = high.pow(2)
        low, high = _bounds(G, x, high, frob)
        if not squarings:  # the first brackets as they are (G = 0 gives 0, 0 as below)
            nothing = torch.zeros_like(low)
            return torch.where(zero, nothing, low), torch.where(zero, nothing, high)
        rest = settle(low, high, False)
        frob = frob[rest]
        active = active[rest]
        stages = tuple(stage for stage in STAGES if stage > 1)
    Ga, ta = _rows(G, active), _rows(trace, active)  # the matrices still open, kept in step
    A = Ga / ta.view(-1, 1, 1)  # G = s A with tr A = 1
    log_s = torch.log(ta.to(torch.float64))
    done = 0
    for stage in stages:
        if active.numel() == 0:
            break
        spare = torch.empty_like(A)  # squarings in place: two buffers, no fresh allocations
        for _ in range(stage - done):
            torch.bmm(A, A, out=spare)
            A, spare = spare, A
            t = A.diagonal(dim1=-2, dim2=-1).sum(-1).clamp_min(torch.finfo(A.dtype).tiny)
            A.div_(t.view(-1, 1, 1))
            log_s = 2 * log_s + torch.log(t.to(torch.float64))  # G^(2^k) = exp(log_s) A
        done = stage
        column = A.diagonal(dim1=-2, dim2=-1).argmax(-1).view(-1, 1, 1)
        x = torch.take_along_dim(A, column, dim=-1).to(torch.float64)  # (m, n, 1)
        high = torch.exp(log_s / 2**stage)  # tr(G^p)^(1/p) >= lambda_1
        rest = settle(*_bounds(Ga, x, high, frob), stage == stages[-1])
        active, A, Ga, log_s = active[rest], A[rest], Ga[rest], log_s[rest]
        frob = frob[rest] if frob is not None else None
    nothing = torch.zeros_like(rho)
    return torch.where(zero, nothing, rho), torch.where(zero, nothing, upper)


def _bounds(G: Tensor, x: Tensor, high: Tensor, frob: Tensor | None) -> tuple[Tensor, Tensor]:
    """rho = x^T G x / x^T x <= lambda_1 for each (m, n, n) matrix and (m, n, 1) float64
    vector, and the smaller of the upper bound `high` and, given ||G||_F^2 (`frob`), the
    Kato-Temple bound rho + r^2 / (rho - a) (see `bracket_top`), all float64. Its rounding is
    allowed for: a and r^2 are raised by n eps ||G||_F^2 and (n eps ||G||_F)^2."""
    Gx = G.to(torch.float64) @ x
    norm2 = x.pow(2).sum((-2, -1))
    rho = (x * Gx).sum((-2, -1)) / norm2
    if frob is None:
        return rho, high
    slack = G.shape[-1] * torch.finfo(G.dtype).eps * frob
    res2 = (Gx - rho.view(-1, 1, 1) * x).pow(2).sum((-2, -1)) / norm2 + slack * slack / frob
    a = (frob - rho * rho).clamp_min(0).add(slack).sqrt()
    kato_temple = torch.where(rho > a, rho + res2 / (rho - a), torch.inf)
    return rho, torch.minimum(high, kato_temple)


def _certify(theta: Tensor, others: Tensor, residual: Tensor, frob: Tensor, tol: float) -> Tensor:
    """Whether Kato-Temple bounds lambda_1 within tol of theta (all float64, same shape)."""
    gap = theta - (frob - theta - others)  # theta minus an upper bound on lambda_2
    return (gap > 0) & (residual <= tol * theta * gap)


def _ritz_values(Y: Tensor) -> tuple[Tensor, Tensor]:
    """The Ritz values of G = M M^T on span(U), largest first (float64), and the eigenvectors
    W of Y Y^T that make U W the Ritz vectors, in Y's dtype, from Y = U^T M (..., r, C)."""
    ritz, W = eigh_psd((Y @ Y.mT).to(torch.float64))  # ascending
    return ritz.flip(-1), W.flip(-1).to(Y.dtype)


def settled(Y: Tensor, frob: Tensor) -> tuple[Tensor, Tensor]:
    """The first tier of `certified_spectral` alone, from Y = U^T M (..., r, C) and
    ||M||_F^2 (...): the top Ritz value theta_1 on span(U) (float64) and whether it is
    lambda_1 to `TOLERANCE` relative because the Frobenius mass of M outside span(U) is that
    small (lambda_1 <= ||M||_F^2 - theta_2 - ... - theta_r by interlacing). M itself is not
    needed."""
    theta, ok, _ = _first_tier(Y, frob)
    return theta, ok


def _first_tier(Y: Tensor, frob: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """`settled`, and which of the others look out of the Kato-Temple test's reach: their
    Ritz gap theta_1 - theta_2 is under `FAR_GAP` of the mass outside span(U), which
    subspace iteration would have to remove almost entirely before the gap test could pass
    (on the word language model's products of the trace benchmark, 556 of the 558 such
    products went on to the inertia test that way; at half the mass it is 731 of 741, but
    Gaussian float64 products, which rounds certify more cheaply, then lose 4%). They go to
    it at once; the choice costs time, never accuracy. (`bracket_top` is slower than eigvalsh
    for these r x r stacks of a chunk's products: its dozen batched calls cost more than the
    LAPACK loop.)"""
    frob = frob.to(torch.float64)
    ritz = eigvalsh_psd((Y @ Y.mT).to(torch.float64))  # ascending; no vectors needed here
    tol = TOLERANCE if Y.dtype == torch.float64 else TOLERANCE_FLOAT32
    theta = torch.where(frob == 0, 0.0, ritz[..., -1])
    outside = frob - ritz.sum(-1)
    ok = (outside <= tol * theta) | (frob == 0)
    gap = ritz[..., -1] - ritz[..., -2] if ritz.shape[-1] > 1 else ritz[..., -1]
    return theta, ok, ~ok & (gap < FAR_GAP * outside)


def _ritz(M: Tensor, Y: Tensor, U: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Rayleigh-Ritz of G = M M^T on span(U) from Y = U^T M, for matrices M (n, R, C),
    Y (n, r, C) and orthonormal U (n, R, r).

    Returns the top Ritz value theta, the sum of the Ritz values but the top two, the top Ritz
    vector's squared residual ||G x - theta x||^2, and Z = G U W (n, R, r) for the Ritz
    vectors U W, largest first: its first column is G x (the residual's product), and all of
    it is the next round of subspace iteration, so one pass over M serves both.
    """
    ritz, W = _ritz_values(Y)
    theta = ritz[..., 0]
    Z = times_thin(M, Y.mT @ W)  # (n, R, r): M M^T U W
    x = U @ W[..., :1]  # (n, R, 1): the top Ritz vector
    residual = (Z[..., :1] - x * theta[..., None, None].to(M.dtype)).to(torch.float64)
    return theta, ritz[..., 2:].sum(-1), residual.pow(2).sum((-2, -1)), Z


def _rows(x: Tensor, todo: Tensor) -> Tensor:
    """x[todo] for sorted indices `todo`, as a view (no copy) when they are one run."""
    if todo.numel() in (0, x.shape[0]):
        return x if todo.numel() else x[:0]
    first, last = int(todo[0]), int(todo[-1])
    # index_select: three times faster than x[todo] on a strided stack of products
    return x[first : last + 1] if last - first + 1 == todo.numel() else x.index_select(0, todo)


def certified_spectral(
    M: Tensor, Y: Tensor, U: Tensor, frob: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """sigma_1^2 of every matrix of a (N, B, R, C) stack, certified (see the module docstring).

    Tiers, each for what the one before left: the Ritz values on the carried subspace against
    the Frobenius mass outside it (an r x r eigenproblem, no pass over M); Kato-Temple with the
    top Ritz vector's residual (one product M (Y^T W)); up to `ROUNDS` rounds of subspace
    iteration from it (two passes over M each), while some product can still pass the gap test
    (one round first when the first tier settled none of the products); the inertia test on the
    Gram matrix; its exact top eigenvalue. Products whose Ritz gap is far under the mass outside
    span(U) skip the Kato-Temple tiers (`_first_tier`).

    Args:
        M: The matrices (any common scale).
        Y: U^T M for each of them, (N, B, r, C): the first r rows of the engine's products.
        U: Orthonormal columns (B, R, r), one subspace per batch row, shared by the N
            matrices.
        frob: ||M||_F^2 (N, B) when the caller has it.

    Returns:
        lambda_1 = sigma_1^2, float64 (N, B), and which products the first tier settled
        (N, B): where it held, the carried subspace needs no refinement.
    """
    N, B, R, C = M.shape
    r = U.shape[-1]
    if frob is None:  # by rows first: three times faster than one norm over a strided block
        frob = torch.linalg.vector_norm(M, dim=-1).to(torch.float64).pow(2).sum(-1)
    frob = frob.reshape(N * B).to(torch.float64)
    tol = TOLERANCE if M.dtype == torch.float64 else TOLERANCE_FLOAT32
    flat, Yf = M.reshape(N * B, R, C), Y.reshape(N * B, r, C)
    lam, ok, far = _first_tier(Yf, frob)
    first = ok.view(N, B)
    if _too_few_for_rounds(int((~ok).sum()), min(R, C)):
        far = ~ok
    direct = torch.nonzero(far).flatten()
    if direct.numel():
        # from the carried subspace: the rounds the Ritz tiers would have done happen on G
        lam[direct] = _by_inertia(_rows(flat, direct), U[direct % B], tol, ROUNDS + 3)
    todo = torch.nonzero(~ok & ~far).flatten()
    if todo.numel() == 0:
        return lam.view(N, B), first
    A, Yt = _rows(flat, todo), _rows(Yf, todo)
    if bool(first.any()):  # the carried subspace settled some products: test it as it is
        theta, others, residual, Z = _ritz(A, Yt, U[todo % B])
        ok = _certify(theta, others, residual, _rows(frob, todo), tol)
        lam[todo[ok]] = theta[ok]
        todo, Z = todo[~ok], Z[~ok]
    else:  # it settled none: its Ritz vectors are not yet sharp enough, refine them first
        Z = times_thin(A, Yt.mT)  # G U
    for _ in range(ROUNDS):
        if todo.numel() == 0:
            break
        A = _rows(flat, todo)
        V, _ = torch.linalg.qr(Z)  # one round of subspace iteration: span(G U)
        theta, others, residual, Z = _ritz(A, V.mT @ A, V)
        ok = _certify(theta, others, residual, _rows(frob, todo), tol)
        # Where theta holds too little of the Frobenius mass the gap test cannot pass however
        # good theta gets: those go on to the inertia test at once.
        hopeless = 2 * theta + others <= _rows(frob, todo)
        lam[todo[ok]] = theta[ok]
        todo, Z = todo[~ok], Z[~ok]
        if bool(hopeless[~ok].all()):
            break
    if todo.numel():
        lam[todo] = _by_inertia(_rows(flat, todo), torch.linalg.qr(Z)[0], tol)
    return lam.view(N, B), first


def _smaller_gram(M: Tensor) -> Tensor:
    """M M^T or M^T M, whichever is smaller: the same nonzero eigenvalues."""
    return M @ M.mT if M.shape[-1] >= M.shape[-2] else M.mT @ M


def _too_few_for_rounds(m: int, n: int) -> bool:
    """Whether m matrices whose Gram matrices are n x n cost less solved exactly (one LAPACK
    call each) than through the rounds' fixed cost: m n^3 up to `DIRECT_WORK`."""
    return m * n**3 <= DIRECT_WORK


def _by_inertia(M: Tensor, V: Tensor, tol: float, rounds: int = ROUNDS + 1) -> Tensor:
    """lambda_1 of M M^T for the matrices the Ritz tier left, certified by inertia.

    theta, a Ritz value of the Gram matrix G, is a lower bound on lambda_1; if
    theta (1 + tol) I - G has a Cholesky factorisation it is positive definite, so
    lambda_1 < theta (1 + tol). Cholesky is backward stable (its rounding is about n eps ||G||,
    inside `tol` for both dtypes). Up to `rounds` rounds of subspace iteration on G
    (one O(n^2 r) product each, cheap beside a decomposition) sharpen theta between the
    tests; what is left gets the exact largest eigenvalue (`torch.linalg.eigvalsh`). Float64
    (M, V in any dtype)."""
    G = _smaller_gram(M)  # (m, n, n), in M's dtype
    n = G.shape[-1]
    if _too_few_for_rounds(G.shape[0], n):
        return eigvalsh_psd(G)[..., -1].clamp(min=0).to(torch.float64)
    if V.shape[-2] != n:  # the Ritz vectors live on the other side: start from G's columns
        V = torch.linalg.qr(G[..., : min(V.shape[-1], n)])[0]
    lam = torch.empty(G.shape[0], dtype=torch.float64, device=G.device)
    todo = torch.arange(G.shape[0], device=G.device)
    for done in range(rounds + 1):
        A = _rows(G, todo)
        AV = times_thin(A, V)  # the one product with G a round: Ritz matrix, residual, next V
        ritz, W = eigh_psd(V.mT @ AV)
        theta, x = ritz[..., -1], V @ W[..., -1:]  # top Ritz pair; theta is a lower bound
        residual = torch.linalg.vector_norm(
            AV @ W[..., -1:] - theta.view(-1, 1, 1) * x, dim=(-2, -1)
        )
        # Only a Ritz value close to an eigenvalue can pass the test: try those.
        near = torch.nonzero(residual.pow(2) <= tol * theta.pow(2)).flatten()
        keep = torch.ones_like(theta, dtype=torch.bool)
        # Subspace iteration shrinks the residual by about theta_r / theta_1 a round: where the
        # rounds left cannot bring it near enough, the exact eigenvalue is cheaper than trying.
        rate = (ritz[..., 0] / theta.clamp_min(torch.finfo(theta.dtype).tiny)).clamp(max=1)
        left = rounds - done
        hopeless = residual * rate.pow(left) > 10 * math.sqrt(tol) * theta
        if near.numel():
            shifted = A.neg() if near.numel() == A.shape[0] else A[near].neg_()
            shifted.diagonal(dim1=-2, dim2=-1).add_((theta[near] * (1 + tol)).unsqueeze(-1))
            passed = near[torch.linalg.cholesky_ex(shifted)[1] == 0]
            lam[todo[passed]] = theta[passed].to(torch.float64)
            keep[passed] = False
            todo, AV = todo[keep], AV[keep]
        if todo.numel() == 0:
            return lam
        if bool(hopeless[keep].all()):
            break
        V = torch.linalg.qr(AV)[0]  # one round of subspace iteration on G
    lam[todo] = eigvalsh_psd(_rows(G, todo))[..., -1].clamp(min=0).to(torch.float64)
    return lam


def top_subspace(M: Tensor, U: Tensor, rounds: int = 1) -> Tensor:
    """The top-r left singular subspace of each matrix of M (B, R, C), refined by `rounds` of
    subspace iteration from U (B, R, r), Ritz vectors largest first: the start for the next
    products. Rows with M = 0 keep U."""
    B = M.shape[0]
    scale = M.abs().amax(dim=(-2, -1), keepdim=True)
    A = M / scale.clamp_min(torch.finfo(M.dtype).tiny)
    V = U
    for _ in range(rounds):
        V, _ = torch.linalg.qr(times_thin(A, (V.mT @ A).mT))  # (B, R, r)
    _, W = eigh_psd(V.mT @ times_thin(A, (V.mT @ A).mT))  # Rayleigh-Ritz, ascending
    return torch.where(scale.view(B, 1, 1) > 0, V @ W.flip(-1), U)


def matrix_values(M: Tensor, metric: str) -> Tensor:
    """metric of every matrix of a (..., R, C) stack, exactly, float64 (...)."""
    if metric == "maxabs":
        return M.abs().amax(dim=(-2, -1)).to(torch.float64)
    if metric == "frobenius":
        return torch.linalg.matrix_norm(M, ord="fro").to(torch.float64)
    return gram_spectral(M).to(torch.float64)


def matrix_metric(matrices: Tensor, metric: str) -> Tensor:
    """metric of each matrix of a (..., R, C) stack, float64 of shape (...), any magnitude.

    Each matrix is divided by its largest entry first, so the squares inside the spectral and
    Frobenius norms neither under- nor overflow.
    """
    check_metric(metric)
    peak = matrices.abs().amax(dim=(-2, -1), keepdim=True)  # (..., 1, 1)
    scaled = matrices / torch.where(peak > 0, peak, 1)
    lead = scaled.shape[:-2]
    values = matrix_values(scaled, metric)
    return values.reshape(lead) * peak.reshape(lead).to(torch.float64)
