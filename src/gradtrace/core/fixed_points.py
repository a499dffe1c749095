"""The one fixed-point finder: fixed points of any map of the state, with eigenvalues and type.

F maps a batch of states (B, S) to (B, S), row by row: any callable differentiable by torch,
such as an RNN cell with its input held fixed, or the p-fold composition f^p of a 1-D map
(whose fixed points are the points of its p-cycles). The iterated maps of the dynamics lab, the
RNN basins and the layers of traced models all use this finder.

Method, on G(s) = F(s) - s from many starts at once:

1. For S = 1, the sign changes of G between neighbouring starts (sorted) bracket simple roots,
   and bisection refines each to adjacent floats: every simple root on a fine enough grid.
2. Damped Newton steps s <- s - a (J(s) - I)^+ G(s), J = dF/ds (autograd, one backward pass
   per row of J, unless a batched `jacobian` is given), with a in {1, 1/2, 1/4, 1/8} the step
   that lowers ||G|| most. Newton also finds roots where G touches zero without changing sign
   (a tangency such as x^2 + 1/4 = x at x = 1/2), which no bracket sees.
3. Starts where Newton fails first minimise the speed q(s) = 1/2 ||F(s) - s||^2 with Adam
   (Sussillo and Barak 2013, "Opening the black box: low-dimensional dynamics in
   high-dimensional recurrent neural networks"), then get Newton again.

States with ||G(s)|| <= tol are fixed points; those closer than `merge_tol`, or joined by a
segment on which ||G|| stays below tol, are one. The type comes from the eigenvalues lambda_i
of J at the point (see `gradtrace.records.fixed_points` for the vocabulary: sink, source,
saddle, marginal). A point found to residual r is only known to within about sqrt(r) where J - I
is singular, so an eigenvalue within 10 sqrt(r) (and at least 1e-9) of the unit circle counts
as marginal, with r at least the rounding of G itself (eps (1 + |s|)).

Precision: in float64 a nondegenerate fixed point is found to a residual near 1e-15; at a
tangency Newton converges linearly and stops at the tolerance. Local minima of q with q > 0
("slow points") are not fixed points and are dropped.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from gradtrace.errors import check
from gradtrace.records.fixed_points import FixedPoint, FixedPoints

Step = Callable[[Tensor], Tensor]
JacobianFn = Callable[[Tensor], Tensor]
_UNIT_TOL = 1e-9
_SEGMENT = (0.25, 0.5, 0.75)  # points of a segment probed before two fixed points merge
_DAMPING = (1.0, 0.5, 0.25, 0.125)  # fractions of the Newton step tried in each iteration
_BISECTIONS = 64  # halving a bracket 64 times reaches adjacent float64 numbers


def classify(eigenvalues: Tensor, residual: float = 0.0) -> str:
    """ "sink", "source", "saddle" or "marginal" from the eigenvalues of the Jacobian there."""
    size = eigenvalues.abs()
    tol = max(_UNIT_TOL, 10 * math.sqrt(max(residual, 0.0)))
    if bool(((size - 1).abs() <= tol).any()):
        return "marginal"
    if bool((size < 1).all()):
        return "sink"
    return "source" if bool((size > 1).all()) else "saddle"


def box_starts(n: int, size: int, low: float = -1.0, high: float = 1.0, *, seed: int = 0) -> Tensor:
    """n starts drawn uniformly from the box [low, high]^size, float64, shape (n, size)."""
    check(n >= 1 and size >= 1, f"`n` and `size` must be at least 1, got n={n}, size={size}")
    check(low < high, f"the start box must have low < high, got low={low:g}, high={high:g}")
    generator = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand(n, size, generator=generator, dtype=torch.float64)


def batched_jacobian(step: Step, h: Tensor) -> Tensor:
    """dF/dh at each row of h (B, S) by autograd, shape (B, S, S); F must act row by row."""
    with torch.enable_grad():
        leaf = h.detach().clone().requires_grad_(True)
        out = step(leaf)  # (B, S)
        rows = [
            torch.autograd.grad(out[:, i].sum(), leaf, retain_graph=True)[0]
            for i in range(out.shape[1])
        ]
    return torch.stack(rows, dim=1)  # (B, S, S): [b, i, j] = dF_i/dh_j


def _gap(step: Step, h: Tensor) -> Tensor:
    """G(h) = F(h) - h, checked to keep the shape, without gradients, (B, S)."""
    with torch.no_grad():
        out = step(h)
    check(
        out.shape == h.shape,
        f"the step must map states of shape {tuple(h.shape)} to the same shape, "
        f"got {tuple(out.shape)}",
    )
    return out - h


def _residual(step: Step, h: Tensor) -> Tensor:
    return torch.linalg.vector_norm(_gap(step, h), dim=1)  # (B,)


def _brackets(step: Step, starts: Tensor) -> Tensor:
    """S = 1: the roots of G bracketed by sign changes between sorted starts, (R, 1)."""
    x = torch.sort(starts[:, 0]).values
    g = _gap(step, x.unsqueeze(1))[:, 0]
    exact = x[g == 0]
    i = torch.nonzero(torch.sign(g[:-1]) * torch.sign(g[1:]) < 0).flatten()
    a, b, ga = x[i], x[i + 1], g[i]
    for _ in range(_BISECTIONS):
        mid = (a + b) / 2
        same = torch.sign(_gap(step, mid.unsqueeze(1))[:, 0]) == torch.sign(ga)
        a, b = torch.where(same, mid, a), torch.where(same, b, mid)
    return torch.cat([exact, (a + b) / 2]).unsqueeze(1)


def _descend(step: Step, h: Tensor, steps: int, lr: float) -> Tensor:
    # Adam (Kingma and Ba 2015) written out: torch.optim costs a second to import.
    beta1, beta2, eps = 0.9, 0.999, 1e-12
    h = h.detach().clone()
    m, v = torch.zeros_like(h), torch.zeros_like(h)
    for t in range(1, steps + 1):
        with torch.enable_grad():
            leaf = h.requires_grad_(True)
            speed = 0.5 * (step(leaf) - leaf).pow(2).sum()
            # autograd.grad, not backward: the step's own parameters must not collect grads.
            (grad,) = torch.autograd.grad(speed, leaf)
        h = h.detach()
        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * grad**2
        h = h - lr * (m / (1 - beta1**t)) / ((v / (1 - beta2**t)).sqrt() + eps)
    return h


def _newton_direction(A: Tensor, G: Tensor) -> Tensor:
    """A^-1 G row by row for A (B, S, S) and G (B, S), the pseudo-inverse where A is singular."""
    delta, info = torch.linalg.solve_ex(A, G.unsqueeze(-1))  # (B, S, 1)
    singular = (info != 0) | ~torch.isfinite(delta).all(dim=(1, 2))
    if bool(singular.any()):
        delta[singular] = torch.linalg.pinv(A[singular]) @ G[singular].unsqueeze(-1)
    return delta.squeeze(-1)


def _polish(step: Step, jacobian: JacobianFn, h: Tensor, steps: int) -> Tensor:
    eye = torch.eye(h.shape[1], dtype=h.dtype)
    residual = _residual(step, h)
    for _ in range(steps):
        G = _gap(step, h)  # (B, S)
        with torch.no_grad():
            J = jacobian(h)  # (B, S, S)
        delta = _newton_direction(J - eye, G)  # (B, S)
        base, improved = h, torch.zeros_like(residual, dtype=torch.bool)
        for damping in _DAMPING:  # per row, the damped step with the lowest ||G|| wins
            candidate = base - damping * delta
            new_residual = _residual(step, candidate)
            better = new_residual < residual  # also False where the candidate is NaN
            h = torch.where(better.unsqueeze(1), candidate, h)
            residual = torch.where(better, new_residual, residual)
            improved |= better
        if not bool(improved.any()):  # every row converged or stuck: later steps repeat this
            break
    return h


def _merge(step: Step, h: Tensor, residual: Tensor, tol: float, merge_tol: float) -> list[Tensor]:
    """Distinct points, best residual first: two are one if closer than merge_tol or if the
    segment between them stays within tol of fixed (a degenerate stretch, as tanh(h) = h)."""
    # Most converged starts sit on a handful of points: one per cell of a fine grid first.
    order = torch.argsort(residual)
    cells = torch.round(h[order] / (merge_tol / 4))
    _, first = torch.unique(cells, dim=0, return_inverse=True)
    seen: set[int] = set()
    kept: list[Tensor] = []
    for i, cell in zip(order.tolist(), first.tolist(), strict=True):
        if cell in seen:
            continue
        seen.add(cell)
        if kept:
            others = torch.stack(kept)  # (K, S)
            near = torch.linalg.vector_norm(others - h[i], dim=1) <= merge_tol
            if bool(near.any()):
                continue
            flat = torch.stack(
                [_residual(step, others + t * (h[i] - others)) <= tol for t in _SEGMENT]
            ).all(dim=0)
            if bool(flat.any()):
                continue
        kept.append(h[i])
    return sorted(kept, key=lambda state: state.tolist())


def find_fixed_points(
    step: Step,
    starts: Tensor,
    *,
    adam_steps: int = 200,
    lr: float = 1e-2,
    newton_steps: int = 20,
    tol: float = 1e-10,
    merge_tol: float = 1e-6,
    jacobian: JacobianFn | None = None,
) -> FixedPoints:
    """Find the fixed points of `step` reachable from `starts` and classify them.

    Args:
        step: F, mapping (B, S) to (B, S) row by row.
        starts: (N, S) initial states, floating point (float64 recommended); see `box_starts`.
            For S = 1 a sorted grid also brackets every simple root between its points.
        adam_steps: Adam steps on q(s) for the starts where Newton alone fails (0: none).
        lr: Adam's learning rate.
        newton_steps: most Newton steps on F(s) - s per round.
        tol: largest ||F(s) - s|| accepted as a fixed point.
        merge_tol: fixed points closer than this (Euclidean) count as one.
        jacobian: optional dF/ds, batched: (B, S) -> (B, S, S); autograd when None.

    Returns:
        A `FixedPoints` record with the distinct fixed points sorted by state.

    Raises:
        GradtraceError: if `starts` is not a non-empty (N, S) floating tensor or `step` changes
            the shape.

    Example:
        >>> W = torch.tensor([[2.0]], dtype=torch.float64)
        >>> found = find_fixed_points(lambda h: torch.tanh(h @ W.T), box_starts(64, 1))
        >>> [p.kind for p in found.points]
        ['sink', 'source', 'sink']
    """
    check(
        isinstance(starts, Tensor) and starts.ndim == 2 and starts.numel() > 0,
        f"`starts` must be a non-empty (N, S) tensor, got {getattr(starts, 'shape', starts)}",
    )
    check(starts.is_floating_point(), f"`starts` must be floating point, got {starts.dtype}")
    check(tol > 0 and merge_tol > 0, f"`tol` and `merge_tol` must be > 0, got {tol}, {merge_tol}")
    _gap(step, starts)
    jac: JacobianFn = jacobian or (lambda s: batched_jacobian(step, s))
    h = _polish(step, jac, starts, newton_steps)
    hard = _residual(step, h) > tol  # also True where the residual is NaN
    if adam_steps > 0 and bool(hard.any()):
        h[hard] = _polish(step, jac, _descend(step, starts[hard], adam_steps, lr), newton_steps)
    if starts.shape[1] == 1:
        h = torch.cat([h, _brackets(step, starts)])
    residual = _residual(step, h)
    good = residual <= tol  # NaN residuals compare False
    states = _merge(step, h[good], residual[good], tol, merge_tol)
    points = []
    for state in states:
        with torch.no_grad():
            J = jac(state.unsqueeze(0))[0]  # (S, S)
        eig = torch.linalg.eigvals(J.detach())
        eig = eig[torch.argsort(eig.abs(), descending=True)]
        r = float(_residual(step, state[None])[0])
        # G is only computed to rounding: below that, the residual says nothing.
        floor = float(torch.finfo(state.dtype).eps) * (1 + float(state.abs().max()))
        points.append(FixedPoint(state, r, eig, classify(eig, max(r, floor))))
    converged = int(good[: starts.shape[0]].sum())
    return FixedPoints(tuple(points), starts.shape[0], converged)
