"""What a training run leaves: its config, its metrics, its curves and its gradient picture.

One `TrainRun` per run, whoever ran it (`gradtrace train`, `gradtrace.train`, a sweep's worker
or the reproduction); a sweep's store keeps each one whole, as this record's JSON.

    TrainRun.metrics    flat numbers (final and best test loss and metric, the task's trivial
                        baseline, the largest raw gradient norm, the clipped fraction, the
                        memory horizon and top Lyapunov exponent before and after training)
    TrainRun.curves     per-step and per-evaluation series, each a tuple of floats
    TrainRun.profiles   the monitor's through-time profile of the first recurrent layer
    TrainRun.before     the exact gradient flow of the first recurrent layer at initialisation
    TrainRun.after      the same after training (or at divergence)
    TrainRun.nonfinite  where a non-finite value first appeared, for a diverged run
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from gradtrace.records.base import Record
from gradtrace.records.flow import GradientFlow
from gradtrace.records.monitor import NonFiniteOrigin, TimeProfile


def config_key(config: dict[str, Any]) -> str:
    """A run's identity: sha256 of its full config's canonical JSON (sorted keys, no spaces),
    in hex; `TrainConfig.key()` and a sweep's store both use it."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, eq=False, repr=False)
class TrainRun(Record):
    """One seeded training run of a task and a model.

    Attributes:
        config: The run's full configuration (`gradtrace.training.TrainConfig.to_dict()`).
        status: "finished", or "diverged" when the loss or the gradient norm stopped being
            finite (the run stops there; `diverged_step` says when).
        steps: Optimizer steps taken.
        seconds: Wall-clock time of the run, evaluation and tracing included.
        metric: The task's metric: "mse" or "accuracy" (the metrics' final_metric and
            best_metric).
        metrics: Flat numbers by name (see the module docstring); NaN where not measured.
        curves: Series by name: "step", "train_loss" and "grad_norm" (the raw norm before
            clipping) at every step; "eval_step", "test_loss" and "test_metric" at every
            evaluation; "monitor_step" and "recurrent_share" on the monitor's schedule.
        profiles: The monitor's through-time profile of the first recurrent layer at each
            "monitor_step", when the model has a fused recurrent module.
        before: The exact gradient flow of the first recurrent layer at initialisation, on
            the first sequences of the test set; None for a model gradtrace cannot trace.
        after: The same at the end of the run.
        diverged_step: The step whose loss or gradient norm was not finite.
        nonfinite: The monitor's account of where the non-finite value appeared.
        log: The folder of the run's monitor log, when one was written.
    """

    KIND = "train_run"

    config: dict[str, Any]
    status: str
    steps: int
    seconds: float
    metric: str
    metrics: dict[str, float]
    curves: dict[str, tuple[float, ...]]
    profiles: tuple[TimeProfile, ...] = ()
    before: GradientFlow | None = None
    after: GradientFlow | None = None
    diverged_step: int | None = None
    nonfinite: NonFiniteOrigin | None = None
    log: str | None = None

    def __repr__(self) -> str:
        c = self.config
        loss = self.metrics.get("best_test_loss", float("nan"))
        return (
            f"TrainRun({c.get('model')} on {c.get('task')} T={c.get('length')} "
            f"seed {c.get('seed')}: {self.status} after {self.steps} steps, "
            f"best test loss {loss:.4g})"
        )
