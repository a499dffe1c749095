"""Step Jacobians as the engine consumes them: produced a chunk of steps at a time, applied
without being formed where a cell's structure allows.

The engine never needs all T step Jacobians at once. It asks a source for the `Factors` of a
chunk of steps [start, stop) (J_{start+1}..J_{stop}) and then, step by step,

    left(i, P, out)   P J   for P (B, R, S): R rows of a product carried backwards (the curve),
                      written into `out` when given (a preallocated buffer)
    right(i, V)       J V   for V (B, S, K): vectors carried forwards (Lyapunov exponents)
    dense()           the explicit (n, B, S, S) Jacobians (small states, exact step norms)
    norm_bound()      an O(S^2) upper bound on each ||J_t||_2, (n, B), named `norm_label`
    window(a, b)      the factors of steps a..b-1 of the chunk, without copying
    nbytes            the memory they hold

`DenseFactors` holds explicit Jacobians (any tensor of step Jacobians, and the GRU); a cell may
return its own factors that apply J_t from its parts (the vanilla RNN's diag(phi') W, the
LSTM's blocks) so that a large state costs less arithmetic and no (B, S, S) tensor per step.
Memory is then O(T B S) for the states plus one chunk, never O(T B S^2).

Shapes: T steps, n steps of a chunk, B batch, S state, R carried rows, K carried vectors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from gradtrace.core.products import times_thin
from gradtrace.errors import check

CHUNK_BYTES = 2**24  # about 16 MiB of Jacobians per chunk of steps


@runtime_checkable
class Factors(Protocol):
    """The step Jacobians of one chunk of n steps (see the module docstring)."""

    @property
    def steps(self) -> int: ...

    def left(self, i: int, P: Tensor, out: Tensor | None = None) -> Tensor: ...

    def right(self, i: int, V: Tensor) -> Tensor: ...

    def dense(self) -> Tensor: ...

    def norm_bound(self) -> Tensor: ...

    @property
    def norm_label(self) -> str: ...

    def window(self, start: int, stop: int) -> Factors: ...

    @property
    def nbytes(self) -> int: ...


@runtime_checkable
class StepSource(Protocol):
    """J_1..J_T of B sequences of state size S, a chunk of steps at a time."""

    @property
    def steps(self) -> int: ...

    @property
    def batch(self) -> int: ...

    @property
    def size(self) -> int: ...

    @property
    def dtype(self) -> torch.dtype: ...

    @property
    def device(self) -> torch.device: ...

    def factors(self, start: int, stop: int) -> Factors: ...


class StatesShape:
    """steps, batch, size, dtype and device of a source that holds the state each step
    starts from as `starts` (T, B, S): a cell's replay, a step function's trajectory."""

    starts: Tensor

    @property
    def steps(self) -> int:
        """T."""
        return int(self.starts.shape[0])

    @property
    def batch(self) -> int:
        """B."""
        return int(self.starts.shape[1])

    @property
    def size(self) -> int:
        """S."""
        return int(self.starts.shape[2])

    @property
    def dtype(self) -> torch.dtype:
        return self.starts.dtype

    @property
    def device(self) -> torch.device:
        return self.starts.device


@dataclass(frozen=True, eq=False)
class DenseFactors:
    """Explicit Jacobians J (n, B, S, S) of a chunk."""

    J: Tensor

    @property
    def steps(self) -> int:
        return int(self.J.shape[0])

    def left(self, i: int, P: Tensor, out: Tensor | None = None) -> Tensor:
        return torch.bmm(P, self.J[i], out=out)  # (B, R, S); bmm is the fastest call for it

    def right(self, i: int, V: Tensor) -> Tensor:
        return times_thin(self.J[i], V)  # (B, S, K)

    def dense(self) -> Tensor:
        return self.J

    def norm_bound(self) -> Tensor:
        """min(||J||_F, sqrt(||J||_1 ||J||_inf)) >= ||J||_2 for each step, (n, B)."""
        J = self.J  # in its own dtype: a float64 copy of a large stack costs more than this
        frobenius = torch.linalg.matrix_norm(J, ord="fro").to(torch.float64)
        one = torch.linalg.matrix_norm(J, ord=1).to(torch.float64)
        inf = torch.linalg.matrix_norm(J, ord=math.inf).to(torch.float64)
        return torch.minimum(frobenius, torch.sqrt(one * inf))

    norm_label = "min(||J_t||_F, sqrt(||J_t||_1 ||J_t||_inf))"

    def window(self, start: int, stop: int) -> DenseFactors:
        return DenseFactors(self.J[start:stop])

    @property
    def nbytes(self) -> int:
        return int(self.J.numel() * self.J.element_size())


@dataclass(frozen=True, eq=False)
class TensorSource:
    """A (T, B, S, S) tensor of step Jacobians as a source."""

    J: Tensor

    @property
    def steps(self) -> int:
        return int(self.J.shape[0])

    @property
    def batch(self) -> int:
        return int(self.J.shape[1])

    @property
    def size(self) -> int:
        return int(self.J.shape[-1])

    @property
    def dtype(self) -> torch.dtype:
        return self.J.dtype

    @property
    def device(self) -> torch.device:
        return self.J.device

    def factors(self, start: int, stop: int) -> DenseFactors:
        return DenseFactors(self.J[start:stop])


HOLD_BYTES = 2**28  # factors of every step up to this size are built once and held


@dataclass(frozen=True, eq=False)
class HeldSource:
    """A source whose factors for all T steps were built once (`hold`), served by window."""

    inner: StepSource
    held: Factors

    @property
    def steps(self) -> int:
        return self.inner.steps

    @property
    def batch(self) -> int:
        return self.inner.batch

    @property
    def size(self) -> int:
        return self.inner.size

    @property
    def dtype(self) -> torch.dtype:
        return self.inner.dtype

    @property
    def device(self) -> torch.device:
        return self.inner.device

    def factors(self, start: int, stop: int) -> Factors:
        return self.held.window(start, stop)


def hold(source: StepSource, limit: float = HOLD_BYTES) -> StepSource:
    """`source` with the factors of all its steps built once, when they take at most `limit`
    bytes (a short sequence, or a vanilla RNN's diagonals at any length): the sweeps of one
    measurement (curve, bound, Lyapunov) then share them instead of rebuilding each chunk.
    Larger ones keep streaming."""
    if isinstance(source, TensorSource | HeldSource):
        return source
    if source.factors(0, 1).nbytes * source.steps > limit:
        return source
    return HeldSource(source, source.factors(0, source.steps))


def check_jacobians(jacobians: Tensor, name: str = "jacobians") -> Tensor:
    """Validate the shape of step Jacobians and return them as (T, B, S, S).

    Finiteness is checked on the results instead (`refuse_non_finite`): a NaN or Inf entry
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


def as_source(jacobians: Tensor | StepSource, name: str = "jacobians") -> tuple[StepSource, bool]:
    """A source for a tensor of Jacobians or a source itself; and whether results keep a
    batch axis ((T, S, S) tensors give unbatched results)."""
    if isinstance(jacobians, Tensor):
        return TensorSource(check_jacobians(jacobians, name)), jacobians.ndim == 4
    check(
        isinstance(jacobians, StepSource),
        f"`{name}` must be a (T, [B,] S, S) tensor or a step source, got "
        f"{type(jacobians).__name__}",
    )
    check(jacobians.steps >= 1, f"`{name}` must hold at least one step (T >= 1), got T = 0")
    return jacobians, True


def chunk_steps(source: StepSource, multiple: int = 1) -> int:
    """Steps per chunk: as many as fit in `CHUNK_BYTES` of dense Jacobians, a multiple of
    `multiple`, at least `multiple`."""
    item = torch.finfo(source.dtype).bits // 8
    per_step = max(1, source.batch * source.size**2 * item)
    n = max(1, CHUNK_BYTES // per_step)
    return max(multiple, n - n % multiple)


def chunks_backward(T: int, n: int) -> list[tuple[int, int]]:
    """[start, stop) chunks of n steps from the end of 0..T back to 0."""
    return [(max(0, stop - n), stop) for stop in range(T, 0, -n)]


def chunks_forward(T: int, n: int) -> list[tuple[int, int]]:
    """[start, stop) chunks of n steps from 0 to T."""
    return [(start, min(T, start + n)) for start in range(0, T, n)]
