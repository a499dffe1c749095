"""`gradtrace.Monitor`: gradient flow through time and depth while a model trains.

The monitor wraps the user's own loop and never owns it:

    monitor = gradtrace.Monitor(model, optimizer, every=10, log="runs/exp1")
    for step, (x, y) in enumerate(loader):
        with monitor.step(step) as s:          # hooks live only inside the block
            loss = loss_fn(model(x), y)
            s.loss(loss)                       # optional: the loss on the timeline
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)   # audited
            optimizer.step()
            optimizer.zero_grad()
    monitor.close()

Every step, scheduled or not, costs a handful of Python calls: the random state is saved, the
model's arguments are referenced, `clip_grad_norm_` is wrapped, and the gradient norm is read
once (from clipping, or one fused norm when the optimizer steps) to catch a non-finite step.
A scheduled step (`every`, see `gradtrace.monitor.schedule`) also records, from the forward and
backward the loop already runs: the loss, the global and per-parameter gradient norms, weight
norms and the optimizer's update/weight ratios, the clipping audit, and the through-time profile
of every nn.RNN / nn.LSTM / nn.GRU and of every loop over an nn.RNNCell / LSTMCell / GRUCell
(`gradtrace.monitor.chunked`). Every `lag_every`-th scheduled step adds the lag shares
(`gradtrace.monitor.lags`), every `trace_every`-th a full `gradtrace.trace` of the batch. A step
whose loss or gradient norm is not finite is replayed to find where the first non-finite value
appeared (`gradtrace.monitor.nonfinite`) and recorded whether scheduled or not; the run then goes
on, or stops with `NonFiniteError` (`on_nonfinite="stop"`). Records go to every writer as they are
made (`gradtrace.monitor.writers`).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gradtrace.errors import GradtraceError, check
from gradtrace.monitor import chunked as chunking
from gradtrace.monitor.clipping import StepEvents, watching
from gradtrace.monitor.lags import LAGS, lag_shares
from gradtrace.monitor.nonfinite import locate
from gradtrace.monitor.schedule import Schedule, as_schedule
from gradtrace.monitor.writers import Writer, open_writers
from gradtrace.records.monitor import (
    ClipAudit,
    MonitorRun,
    MonitorStep,
    NonFiniteOrigin,
    ParameterStats,
)
from gradtrace.records.trace import TraceResult
from gradtrace.tracing.modules import RECURRENT_TYPES

ON_NONFINITE = ("continue", "stop")


class NonFiniteError(GradtraceError):
    """Raised at the end of a step whose loss or gradient norm was not finite, when the
    monitor was told to stop (`on_nonfinite="stop"`); the step's record is already written."""


@dataclass
class Step:
    """What the user can tell the monitor inside a step (`Monitor.step` yields it)."""

    number: int
    scheduled: bool
    events: StepEvents = field(default_factory=StepEvents)
    loss_value: Tensor | None = None
    before_update: Callable[[], None] = lambda: None  # what the optimizer's step hooks call;
    after_update: Callable[[], None] = lambda: None  # a framework's callback may call them

    def loss(self, loss: Tensor) -> Tensor:
        """Record the step's loss (returned unchanged, so `s.loss(loss).backward()` works)."""
        check(
            isinstance(loss, Tensor) and loss.numel() == 1,
            f"`loss` must be a scalar tensor, got "
            f"{tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__}",
        )
        self.loss_value = loss.detach()
        return loss

    def clipped(self, total_norm: Tensor | float, max_norm: float | None = None) -> None:
        """Report a clipping call the monitor could not see (clip_grad_norm_ imported by name
        before the step, or a clipping function of your own): the total norm it returned, and
        its threshold."""
        norm = float(total_norm.detach()) if isinstance(total_norm, Tensor) else float(total_norm)
        self.events.clip(norm, None if max_norm is None else float(max_norm))


def _norms(tensors: list[Tensor]) -> list[float]:
    if not tensors:
        return []
    norms = torch._foreach_norm(tensors, 2.0)
    return torch.stack([n.to(torch.float64) for n in norms]).tolist()


class Monitor:
    """Records gradient flow while `model` trains; see the module docstring.

    Args:
        model: The model being trained.
        optimizer: Its optimizer; with it the monitor reads gradients when it steps and
            records the update/weight ratios. Without it gradients are read at the end of the
            block (zero them after the block then).
        every: The steps to record: a `Schedule` (`gradtrace.every`, `log_spaced`, `when`),
            a number n (every n steps) or a predicate on the step.
        log: A folder for the run's `monitor.jsonl` (and TensorBoard files with
            `tensorboard=True`), or a `.jsonl` path; None writes nothing to disk. A log that
            already holds a run is appended to, never overwritten: the new run starts at its
            own header, and `gradtrace monitor` reads the last run.
        tensorboard: Also write TensorBoard event files into the `log` folder (the
            `tensorboard` extra).
        writers: More writers (objects with `write(record)` and `close()`).
        lag_every: Every n-th recorded step also measures the lag shares; None never.
        lags: The lags d of the lag shares.
        trace_every: Every n-th recorded step also runs a full `gradtrace.trace` of the batch
            (before the optimizer's update when there is an optimizer); None never.
        chunk: K, the steps per chunk of the recurrent modules' monitored forward (for a
            loop over a cell: every K-th state is measured); None chooses T / 8 within
            [25, 50], at most T / 2 (25 for a cell loop, whose length is known only when it
            ends).
        on_nonfinite: "continue" (record where it began and go on) or "stop" (record it, then
            raise `NonFiniteError`, before the optimizer's update when the monitor has the
            optimizer, so the weights stay finite).

    Raises:
        GradtraceError: on a bad option, or an unwritable log place.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        every: Schedule | int | Callable[[int], bool] = 10,
        log: str | Path | None = None,
        tensorboard: bool = False,
        writers: Sequence[Writer] = (),
        lag_every: int | None = None,
        lags: tuple[int, ...] = LAGS,
        trace_every: int | None = None,
        chunk: int | None = None,
        on_nonfinite: str = "continue",
    ) -> None:
        check(
            isinstance(model, nn.Module),
            f"`model` must be a torch.nn.Module, got {type(model).__name__}",
        )
        check(
            optimizer is None or isinstance(optimizer, torch.optim.Optimizer),
            f"`optimizer` must be a torch.optim.Optimizer or None, got {type(optimizer).__name__}",
        )
        check(
            on_nonfinite in ON_NONFINITE,
            f"`on_nonfinite` must be one of {', '.join(ON_NONFINITE)}, got {on_nonfinite!r}",
        )
        for name, value in (("lag_every", lag_every), ("trace_every", trace_every)):
            check(
                value is None
                or (isinstance(value, int) and not isinstance(value, bool) and value >= 1),
                f"`{name}` must be a whole number of at least 1 or None, got {value!r}",
            )
        check(
            chunk is None
            or (isinstance(chunk, int) and not isinstance(chunk, bool) and chunk >= 1),
            f"`chunk` must be a whole number of steps of at least 1 or None, got {chunk!r}",
        )
        check(
            isinstance(lags, tuple) and all(isinstance(d, int) and d >= 1 for d in lags),
            f"`lags` must be a tuple of whole numbers >= 1, got {lags!r}",
        )
        self.model, self.optimizer = model, optimizer
        self.schedule = as_schedule(every, "every")
        self.lag_every, self.lags, self.trace_every = lag_every, lags, trace_every
        self.chunk, self.on_nonfinite = chunk, on_nonfinite
        self.names = [name for name, _ in model.named_parameters()]
        self.params = [p for _, p in model.named_parameters()]
        self.recurrent = [
            (path, m) for path, m in model.named_modules() if isinstance(m, RECURRENT_TYPES)
        ]
        cells = [path or "model" for path, m in self.recurrent if not isinstance(m, nn.RNNBase)]
        if lag_every is not None and cells:
            warnings.warn(
                "lag shares are measured for nn.RNN / nn.LSTM / nn.GRU only; the loops over "
                f"{', '.join(f'`{c}`' for c in cells)} get the through-time profile without them",
                UserWarning,
                stacklevel=2,
            )
        self.writers = open_writers(log, tensorboard, writers)
        self._snapshot: list[Tensor] | None = None  # one copy of the weights, reused
        self.recorded = 0  # scheduled steps recorded so far
        self.seen = 0  # steps seen so far
        self.clipped_steps = 0
        self.history: list[MonitorStep] = []
        self.header = MonitorRun(
            model=type(model).__name__,
            parameters=tuple(self.names),
            recurrent=tuple(path for path, _ in self.recurrent),
            schedule=str(self.schedule),
            lag_schedule=_nth(lag_every),
            trace_schedule=_nth(trace_every),
            chunk=chunk or 0,
            started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            version=_version(),
        )
        for writer in self.writers:
            writer.write(self.header)

    # ------------------------------------------------------------------ the step

    @contextmanager
    def step(self, step: int, replay: Callable[[], Tensor] | None = None) -> Iterator[Step]:
        """One training step; hooks live only inside the block.

        Args:
            step: The step's number (what the schedule is asked about, and the record's).
            replay: Optional: a closure that recomputes this step's loss (e.g.
                `lambda: loss_fn(model(x), y)`), used only if the step goes non-finite, to
                find where in the backward it began.

        Raises:
            GradtraceError: on a bad step number; `NonFiniteError` on a non-finite step
                with `on_nonfinite="stop"`: from the optimizer's step, before its update,
                when the monitor has the optimizer, else at the end of the block.
        """
        check(
            isinstance(step, int) and not isinstance(step, bool) and step >= 0,
            f"`step` must be a whole number >= 0, got {step!r}",
        )
        scheduled = self.schedule(step)
        current = Step(step, scheduled)
        lag = scheduled and self.lag_every is not None and self.recorded % self.lag_every == 0
        trace_now = (
            scheduled and self.trace_every is not None and self.recorded % self.trace_every == 0
        )
        state = _StepState(rng=torch.get_rng_state(), replay=replay, lag=lag)
        if scheduled:  # per-parameter norms of the raw gradients, before any clipping
            current.events.before_clip = lambda: self._read_gradients(current, state)
        current.before_update = lambda: self._before_update(current, state, trace_now)
        current.after_update = lambda: self._after_update(current, state)
        with ExitStack() as stack:
            stack.enter_context(watching(current.events))
            stack.callback(self._hook_model(state).remove)
            for handle in self._hook_backward(current.events):
                stack.callback(handle.remove)
            if self.optimizer is not None:
                pre = self.optimizer.register_step_pre_hook(lambda *a: current.before_update())
                post = self.optimizer.register_step_post_hook(lambda *a: current.after_update())
                stack.callback(pre.remove)
                stack.callback(post.remove)
            if scheduled:
                packed = lambda path: state.warnings.append(  # noqa: E731
                    f"`{path or 'model'}` received a PackedSequence of sequences of different "
                    "lengths: its profile is measured length by length, its lag shares not"
                )
                state.records = stack.enter_context(
                    chunking.chunked(self.recurrent, self.chunk, keep=lag, on_packed=packed)
                )
            yield current
        self._finish(current, state, lag, trace_now)

    def _hook_model(self, state: _StepState) -> Any:
        def grab(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            if state.args is None:  # the first call of the step is the batch
                state.args, state.kwargs = args, kwargs

        return self.model.register_forward_pre_hook(grab, with_kwargs=True)

    def _hook_backward(self, events: StepEvents) -> list[Any]:
        def done(p: Tensor) -> None:
            events.backward_done = True

        return [p.register_post_accumulate_grad_hook(done) for p in self.params if p.requires_grad]

    def _read_gradients(self, current: Step, state: _StepState) -> None:
        """Gradient norms now (once per step): all of them on a scheduled step, else one."""
        if state.grad_norms is not None:
            return
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:  # none yet (clipping before backward, say): read them later
            return
        if current.scheduled:
            norms = _norms(grads)
            state.grad_norms = dict(
                zip([n for n, p in zip(self.names, self.params, strict=True) if p.grad is not None],
                    norms, strict=True)
            )  # fmt: skip
            state.grad_norm = math.sqrt(sum(n * n for n in norms)) if norms else None
        else:
            state.grad_norms = {}
            calls = current.events.calls
            if calls:  # the norm clipping saw: the raw gradients'
                state.grad_norm = calls[0].norm
            elif grads:
                total = torch.linalg.vector_norm(
                    torch.stack([n.to(torch.float64) for n in torch._foreach_norm(grads, 2.0)])
                )
                state.grad_norm = float(total)

    def _before_update(self, current: Step, state: _StepState, trace_now: bool) -> None:
        state.updated = True
        self._read_gradients(current, state)
        self._check_finite(current, state)  # now, while the weights are still those of the step
        if state.origin is not None and self.on_nonfinite == "stop":
            # record the step and raise before the update, which would write NaN/Inf into the
            # weights: they stay those the step began with
            self._finish(current, state, state.lag, trace_now=False)
        if current.scheduled:  # the weights before the update, into a buffer kept for reuse
            weights = [p.detach() for p in self.params]
            if self._snapshot is None or any(
                b.shape != w.shape or b.dtype != w.dtype or b.device != w.device
                for b, w in zip(self._snapshot, weights, strict=True)
            ):
                self._snapshot = [torch.empty_like(w) for w in weights]
            torch._foreach_copy_(self._snapshot, weights)
            state.weights_before = self._snapshot
        if trace_now and state.args is not None:
            state.trace = self._trace(state)
        if current.scheduled and current.events.calls:
            state.clip_after = _after_clip(current.events.calls[-1], self.params)

    def _check_finite(self, current: Step, state: _StepState) -> None:
        """Replay the step if its loss or gradient norm is not finite (once)."""
        if state.origin is not None:
            return
        loss = None if current.loss_value is None else float(current.loss_value)
        bad = []
        if loss is not None and not math.isfinite(loss):
            bad.append("loss")
        if state.grad_norm is not None and not math.isfinite(state.grad_norm):
            bad.append("gradient norm")
        if bad:
            with self._paused():  # the replays are diagnoses, not the step's record
                state.origin = locate(
                    self.model, bad[0], state.args, state.kwargs or {}, state.rng, state.replay
                )

    def _after_update(self, current: Step, state: _StepState) -> None:
        current.events.optimizer_stepped = True
        if state.weights_before is not None:
            before = state.weights_before
            state.weight_norms = _norms(before)
            torch._foreach_sub_(before, [p.detach() for p in self.params])  # -(the update)
            state.updates = _norms(before)
            state.weights_before = None

    @contextmanager
    def _paused(self) -> Iterator[None]:
        """The block runs the recurrent modules' own forwards, not the chunked ones that
        record the step (a replay or a trace must not write into the step's record)."""
        saved = [
            (m, m.__dict__.pop("forward")) for _, m in self.recurrent if "forward" in m.__dict__
        ]
        try:
            yield
        finally:
            for module, forward in saved:
                module.forward = forward

    def _trace(self, state: _StepState) -> TraceResult | None:
        """The exact trace of the batch, with the chunked forwards paused."""
        from gradtrace.tracing.api import trace

        try:
            assert state.args is not None
            with self._paused():
                return trace(self.model, *state.args, **(state.kwargs or {}))
        except GradtraceError as err:
            state.warnings.append(f"the full trace of this step failed: {err}")
            return None

    # ------------------------------------------------------------------ the record

    def _finish(self, current: Step, state: _StepState, lag: bool, trace_now: bool) -> None:
        self.seen += 1
        self._read_gradients(current, state)
        calls = current.events.calls
        if any(call.acted for call in calls):
            self.clipped_steps += 1
        loss = None if current.loss_value is None else float(current.loss_value)
        self._check_finite(current, state)
        origin = state.origin
        warned = bool(state.warnings) or any(call.warnings for call in calls)
        if not current.scheduled and origin is None and not warned:
            return
        if not state.updated and trace_now and state.args is not None:
            state.trace = self._trace(state)  # no optimizer step seen: the trace is read now
        profiles = self._profiles(state, lag) if current.scheduled else ()  # may warn too
        warnings = [w for call in calls for w in call.warnings] + state.warnings
        if current.scheduled and calls and state.clip_after is None:
            # clipped after "before the update" (Lightning clips after on_before_optimizer_step)
            # or with no optimizer step seen: what it left is still in the gradients
            state.clip_after = _after_clip(calls[-1], self.params)
        record = MonitorStep(
            step=current.number,
            loss=loss,
            grad_norm=math.nan if state.grad_norm is None else state.grad_norm,
            parameters=self._parameter_stats(state) if current.scheduled else (),
            clip=self._clip_audit(calls, state),
            profiles=profiles,
            trace=state.trace,
            nonfinite=origin,
            warnings=tuple(dict.fromkeys(warnings)),
        )
        if current.scheduled:
            self.recorded += 1
        self.history.append(record)
        for writer in self.writers:
            writer.write(record)
        if origin is not None and self.on_nonfinite == "stop":
            raise NonFiniteError(
                f"step {current.number}: the {origin.quantity} was not finite; {origin.note}"
            )

    def _parameter_stats(self, state: _StepState) -> tuple[ParameterStats, ...]:
        grads = state.grad_norms or {}
        weights = state.weight_norms or _norms([p.detach() for p in self.params])
        updates = state.updates
        return tuple(
            ParameterStats(
                name,
                grads.get(name, math.nan),
                weights[i],
                None if updates is None or weights[i] == 0 else updates[i] / weights[i],
            )
            for i, name in enumerate(self.names)
        )

    def _clip_audit(self, calls: list[Any], state: _StepState) -> ClipAudit | None:
        if not calls:
            return None
        last = calls[-1]
        after = state.clip_after if state.clip_after is not None else math.nan
        return ClipAudit(
            calls=len(calls),
            norm_before=last.norm,
            norm_after=after,
            max_norm=last.max_norm,
            acted=any(call.acted for call in calls),
            clipped_fraction=self.clipped_steps / self.seen,
            warnings=tuple(w for call in calls for w in call.warnings),
        )

    def _profiles(self, state: _StepState, lag: bool) -> tuple[Any, ...]:
        if state.records is None:
            return ()
        out = chunking.profiles(state.records)
        if not lag:
            return tuple(out)
        modules = dict(self.recurrent)
        latest = {(r.module, r.layer, r.direction): r for r in state.records}
        shaped = []
        for prof in out:
            key = (prof.module, prof.layer, ("forward", "reverse").index(prof.direction))
            rec = latest[key]
            module = modules[rec.module]
            if not isinstance(module, nn.RNNBase):  # a cell loop keeps no inputs for lags
                shaped.append(prof)
                continue
            try:
                shares = lag_shares(module, rec, self.lags)
            except GradtraceError as err:  # weights an update made NaN: the step is recorded
                state.warnings.append(
                    f"the lag shares of `{rec.module}` layer {rec.layer} {prof.direction} were "
                    f"not measured: {err}"
                )
                shares = None
            shaped.append(prof if shares is None else _with_lags(prof, self.lags, shares))
        return tuple(shaped)

    def close(self) -> None:
        """Flush and close every writer."""
        for writer in self.writers:
            writer.close()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class _StepState:
    rng: Tensor
    args: tuple[Any, ...] | None = None
    kwargs: dict[str, Any] | None = None
    records: list[chunking.LayerRecord] | None = None
    grad_norms: dict[str, float] | None = None
    grad_norm: float | None = None
    weights_before: list[Tensor] | None = None
    weight_norms: list[float] | None = None
    updates: list[float] | None = None
    clip_after: float | None = None
    trace: TraceResult | None = None
    replay: Callable[[], Tensor] | None = None
    origin: NonFiniteOrigin | None = None
    updated: bool = False
    lag: bool = False
    warnings: list[str] = field(default_factory=list)


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _nth(n: int | None) -> str:
    """ "every 2nd recorded step", "never" for None."""
    if n is None:
        return "never"
    if n == 1:
        return "every recorded step"
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"every {n}{suffix} recorded step"


def _global(params: list[nn.Parameter]) -> float:
    norms = _norms([p.grad for p in params if p.grad is not None])
    return math.sqrt(sum(n * n for n in norms)) if norms else math.nan


def _after_clip(call: Any, params: list[nn.Parameter]) -> float:
    """The total norm after the last clip: torch's own arithmetic, norm * min(1, max_norm /
    (norm + 1e-6)), when its norm and threshold are finite; measured otherwise."""
    norm, max_norm = call.norm, call.max_norm
    if max_norm is not None and math.isfinite(norm) and math.isfinite(max_norm):
        return norm * min(1.0, max_norm / (norm + 1e-6))
    return _global(params)


def _with_lags(prof: Any, lags: tuple[int, ...], shares: Tensor) -> Any:
    import dataclasses

    return dataclasses.replace(prof, lags=lags, lag_shares=shares)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gradtrace")
    except PackageNotFoundError:
        return "unknown"
