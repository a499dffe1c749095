"""Replay a recurrence and evaluate its step Jacobians on the states it went through.

For s_t = step(x_t, s_{t-1}) the chain rule gives ds_T/ds_k = J_T J_{T-1} ... J_{k+1} with
J_t = ds_t/ds_{t-1} evaluated at (x_t, s_{t-1}). A `Replay` holds what every step read and
started from; its step Jacobians come from the cell's analytic formula on demand, a chunk of
steps per batched call, so that a caller can stream them instead of holding all T of them: a
replay is a step source of `gradtrace.core.factors` (`factors(start, stop)`), and the engine
sweeps it directly. The
products are left to the core's engine. This is the one replay: `gradtrace curve`, `analyse`
and every traced layer of `gradtrace.trace` go through it.

Two ways to get one:

    replay(cell, weights, x, s0)           run the recurrence from s_0 (trajectory mode); with
                                           gradients on, the states stay in the autograd graph
    checkpoint(cell, weights, x, states)   the states are given, row t-1 the state step t
                                           starts from (the lectures' checkpoint mode)

Shapes: T time, B batch, I input, S state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from gradtrace.cells._checks import check_finite, check_tensor
from gradtrace.core.factors import Factors, StatesShape
from gradtrace.errors import check

if TYPE_CHECKING:
    from gradtrace.cells import Cell

CHUNK_STEPS = 64  # steps whose Jacobians are evaluated in one batched call by default


@dataclass(frozen=True, eq=False)
class Replay(StatesShape):
    """A recurrence replayed (see the module docstring).

    Attributes:
        cell: The cell.
        weights: Its weights.
        inputs: x_1..x_T, detached, shape (T, B, I).
        starts: s_0..s_{T-1}, the state each step started from, detached, shape (T, B, S).
        final: s_T, detached, shape (B, S); None for a checkpoint.
        graph: s_0..s_T as the autograd graph holds them (a replay run with gradients on), so
            that a loss can be differentiated by each; None otherwise.
    """

    cell: Cell
    weights: Any
    inputs: Tensor
    starts: Tensor
    final: Tensor | None = None
    graph: tuple[Tensor, ...] | None = None

    def widened(self) -> Replay:
        """This replay in float32 when it is in float16 or bfloat16, else itself: products of
        step Jacobians rounded to 3 significant digits (bfloat16) a step say nothing after a
        few steps, and LAPACK takes neither. The states are the model's own, only held
        wider; the graph (for a loss's gradient) stays as it was."""
        if self.starts.dtype not in (torch.float16, torch.bfloat16):
            return self
        wide = torch.float32
        return dataclasses.replace(
            self,
            weights=self.weights.to(dtype=wide),
            inputs=self.inputs.to(wide),
            starts=self.starts.to(wide),
            final=None if self.final is None else self.final.to(wide),
        )

    def factors(self, start: int, stop: int) -> Factors:
        """The step Jacobians J_{start+1}..J_{stop} as `gradtrace.core.factors.Factors`: how
        the engine streams a replay, a chunk at a time, never all T at once."""
        stop = self._range(start, stop)
        n, B, S = stop - start, self.batch, self.size
        x = self.inputs[start:stop].reshape(n * B, -1)
        s = self.starts[start:stop].reshape(n * B, S)
        return self.cell.factors(self.weights, x, s, n)

    @property
    def states(self) -> Tensor:
        """s_0..s_T, shape (T + 1, B, S) (only s_0..s_{T-1} for a checkpoint)."""
        if self.final is None:
            return self.starts
        return torch.cat([self.starts, self.final.unsqueeze(0)])

    def jacobians(self, start: int = 0, stop: int | None = None) -> Tensor:
        """J_{start+1}..J_{stop}, shape (stop - start, B, S, S); all T by default."""
        parts = list(self.chunks(start=start, stop=stop))
        if not parts:
            return self.starts.new_empty(0, self.batch, self.size, self.size)
        return torch.cat(parts)

    def _range(self, start: int, stop: int | None) -> int:
        stop = self.steps if stop is None else stop
        for name, value in (("start", start), ("stop", stop)):
            check(
                isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= self.steps,
                f"`{name}` must be a step from 0 to T = {self.steps}, got {value!r}",
            )
        check(start <= stop, f"`start` must not be after `stop`, got {start} > {stop}")
        return stop

    def chunks(
        self, size: int = CHUNK_STEPS, *, start: int = 0, stop: int | None = None
    ) -> Iterator[Tensor]:
        """The step Jacobians in order, `size` steps per (n, B, S, S) tensor."""
        check(
            isinstance(size, int) and not isinstance(size, bool) and size >= 1,
            f"`size` must be a whole number of steps of at least 1, got {size!r}",
        )
        stop = self._range(start, stop)
        B, S = self.batch, self.size
        for t0 in range(start, stop, size):
            t1 = min(stop, t0 + size)
            rows = (t1 - t0) * B
            J = self.cell.jacobian(
                self.weights,
                self.inputs[t0:t1].reshape(rows, -1),
                self.starts[t0:t1].reshape(rows, S),
            )
            yield J.reshape(t1 - t0, B, S, S)

    def cell_path(self) -> Tensor | None:
        """LSTM only: the forget gates f_t, the diagonals of dc_t/dc_{t-1}, shape (T, B, H)."""
        if self.cell.cell_path is None:
            return None
        T, B, S = self.steps, self.batch, self.size
        f = self.cell.cell_path(
            self.weights, self.inputs.reshape(T * B, -1), self.starts.reshape(T * B, S)
        )
        return f.reshape(T, B, -1)


def _check_inputs(cell: Cell, weights: Any, x: Tensor, states: Tensor, name: str) -> None:
    check(
        isinstance(weights, cell.weights),
        f"`weights` must be {cell.weights.__name__} for the {cell.name} cell, "
        f"got {type(weights).__name__}",
    )
    check_tensor("x", x, 3)
    check(x.shape[0] >= 1, f"`x` must have at least one time step, got shape {tuple(x.shape)}")
    S = cell.state_size(weights)
    expected = (x.shape[1], S) if name == "s0" else (x.shape[0], x.shape[1], S)
    check_tensor(name, states, len(expected))
    letters = ("B", "S") if name == "s0" else ("T", "B", "S")
    shown = ", ".join(f"{a} = {n}" for a, n in zip(letters, expected, strict=True))
    check(
        tuple(states.shape) == expected,
        f"`{name}` must have shape ({shown}) to match `x` and the weights, "
        f"got shape {tuple(states.shape)}",
    )
    check_finite("x", x)
    check_finite(name, states)


def replay(cell: Cell, weights: Any, x: Tensor, s0: Tensor) -> Replay:
    """Run the recurrence from `s0` over `x`.

    With gradients enabled the states stay in the autograd graph (`Replay.graph`); otherwise
    nothing is recorded.

    Args:
        cell: The cell, e.g. `get_cell("lstm")`.
        weights: The cell's weights (`RNNWeights`, `LSTMWeights` or `GRUWeights`).
        x: Inputs x_1 ... x_T, shape (T, B, I), T >= 1.
        s0: Initial state s_0, shape (B, S).

    Raises:
        GradtraceError: if `x` or `s0` has the wrong shape, dtype or device, T = 0, or either
            holds NaN/Inf.
    """
    _check_inputs(cell, weights, x, s0, "s0")
    steps = [s0, cell.step(weights, x[0], s0)]  # the first step checks dtype and device
    if len(x) > 1:
        # The input's part of every later step in one product; the recurrence is sequential.
        T, B = x.shape[:2]
        drive = cell.drive(weights, x[1:].reshape((T - 1) * B, -1)).view(T - 1, B, -1)
        for u in drive:  # (B, G)
            steps.append(cell.advance(weights, u, steps[-1]))  # (B, S), in the graph if enabled
    detached = torch.stack([s.detach() for s in steps])  # (T + 1, B, S)
    if not torch.is_grad_enabled():
        return Replay(cell, weights, x.detach(), detached[:-1], detached[-1])
    return Replay(cell, weights, x.detach(), detached[:-1], detached[-1], tuple(steps))


def checkpoint(cell: Cell, weights: Any, x: Tensor, states: Tensor) -> Replay:
    """A replay whose states are given: row t-1 of `states` is the state step t starts from.

    Args:
        cell: The cell.
        weights: Its weights.
        x: Inputs, shape (T, B, I): row t-1 is x_t.
        states: States, shape (T, B, S).

    Raises:
        GradtraceError: if the shapes disagree or either holds NaN/Inf.
    """
    _check_inputs(cell, weights, x, states, "states")
    return Replay(cell, weights, x.detach(), states.detach())
