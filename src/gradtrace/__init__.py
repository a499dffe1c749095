"""gradtrace: make vanishing and exploding gradients visible, measurable and fixable.

The names a user needs, each listed once (the subpackages hold the rest):

- measure a real model: `trace`, `trace_step`, `input_sensitivity`, `fixed_points`
- measure a cell or a net: `curve`, `analyse`, `depth_profile`, and on any Jacobians the
  engine itself, `contribution_curve`, and `lyapunov_spectrum`
- the dynamics lab: `map_report`, `rnn_portrait`, `cliff_report`, `mandelbrot`
- watch training: `Monitor` with the schedules `every`, `log_spaced`, `when`,
  `GradtraceCallback` for Lightning, and `monitor_report` for a recorded run
- the remedies, measured: `train` a `TrainConfig` (tasks in `gradtrace.tasks`, models in
  `gradtrace.models`), run grids with `gradtrace.sweeps`, check the papers with `reproduce`
- results: `load`, `save`, `plot` (every result is a record of `gradtrace.records`)
- limits: `budget`, and the one error type `GradtraceError`

Example:
    >>> import torch, gradtrace
    >>> flow = gradtrace.curve(cell="rnn", activation="sigmoid", hidden_size=5, steps=20)
    >>> flow.verdict
    'vanishing'
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

# The public API, each name once: name -> (module, attribute). Imported on first use, so that
# `import gradtrace` (and the CLI's --help) stays fast: torch loads only when a name is used.
_EXPORTS = {
    "trace": ("gradtrace.tracing.api", "trace"),
    "trace_step": ("gradtrace.tracing.stepwise", "trace_step"),
    "input_sensitivity": ("gradtrace.tracing.sensitivity", "input_sensitivity"),
    "fixed_points": ("gradtrace.tracing.fixed_points", "layer_fixed_points"),
    "curve": ("gradtrace.analysis.curve", "curve"),
    "analyse": ("gradtrace.analysis.curve", "analyse"),
    "depth_profile": ("gradtrace.analysis.depth", "depth_profile"),
    "contribution_curve": ("gradtrace.core.engine", "contribution_curve"),
    "lyapunov_spectrum": ("gradtrace.core.lyapunov", "lyapunov_spectrum"),
    "map_report": ("gradtrace.dynamics.chaos", "map_report"),
    "rnn_portrait": ("gradtrace.dynamics.rnn_dynamics", "rnn_portrait"),
    "cliff_report": ("gradtrace.dynamics.cliff", "cliff_report"),
    "mandelbrot": ("gradtrace.dynamics.mandelbrot", "mandelbrot_image"),
    "Monitor": ("gradtrace.monitor.monitor", "Monitor"),
    "every": ("gradtrace.monitor.schedule", "every"),
    "log_spaced": ("gradtrace.monitor.schedule", "log_spaced"),
    "when": ("gradtrace.monitor.schedule", "when"),
    "GradtraceCallback": ("gradtrace.monitor.lightning", "GradtraceCallback"),
    "monitor_report": ("gradtrace.report.monitor", "monitor_report"),
    "train": ("gradtrace.training.train", "train"),
    "TrainConfig": ("gradtrace.training.config", "TrainConfig"),
    "reproduce": ("gradtrace.reproduce.run", "reproduce"),
    "load": ("gradtrace.records.files", "load"),
    "save": ("gradtrace.records.files", "save"),
    "plot": ("gradtrace.plots", "plot"),
    "budget": ("gradtrace.budgets", "budget"),
    "GradtraceError": ("gradtrace.errors", "GradtraceError"),
}

try:
    __version__ = version("gradtrace")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module, attribute = _EXPORTS[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    if name in (
        "analysis", "cells", "core", "dynamics", "io", "models", "monitor", "plots", "records",
        "report", "store", "sweeps", "tasks", "tracing", "training",
    ):  # fmt: skip
        return importlib.import_module(f"gradtrace.{name}")
    raise AttributeError(f"module 'gradtrace' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
