"""What the training monitor writes: a header for the run, then one record per monitored step.

A run's JSON Lines log starts with a `MonitorRun` and goes on with one `MonitorStep` per
scheduled step (and per step whose loss or gradient norm was not finite, scheduled or not):

    MonitorStep.parameters      per parameter tensor: gradient and weight norms, and the
                                update/weight ratio of the optimizer's step
    MonitorStep.clip            the clipping audit: the norm before and after, whether it acted,
                                the fraction of steps clipped so far, misuse in words
    MonitorStep.profiles        per recurrent layer and direction: dL/dh_b at the boundaries of
                                the chunks its forward ran in, split into the part that flows
                                back through time (recurrent) and the part from the step's own
                                output (direct); ||dL/dh_0||; for an LSTM ||dL/dc_b||; on the
                                lag schedule the share of dL/dh_b from losses >= d steps later
    MonitorStep.trace           on the trace schedule, the exact `TraceResult` of the batch
    MonitorStep.nonfinite       where a non-finite value first appeared, when one did

Norms of a batch are whole-batch norms (over the batch and the units). Boundaries are counted
in the layer's own time order: b steps into the sequence, h_b the state after them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from gradtrace.records.base import Record
from gradtrace.records.trace import TraceResult


@dataclass(frozen=True, eq=False, repr=False)
class ParameterStats(Record):
    """Norms of one parameter tensor on a monitored step.

    Attributes:
        name: Its dotted name in the model.
        grad_norm: ||grad||_2 as the backward left it, before any clipping; NaN when it got
            no gradient this step.
        weight_norm: ||w||_2 before the update.
        update_ratio: ||w_after - w_before|| / ||w_before|| of the optimizer's step; None
            without an optimizer (or before it stepped).
    """

    name: str
    grad_norm: float
    weight_norm: float
    update_ratio: float | None = None


@dataclass(frozen=True, eq=False, repr=False)
class ClipAudit(Record):
    """What gradient clipping did on a step.

    Attributes:
        calls: How many clipping calls the step made.
        norm_before: The total norm clipping saw (what clip_grad_norm_ returned).
        norm_after: The total norm of the gradients after it; NaN if not measured.
        max_norm: The threshold, when known.
        acted: Whether it scaled the gradients down.
        clipped_fraction: The fraction of the steps seen so far on which clipping acted.
        warnings: Misuse, in words: clipping after optimizer.step() or before backward(),
            gradients zeroed (or made NaN) by a non-finite norm, max_norm = inf.
    """

    calls: int
    norm_before: float
    norm_after: float
    max_norm: float | None
    acted: bool
    clipped_fraction: float
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False, repr=False)
class TimeProfile(Record):
    """Gradient through time at the chunk boundaries of one recurrent layer and direction.

    Attributes:
        module: The module's dotted path.
        layer: The layer index.
        direction: "forward" or "reverse".
        cell: "rnn", "lstm" or "gru".
        steps: T, the sequence length of the step's batch.
        chunk: K, the steps per chunk of the monitored forward.
        boundaries: b = K, 2K, ... (< T), then T: the states h_b measured. For a
            PackedSequence of different lengths T is the longest, each norm is over the
            sequences still running at b, and T stands for each one's own last step.
        recurrent: ||part of dL/dh_b that flows back from steps after b||, (n,).
        direct: ||part of dL/dh_b from h_b's own use as the output at step b||, (n,).
        total: ||dL/dh_b|| = ||recurrent + direct||, (n,).
        cell_state: LSTM only: ||part of dL/dc_b that flows back from steps after b||, the
            gradient of the cell state passed on (through c_{b+1}), (n,); the path through
            the cell's own h_b = o_b tanh(c_b) is in dL/dh_b's, not here, and at b = T it is
            0 unless the loss reads c_T.
        initial: ||dL/dh_0||, the gradient truncated BPTT discards.
        lags: The lags d of `lag_shares`, when measured.
        lag_shares: ||part of dL/dh_b from outputs at steps >= b + d|| / ||dL/dh_b||,
            (len(lags), n); NaN where b + d is past T.
    """

    module: str
    layer: int
    direction: str
    cell: str
    steps: int
    chunk: int
    boundaries: tuple[int, ...]
    recurrent: Tensor
    direct: Tensor
    total: Tensor
    cell_state: Tensor | None
    initial: float
    lags: tuple[int, ...] = ()
    lag_shares: Tensor | None = None

    @property
    def label(self) -> str:
        """ "rnn layer 0 forward"."""
        return f"{self.module or self.cell} layer {self.layer} {self.direction}"

    @property
    def recurrent_share(self) -> Tensor:
        """||recurrent|| / (||recurrent|| + ||direct||) per boundary, in [0, 1]."""
        return self.recurrent / (self.recurrent + self.direct)

    @property
    def mean_recurrent_share(self) -> float:
        """The recurrent share averaged over the interior boundaries (the last one has no
        later steps, so nothing reaches it through time); NaN where it is not defined, as for
        a sequence with no boundary before its last step (T <= K)."""
        share = self.recurrent_share[:-1]
        finite = share[share.isfinite()]
        return float(finite.mean()) if finite.numel() else math.nan


@dataclass(frozen=True, eq=False, repr=False)
class NonFiniteOrigin(Record):
    """Where the first non-finite value of a step appeared.

    Attributes:
        quantity: What was not finite: "loss" or "gradient norm".
        stage: "input" (the batch the model was called on), "forward" (a module's output,
            from finite inputs), "backward" (a gradient, from finite ones; module "" when the
            loss's own backward made it) or "unknown".
        module: The module's dotted path ("" for the model itself, None if not found).
        module_type: Its class name.
        parameters: Parameters whose gradients were not finite.
        layer: The layer of a recurrent module where the state first went non-finite.
        direction: Its direction.
        time_index: The first time step (0-based, the module's own input order) that was not
            finite, for a recurrent module or a (T, B, ...) output.
        index: The position of the first non-finite entry of the module's output.
        note: The finding in words.
    """

    quantity: str
    stage: str
    module: str | None
    module_type: str
    parameters: tuple[str, ...]
    layer: int | None
    direction: str | None
    time_index: int | None
    index: tuple[int, ...]
    note: str


@dataclass(frozen=True, eq=False, repr=False)
class MonitorStep(Record):
    """Everything the monitor measured on one step (see the module docstring)."""

    KIND = "monitor_step"

    step: int
    loss: float | None
    grad_norm: float
    parameters: tuple[ParameterStats, ...]
    clip: ClipAudit | None
    profiles: tuple[TimeProfile, ...]
    trace: TraceResult | None
    nonfinite: NonFiniteOrigin | None
    warnings: tuple[str, ...] = ()

    def __repr__(self) -> str:
        loss = "-" if self.loss is None else f"{self.loss:.4g}"
        return (
            f"MonitorStep(step {self.step}, loss {loss}, grad norm {self.grad_norm:.4g}, "
            f"{len(self.profiles)} profiles{', non-finite' if self.nonfinite else ''})"
        )


@dataclass(frozen=True, eq=False, repr=False)
class MonitorRun(Record):
    """The first record of a run's log: what is monitored and how.

    Attributes:
        model: The model's class name.
        parameters: Its parameter names, in order.
        recurrent: The recurrent modules profiled, by dotted path.
        schedule: The schedule of monitored steps, in words.
        lag_schedule: When lag shares are measured, in words (or "never").
        trace_schedule: When a full trace is taken, in words (or "never").
        chunk: K, or 0 when chosen from each batch's length.
        started: When monitoring started (ISO 8601, UTC).
        version: The gradtrace version that wrote the log.
    """

    KIND = "monitor_run"

    model: str
    parameters: tuple[str, ...]
    recurrent: tuple[str, ...]
    schedule: str
    lag_schedule: str
    trace_schedule: str
    chunk: int
    started: str
    version: str


@dataclass(frozen=True, eq=False, repr=False)
class MonitorReport(Record):
    """What `gradtrace monitor RUN --out DIR` made of a run.

    Attributes:
        run: The run read.
        steps: How many step records it holds.
        first: The first step recorded.
        last: The last step recorded.
        verdicts: The findings, one sentence each.
        figures: The files written (figures and report.md).
    """

    KIND = "monitor_report"

    run: str
    steps: int
    first: int
    last: int
    verdicts: tuple[str, ...]
    figures: tuple[str, ...]
