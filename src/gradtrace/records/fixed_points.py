"""Fixed points of a map of the state, with their eigenvalues and type, and the basins of a
small RNN around them.

One vocabulary for every map gradtrace studies (a one-dimensional map, an RNN with its input
held fixed): the state is iterated in discrete time, so a fixed point is a

    sink       every |lambda_i| < 1: nearby states are drawn in (an attractor)
    source     every |lambda_i| > 1: nearby states are pushed away (a repeller)
    saddle     some |lambda_i| above 1 and some below
    marginal   some |lambda_i| = 1 within the precision of the point (the linearisation does
               not decide; a tangency such as x^2 + 1/4 at x = 1/2)

where lambda_i are the eigenvalues of the map's Jacobian there (for a 1-D map or cycle, its
multiplier).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gradtrace.records.base import Record

KINDS = ("sink", "source", "saddle", "marginal")


@dataclass(frozen=True, eq=False, repr=False)
class FixedPoint(Record):
    """One fixed point s* = F(s*).

    Attributes:
        state: (S,) the point.
        residual: ||F(s*) - s*||.
        eigenvalues: (S,) complex eigenvalues of dF/ds at s*, largest modulus first.
        kind: One of `KINDS`.
    """

    state: Tensor
    residual: float
    eigenvalues: Tensor
    kind: str


@dataclass(frozen=True, eq=False, repr=False)
class FixedPoints(Record):
    """The distinct fixed points found, sorted by state, and how many starts converged."""

    KIND = "fixed_points"

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
        """The points of one kind ("sink", "source", "saddle" or "marginal")."""
        return tuple(p for p in self.points if p.kind == kind)

    def __repr__(self) -> str:
        kinds = ", ".join(p.kind for p in self.points) or "none"
        return f"FixedPoints({len(self.points)} of {self.starts} starts: {kinds})"


@dataclass(frozen=True, eq=False, repr=False)
class RNNPortrait(Record):
    """Fixed points, basins of attraction and phase portrait of a 1- or 2-unit tanh RNN.

    Attributes:
        W_hh: (S, S) the recurrent weights.
        b: (S,) the bias (with the constant input folded in).
        axis: (N,) grid coordinates, the same on every state axis.
        labels: basin of each grid state, an index into `attractors` or -1 (no attractor
            reached); (N,) for S = 1, (N, N) for S = 2 with row i at h_2 = axis[i], column j
            at h_1 = axis[j].
        attractors: (K, S) the sinks, in the order of `fixed_points`.
        field: F(h) - h on the grid, (S, N) or (S, N, N) laid out like `labels`.
        trajectories: (M, T + 1, S) a few orbits h_0..h_T.
        fixed_points: every fixed point found, with eigenvalues and type.
    """

    KIND = "rnn_portrait"

    W_hh: Tensor
    b: Tensor
    axis: Tensor
    labels: Tensor
    attractors: Tensor
    field: Tensor
    trajectories: Tensor
    fixed_points: FixedPoints

    @property
    def state_size(self) -> int:
        """S."""
        return int(self.field.shape[0])
