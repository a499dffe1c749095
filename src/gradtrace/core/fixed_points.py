"""Fixed points of an autonomous step h -> F(h), with their eigenvalues and type.

F maps a batch of states (B, S) to (B, S), row by row: any callable differentiable by torch,
such as an RNN cell with its input held fixed. S is the state size.

Method: from many starts at once, damped Newton steps on G(h) = F(h) - h,

    h <- h - s (J(h) - I)^+ G(h),     J(h) = dF/dh  (autograd, one backward pass per row of J),

with s in {1, 1/2, 1/4, 1/8} the step that lowers ||G|| most (none taken if none lowers it).
Starts where Newton fails first minimise the speed q(h) = 1/2 ||F(h) - h||^2 with Adam (Sussillo
and Barak 2013, "Opening the black box: low-dimensional dynamics in high-dimensional recurrent
neural networks"), then get Newton again. States with ||G(h)|| <= tol are fixed points; those
closer than `merge_tol`, or joined by a segment on which ||G|| stays below tol, are merged.
The type comes from the eigenvalues lambda_i of J:

    stable     all |lambda_i| < 1     (an attractor: nearby states converge to it)
    unstable   all |lambda_i| > 1     (a repeller)
    saddle     some above 1 and some below
    marginal   some |lambda_i| within 1e-9 of 1 (the linearisation does not decide)

Precision: in float64 a nondegenerate fixed point is found to a residual near 1e-15. Where
J - I is singular Newton slows down and the point may miss `tol`. Local minima of q with q > 0
("slow points") are not fixed points and are dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from gradtrace.errors import check

Step = Callable[[Tensor], Tensor]
JacobianFn = Callable[[Tensor], Tensor]
_UNIT_TOL = 1e-9
_SEGMENT = (0.25, 0.5, 0.75)  # points of a segment probed before two fixed points merge
_DAMPING = (1.0, 0.5, 0.25, 0.125)  # fractions of the Newton step tried in each iteration


@dataclass(frozen=True)
class FixedPoint:
    """One fixed point h* = F(h*).

    Attributes:
        state: (S,) the point.
        residual: ||F(h*) - h*||.
        eigenvalues: (S,) complex eigenvalues of dF/dh at h*, largest modulus first.
        kind: "stable", "unstable", "saddle" or "marginal".
    """

    state: Tensor
    residual: float
    eigenvalues: Tensor
    kind: str

    def to_dict(self) -> dict[str, object]:
        return {
            "state": self.state.tolist(),
            "residual": self.residual,
            "eigenvalues_abs": self.eigenvalues.abs().tolist(),
            "eigenvalues_real": self.eigenvalues.real.tolist(),
            "eigenvalues_imag": self.eigenvalues.imag.tolist(),
            "kind": self.kind,
        }


@dataclass(frozen=True)
class FixedPointSearch:
    """The distinct fixed points found, sorted by state, and how many starts converged."""

    points: tuple[FixedPoint, ...]
    starts: int
    converged: int

    @property
    def states(self) -> Tensor:
        """(K, S) the fixed points, K = len(points); K may be 0."""
        if not self.points:
            return torch.empty(0, 0, dtype=torch.float64)
        return torch.stack([p.state for p in self.points])

    def of_kind(self, kind: str) -> tuple[FixedPoint, ...]:
        return tuple(p for p in self.points if p.kind == kind)

    def to_dict(self) -> dict[str, object]:
        return {
            "starts": self.starts,
            "converged": self.converged,
            "points": [p.to_dict() for p in self.points],
        }


def classify(eigenvalues: Tensor) -> str:
    """The type of a fixed point from the eigenvalues of its Jacobian (see module docstring)."""
    size = eigenvalues.abs()
    if bool(((size - 1).abs() < _UNIT_TOL).any()):
        return "marginal"
    if bool((size < 1).all()):
        return "stable"
    return "unstable" if bool((size > 1).all()) else "saddle"


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


def _residual(step: Step, h: Tensor) -> Tensor:
    with torch.no_grad():
        out = step(h)
    check(
        out.shape == h.shape,
        f"the step must map states of shape {tuple(h.shape)} to the same shape, "
        f"got {tuple(out.shape)}",
    )
    return torch.linalg.vector_norm(out - h, dim=1)  # (B,)


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


def _polish(step: Step, h: Tensor, steps: int) -> Tensor:
    eye = torch.eye(h.shape[1], dtype=h.dtype)
    residual = _residual(step, h)
    for _ in range(steps):
        with torch.no_grad():
            G = step(h) - h  # (B, S)
        J = batched_jacobian(step, h)  # (B, S, S)
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
    kept: list[Tensor] = []
    for i in torch.argsort(residual).tolist():
        if kept:
            others = torch.stack(kept)  # (K, S)
            near = torch.linalg.vector_norm(others - h[i], dim=1) <= merge_tol
            flat = torch.stack(
                [_residual(step, others + t * (h[i] - others)) <= tol for t in _SEGMENT]
            ).all(dim=0)
            if bool((near | flat).any()):
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
) -> FixedPointSearch:
    """Find the fixed points of `step` reachable from `starts` and classify them.

    Args:
        step: F, mapping (B, S) to (B, S) row by row.
        starts: (N, S) initial states, floating point (float64 recommended); see `box_starts`.
        adam_steps: Adam steps on q(h) for the starts where Newton alone fails (0: none).
        lr: Adam's learning rate.
        newton_steps: most Newton steps on F(h) - h per round.
        tol: largest ||F(h) - h|| accepted as a fixed point.
        merge_tol: fixed points closer than this (Euclidean) count as one.
        jacobian: optional dF/dh for one state, (S,) -> (S, S); autograd when None.

    Returns:
        A `FixedPointSearch` with the distinct fixed points sorted by state.

    Raises:
        GradtraceError: if `starts` is not a non-empty (N, S) floating tensor or `step` changes
            the shape.

    Example:
        >>> W = torch.tensor([[2.0]], dtype=torch.float64)
        >>> found = find_fixed_points(lambda h: torch.tanh(h @ W.T), box_starts(64, 1))
        >>> [p.kind for p in found.points]
        ['stable', 'unstable', 'stable']
    """
    check(
        isinstance(starts, Tensor) and starts.ndim == 2 and starts.numel() > 0,
        f"`starts` must be a non-empty (N, S) tensor, got {getattr(starts, 'shape', starts)}",
    )
    check(starts.is_floating_point(), f"`starts` must be floating point, got {starts.dtype}")
    check(tol > 0 and merge_tol > 0, f"`tol` and `merge_tol` must be > 0, got {tol}, {merge_tol}")
    _residual(step, starts)
    h = _polish(step, starts, newton_steps)
    hard = _residual(step, h) > tol  # also True where the residual is NaN
    if adam_steps > 0 and bool(hard.any()):
        h[hard] = _polish(step, _descend(step, starts[hard], adam_steps, lr), newton_steps)
    residual = _residual(step, h)
    good = residual <= tol  # NaN residuals compare False
    states = _merge(step, h[good], residual[good], tol, merge_tol)
    points = []
    for state in states:
        J = jacobian(state) if jacobian else batched_jacobian(step, state.unsqueeze(0))[0]
        eig = torch.linalg.eigvals(J.detach())
        eig = eig[torch.argsort(eig.abs(), descending=True)]
        points.append(FixedPoint(state, float(_residual(step, state[None])[0]), eig, classify(eig)))
    return FixedPointSearch(tuple(points), starts.shape[0], int(good.sum()))
