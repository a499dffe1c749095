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

from gradtrace.errors import check
from gradtrace.io.devices import choose_device
from gradtrace.models import build_model
from gradtrace.monitor import Monitor, every
from gradtrace.progress import progress
from gradtrace.records.base import Record
from gradtrace.records.monitor import MonitorStep, NonFiniteOrigin
from gradtrace.records.training import TrainRun
from gradtrace.tasks import Task, make_task
from gradtrace.training.config import TrainConfig
from gradtrace.training.exact import exact_flow

TEST_SEED = 2**31 - 1  # the test set's own seed: the same test set for every run of a task
MONITOR_RECORDS = 50  # records per run when `monitor_every` is 0


def train(
    config: TrainConfig | dict[str, Any],
    *,
    log: str | Path | None = None,
    show_progress: bool = True,
) -> TrainRun:
    """Train `config.model` on `config.task` and record the run.

    Args:
        config: A `TrainConfig`, or a dict of its fields.
        log: A folder for the monitor's JSON Lines log (`gradtrace monitor LOG` reads it);
            None keeps the monitor's records in memory only.
        show_progress: A progress bar on a terminal.

    Returns:
        The run's `TrainRun` record, finished or diverged.

    Raises:
        GradtraceError: on a bad config (naming the field), before anything is trained.

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


def run_config(config: dict[str, Any]) -> dict[str, Any]:
    """One run from a config dict, as its record's JSON-ready dict: what a sweep's worker
    calls (in another process or on a Dask worker), with no progress bar."""
    return train(config, show_progress=False).to_dict()


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
