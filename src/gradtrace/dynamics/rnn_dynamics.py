"""Small tanh RNNs with a constant input, read as dynamical systems.

With the input held at x the recurrence is an autonomous map of the state,

    h_t = F(h_{t-1}) = tanh(W_hh h_{t-1} + W_hx x + b),     dF/dh = diag(1 - h_t^2) W_hh,

so the network has fixed points, each a sink or not, and every initial state flows to an
attractor. Inside a basin of attraction the final state hardly depends on the initial one (the
gradient vanishes); across a basin boundary it jumps (the gradient explodes). This module
computes, for S = 1 or 2 units, the fixed points and their types, a basin map over a grid of
initial states, and the phase portrait: the velocity field F(h) - h and a few trajectories.

Shapes: S state (= H hidden units), N grid points per axis, M trajectories, T steps.
Precision: float64; a grid state is labelled with an attractor when it ends within `tol` of it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from gradtrace import budgets
from gradtrace.cells.rnn import RNNWeights, rnn_jacobian, rnn_step
from gradtrace.core.fixed_points import box_starts, find_fixed_points
from gradtrace.errors import check
from gradtrace.records.fixed_points import FixedPoints, RNNPortrait

DTYPE = torch.float64


def small_rnn(W: Sequence[Sequence[float]] | Tensor, b: Sequence[float] | Tensor) -> RNNWeights:
    """A tanh RNN with recurrent weights W (S, S) and bias b (S,), with one zero input weight.

    A constant input x only adds W_hx x to the bias, so it can be folded into `b`.

    Example:
        >>> weights = small_rnn([[2.0]], [0.0])  # h -> tanh(2 h): fixed points 0, +-0.9575
    """
    W_hh = torch.as_tensor(W, dtype=DTYPE)
    bias = torch.as_tensor(b, dtype=DTYPE)
    check(W_hh.ndim == 2, f"`W` must be an (S, S) matrix, got shape {tuple(W_hh.shape)}")
    return RNNWeights(W_hh, torch.zeros(W_hh.shape[0], 1, dtype=DTYPE), bias, "tanh")


def _input(weights: RNNWeights, x: Tensor | None) -> Tensor:
    if x is None:
        return torch.zeros(1, weights.input_size, dtype=weights.W_hh.dtype)
    check(
        x.shape == (weights.input_size,),
        f"`x` must have shape ({weights.input_size},), got {tuple(x.shape)}",
    )
    return x.unsqueeze(0)  # (1, I)


def autonomous_step(weights: RNNWeights, x: Tensor | None = None) -> Callable[[Tensor], Tensor]:
    """F(h) = rnn_step(weights, x, h), input held at x (zeros when None): (B, S) -> (B, S)."""
    x1 = _input(weights, x)
    return lambda h: rnn_step(weights, x1.expand(h.shape[0], -1), h)


def rnn_fixed_points(
    weights: RNNWeights, x: Tensor | None = None, *, starts: int = 128, seed: int = 0
) -> FixedPoints:
    """Fixed points of the RNN with input x, searched from `starts` states in [-1, 1]^S.

    tanh maps every state into (-1, 1)^S, so every fixed point lies in that box. The eigenvalues
    use the analytic Jacobian diag(1 - h^2) W_hh.
    """
    x1 = _input(weights, x)
    return find_fixed_points(
        autonomous_step(weights, x),
        box_starts(starts, weights.hidden_size, seed=seed).to(weights.W_hh.dtype),
        jacobian=lambda h: rnn_jacobian(weights, x1.expand(h.shape[0], -1), h),
    )


def _grid_states(axis: Tensor, size: int) -> Tensor:
    if size == 1:
        return axis.unsqueeze(1)  # (N, 1)
    h2, h1 = torch.meshgrid(axis, axis, indexing="ij")  # (N, N): row i is h_2 = axis[i]
    return torch.stack([h1.flatten(), h2.flatten()], dim=1)  # (N*N, 2)


def _iterate(step: Callable[[Tensor], Tensor], h: Tensor, steps: int) -> Tensor:
    states = [h]
    for _ in range(steps):
        states.append(step(states[-1]))
    return torch.stack(states, dim=1)  # (B, steps + 1, S)


def rnn_portrait(
    weights: RNNWeights,
    x: Tensor | None = None,
    *,
    lo: float = -1.0,
    hi: float = 1.0,
    points: int = 201,
    steps: int = 200,
    trajectories: int = 8,
    tol: float = 1e-3,
) -> RNNPortrait:
    """Basin map and phase portrait of a tanh RNN with S = 1 or 2 units and input x.

    Args:
        weights: the RNN; S = weights.hidden_size must be 1 or 2.
        x: constant input (I,), zeros when None.
        lo, hi: the grid spans [lo, hi] on each state axis.
        points: N grid points per axis.
        steps: iterations before a grid state is matched to an attractor.
        trajectories: M orbits of steps // 4 steps from random starts in the grid box (seed 0).
        tol: largest distance to a sink that counts as having reached it.

    Raises:
        GradtraceError: if S is not 1 or 2, lo >= hi or the grid has fewer than 2 points.
    """
    S = weights.hidden_size
    check(S in (1, 2), f"`weights` must have 1 or 2 hidden units for a portrait, got {S}")
    check(lo < hi, f"the grid range must have lo < hi, got lo={lo:g}, hi={hi:g}")
    check(points >= 2, f"`points` must be at least 2, got {points}")
    check(steps >= 4, f"`steps` must be at least 4, got {steps}")
    check(trajectories >= 1, f"`trajectories` must be at least 1, got {trajectories}")
    work = budgets.Work(memory=200.0 * points**S, flops=20.0 * points**S * steps, steps=3.0 * steps)
    budgets.require(work, "`points` or `steps`")
    step = autonomous_step(weights, x)
    found = rnn_fixed_points(weights, x)
    stable = [p.state for p in found.of_kind("sink")]
    attractors = torch.stack(stable) if stable else torch.empty(0, S, dtype=DTYPE)  # (K, S)
    # lo + (hi - lo) k / (N - 1) rather than linspace: a symmetric grid then holds 0 exactly.
    axis = lo + (hi - lo) * torch.arange(points, dtype=DTYPE) / (points - 1)
    grid = _grid_states(axis, S)  # (G, S)
    shape = (points,) * S
    with torch.no_grad():
        final = grid
        for _ in range(steps):
            final = step(final)  # (G, S)
        field = (step(grid) - grid).T.reshape(S, *shape)  # (S, N) or (S, N, N)
        orbits = _iterate(step, box_starts(trajectories, S, lo, hi), steps // 4)
    labels = torch.full((grid.shape[0],), -1, dtype=torch.int64)
    if attractors.shape[0]:
        distance = torch.cdist(final, attractors)  # (G, K)
        nearest = distance.min(dim=1)
        labels = torch.where(nearest.values <= tol, nearest.indices, labels)
    return RNNPortrait(
        weights.W_hh, weights.b, axis, labels.reshape(shape), attractors, field, orbits, found
    )
