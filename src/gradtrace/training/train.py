"""One seeded training run of a task and a model, with the gradient picture beside the loss.

The loop is the ordinary one (sample a batch, forward, loss, backward, clip, step), wrapped in
`gradtrace.Monitor`, which records the through-time profile on its schedule; the exact gradient
flow of the first recurrent layer (`gradtrace.trace`) is measured on test sequences before and
after training. Everything random comes from generators seeded by the config: the model's
initialisation, every batch and (from a fixed seed of its own, so that every run of a task and
length sees the same one) the test set. A run whose loss or raw gradient norm stops being
finite is recorded as diverged, with its step and the monitor's account of where the
non-finite value appeared; it does not raise.

Clipping follows Pascanu, Mikolov, Bengio 2013 ("On the difficulty of training recurrent
neural networks"): by norm rescales the whole gradient to `max_norm` when its norm is above it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gradtrace.budgets import Work, require
from gradtrace.core.engine import sweep_work
from gradtrace.core.matrix_free import matrix_free_work
from gradtrace.errors import check
from gradtrace.io.devices import choose_device
from gradtrace.models import build_model, footprint
from gradtrace.monitor import Monitor, every
from gradtrace.progress import progress
from gradtrace.records.base import Record
from gradtrace.records.monitor import MonitorStep, NonFiniteOrigin
from gradtrace.records.training import TrainRun
from gradtrace.tasks import Task, make_task
from gradtrace.training.config import TrainConfig
from gradtrace.training.exact import exact_flow

# Training runs in float32 through fused kernels, which this kind of machine runs far faster
# than the float64 small-matrix rate `budgets.FLOPS` assumes. Measured (adding, LSTM, B = 64,
# one Adam step): H = 64, T = 100 took 19.5 ms and H = 256, T = 200 took 219 ms, which fit
# about 1e11 flop/s plus 0.13 ms per time step; a run is priced at half that rate and at
# 12 calls (`budgets.STEP_SECONDS` each) per time step, about twice what it takes.
FLOAT32_SPEEDUP = 25.0
CALLS_PER_STEP = 12.0
TEST_SEED = 2**31 - 1  # the test set's own seed: the same test set for every run of a task
MONITOR_RECORDS = 50  # records per run when `monitor_every` is 0


def train(
    config: TrainConfig | dict[str, Any],
    *,
    log: str | Path | None = None,
    show_progress: bool = True,
    price_time: bool = True,
) -> TrainRun:
    """Train `config.model` on `config.task` and record the run.

    Args:
        config: A `TrainConfig`, or a dict of its fields.
        log: A folder for the monitor's JSON Lines log (`gradtrace monitor LOG` reads it);
            None keeps the monitor's records in memory only.
        show_progress: A progress bar on a terminal.
        price_time: Refuse a run whose estimated time is over the budget in force (its memory
            is always priced); a sweep's workers pass False, a sweep being long by design.

    Returns:
        The run's `TrainRun` record, finished or diverged.

    Raises:
        GradtraceError: on a bad config (naming the field), or a run over the work budget
            (`gradtrace.budget`), before anything is trained.

    Example:
        >>> run = gradtrace.train({"task": "adding", "model": "lstm", "steps": 200})
        >>> run.metrics["best_test_loss"]
    """
    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    check(
        isinstance(config, TrainConfig),
        f"`config` must be a TrainConfig or a dict of its fields, got {type(config).__name__}",
    )
    started = time.perf_counter()
    device = choose_device(config.device)
    task = make_task(
        config.task, config.length, reverse=config.reverse, mnist_path=config.mnist_path
    )
    work = run_work(config, task)
    require(Work(memory=work.memory), "`length`, `hidden_size` or `batch_size`")
    if price_time:
        require(Work(flops=work.flops, steps=work.steps), "`steps`, `length` or `hidden_size`")
    test_x, test_y = (t.to(device) for t in task.test_set(config.test_size, _generator(TEST_SEED)))
    model = build_model(
        config.model,
        task.input_size,
        config.hidden_size,
        task.output_size,
        t_max=task.dependency,
        generator=_generator(config.seed),
    ).to(device)
    optimizer = _optimizer(config, model)
    probe = (test_x[: config.trace_size], test_y[: config.trace_size])
    before = exact_flow(model, task, *probe)
    kept: list[MonitorStep] = []
    monitor = Monitor(
        model,
        optimizer,
        every=every(config.monitor_every or max(1, config.steps // MONITOR_RECORDS)),
        log=log,
        writers=[_Keep(kept)],
    )
    batches = _generator(config.seed + 1)
    curves: dict[str, list[float]] = {
        k: [] for k in ("step", "train_loss", "grad_norm", "eval_step", "test_loss", "test_metric")
    }
    diverged: int | None = None
    clipped = 0
    try:
        with progress(config.steps, f"train {config.label()}", show_progress) as advance:
            for step in range(config.steps):
                x, y = (t.to(device) for t in task.sample(config.batch_size, batches))
                model.train()
                with monitor.step(step, replay=_replay(model, task, x, y)) as s:
                    loss = s.loss(task.loss(model(x), y))
                    loss.backward()
                    norm = _clip(config, model)
                    finite = math.isfinite(loss.item()) and math.isfinite(norm)
                    if finite:
                        clipped += config.clip != "none" and norm > config.max_norm
                        optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                curves["step"].append(step)
                curves["train_loss"].append(loss.item())
                curves["grad_norm"].append(norm)
                if not finite:
                    diverged = step
                    break
                if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
                    _evaluate(model, task, test_x, test_y, step + 1, curves)
                    target = config.target_loss
                    if target is not None and curves["test_loss"][-1] <= target:
                        break
                advance()
    finally:
        monitor.close()
    after = exact_flow(model, task, *probe) if diverged is None else None
    metrics = _metrics(task, curves, clipped, before, after, config.target_loss)
    regression = task.kind == "regression"  # the test targets' variance: MSE of their mean
    metrics["test_variance"] = float(test_y.double().var(correction=0)) if regression else math.nan
    profiled = [r for r in kept if r.profiles]
    return TrainRun(
        config=config.to_dict(),
        status="finished" if diverged is None else "diverged",
        steps=len(curves["step"]),
        seconds=time.perf_counter() - started,
        metric=task.metric_name,
        metrics=metrics,
        curves={
            **{k: tuple(float(v) for v in vs) for k, vs in curves.items()},
            "monitor_step": tuple(float(r.step) for r in profiled),
            "recurrent_share": tuple(r.profiles[0].mean_recurrent_share for r in profiled),
        },
        profiles=tuple(r.profiles[0] for r in profiled),
        before=before,
        after=after,
        diverged_step=diverged,
        nonfinite=_origin(kept) if diverged is not None else None,
        log=None if log is None else str(log),
    )


def run_work(config: TrainConfig, task: Task) -> Work:
    """What a run of `config` on `task` costs, priced before anything is built.

    Per optimizer step a forward and a backward through every step (6 flops per multiply-add
    of the gates, the readout included, at the float32 rate), the float32 activations
    autograd keeps for it, and the Python-level calls per time step (twice as many for a
    loop model); the test evaluations (forward only, no graph); and the memory and calls of
    the exact flow measured before and after (exact or matrix-free, whichever
    `gradtrace.trace` would run).
    """
    shape = footprint(config.model)
    T, B, H = task.max_steps, config.batch_size, config.hidden_size
    I, O = task.input_size, task.output_size
    multiply_adds = shape.gates * H * (H + I) + H * O  # one time step of one sequence
    per_step = 6.0 * B * T * multiply_adds + (10.0 * H**3 if shape.reparametrised else 0.0)
    evaluations = -(-config.steps // config.eval_every)  # every eval_every steps and the last
    test = config.test_size  # at most: a data set's test split may be smaller
    flops = config.steps * per_step + evaluations * 2.0 * test * T * multiply_adds
    flops /= FLOAT32_SPEEDUP
    calls = config.steps * (60.0 + CALLS_PER_STEP * T * (2.0 if shape.loop else 1.0))
    memory = 4.0 * B * T * ((shape.gates + 3) * H + I + O)  # what one backward reads
    memory = max(memory, 4.0 * test * T * (shape.gates + 2) * H)  # one evaluation's forward
    work = Work(memory=memory, flops=flops, steps=calls)
    if not shape.loop:  # the loop models' flow is not measured
        S, probes = shape.state * H, min(config.trace_size, test)
        exact = sweep_work(T, probes, S, "spectral")
        cheaper = min(exact, matrix_free_work(T, probes, S), key=lambda w: w.seconds)
        # its memory and calls; its arithmetic is what `gradtrace.trace` chose to fit the
        # budget (and the float64 rate assumed there is far below a large matmul's)
        work = work + Work(memory=cheaper.memory, steps=2.0 * cheaper.steps)
    return work


def run_config(config: dict[str, Any]) -> dict[str, Any]:
    """One run from a config dict, as its record's JSON-ready dict: what a sweep's worker
    calls (in another process or on a Dask worker), with no progress bar. Its memory is priced
    against the budget, its time is not: a sweep's runs are long work by design."""
    return train(config, show_progress=False, price_time=False).to_dict()


class _Keep:
    """A monitor writer that keeps the step records in memory."""

    def __init__(self, into: list[MonitorStep]) -> None:
        self.into = into

    def write(self, record: Record) -> None:
        if isinstance(record, MonitorStep):
            self.into.append(record)

    def close(self) -> None:
        pass


def _replay(model: nn.Module, task: Task, x: Tensor, y: Tensor) -> Callable[[], Tensor]:
    """This step's loss again, for the monitor to locate a non-finite value."""
    return lambda: task.loss(model(x), y)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = list(model.parameters())
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum)
    return torch.optim.RMSprop(params, lr=config.lr, momentum=config.momentum)


def _clip(config: TrainConfig, model: nn.Module) -> float:
    """Clip as configured; the raw total gradient norm, before clipping."""
    params = [p for p in model.parameters() if p.grad is not None]
    if config.clip == "norm":
        return float(torch.nn.utils.clip_grad_norm_(params, config.max_norm))
    norm = float(torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None]))
    if config.clip == "value":
        torch.nn.utils.clip_grad_value_(params, config.max_norm)
    return norm


@torch.no_grad()
def _evaluate(
    model: nn.Module, task: Task, x: Tensor, y: Tensor, step: int, curves: dict[str, list[float]]
) -> None:
    model.eval()
    with torch.no_grad():  # no graph for the test set
        out = model(x)
    curves["eval_step"].append(step)
    curves["test_loss"].append(float(task.loss(out, y)))
    curves["test_metric"].append(float(task.metric(out, y)))


def _metrics(
    task: Task,
    curves: dict[str, list[float]],
    clipped: int,
    before: Any,
    after: Any,
    target: float | None,
) -> dict[str, float]:
    test, metric = curves["test_loss"], curves["test_metric"]
    reached = [s for s, v in zip(curves["eval_step"], test, strict=True) if target and v <= target]
    finite = [v for v in curves["grad_norm"] if math.isfinite(v)]
    higher = task.metric_name == "accuracy"
    nan = math.nan
    return {
        "final_test_loss": test[-1] if test else nan,
        "best_test_loss": min(test) if test else nan,
        "final_metric": metric[-1] if metric else nan,
        "best_metric": (max(metric) if higher else min(metric)) if metric else nan,
        "baseline": float(task.baseline),
        "dependency": float(task.dependency),
        "max_grad_norm": max(finite) if finite else nan,
        "median_grad_norm": sorted(finite)[len(finite) // 2] if finite else nan,
        "steps_to_target": reached[0] if reached else nan,
        "clipped_fraction": clipped / max(1, len(curves["step"])),
        "max_train_loss": max(curves["train_loss"]) if curves["train_loss"] else nan,
        "horizon_before": float(before.horizon) if before is not None else nan,
        "horizon_after": float(after.horizon) if after is not None else nan,
        "lyapunov_before": float(before.lyapunov_max) if before is not None else nan,
        "lyapunov_after": float(after.lyapunov_max) if after is not None else nan,
    }


def _origin(kept: list[MonitorStep]) -> NonFiniteOrigin | None:
    return next((r.nonfinite for r in kept if r.nonfinite is not None), None)
