"""Static figures (matplotlib, Agg backend): presentation only, nothing is computed here.

One figure function per record kind, and `plot(record, path)` picks it:

    GradientFlow → plot_flow         TraceResult → plot_trace      SensitivityProfile → ...
    DepthProfile → plot_depth        MapReport → plot_map_report   Bifurcation, EscapeImage,
    FixedPoints, RNNPortrait, CliffReport → their figure in `gradtrace.plots.dynamics`
    MonitorStep → plot_monitor_step, and a run's figures, in `gradtrace.plots.monitor`

This package's `__init__` stays free of matplotlib so that a figure path can be checked before
any work starts, without paying for the import.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

from gradtrace.errors import GradtraceError
from gradtrace.io.files import check_output_file

SUFFIXES = (".png", ".pdf", ".svg")

# record class name -> (module, figure function); imported on first use
FIGURES = {
    "GradientFlow": ("gradtrace.plots.flow", "plot_flow"),
    "TraceResult": ("gradtrace.plots.flow", "plot_trace"),
    "SensitivityProfile": ("gradtrace.plots.flow", "plot_sensitivity"),
    "DepthProfile": ("gradtrace.plots.depth", "plot_depth"),
    "MapReport": ("gradtrace.plots.dynamics", "plot_map_report"),
    "Bifurcation": ("gradtrace.plots.dynamics", "plot_bifurcation"),
    "EscapeImage": ("gradtrace.plots.dynamics", "plot_mandelbrot"),
    "FixedPoints": ("gradtrace.plots.dynamics", "plot_fixed_points"),
    "RNNPortrait": ("gradtrace.plots.dynamics", "plot_rnn_portrait"),
    "CliffReport": ("gradtrace.plots.dynamics", "plot_cliff"),
    "MonitorStep": ("gradtrace.plots.monitor", "plot_monitor_step"),
    "TrainRun": ("gradtrace.plots.training", "plot_train_run"),
}


def check_figure_path(path: str | Path, name: str = "path") -> Path:
    """Refuse a figure path that cannot be written, before any work is done.

    Raises:
        GradtraceError: if the suffix is not .png, .pdf or .svg, the path is a directory, its
            folder is missing, or the place is not writable.
    """
    return check_output_file(path, name, SUFFIXES)


def plot(record: Any, path: str | Path, **options: Any) -> Path:
    """Draw any record to `path` with the one figure function of its kind.

    Args:
        record: A gradtrace record (`gradtrace.records`).
        path: A .png, .pdf or .svg file.
        **options: Passed to the figure function (e.g. `title`).

    Returns:
        The path written.

    Raises:
        GradtraceError: if the record has no figure or the path cannot be written.
    """
    name = type(record).__name__
    if name not in FIGURES:
        raise GradtraceError(
            f"`record` must be one of {', '.join(FIGURES)} to be drawn, got {name}"
        )
    check_figure_path(path)
    module, function = FIGURES[name]
    draw = getattr(importlib.import_module(module), function)
    takes = [p for p in inspect.signature(draw).parameters if p not in ("path",)][1:]
    unknown = sorted(set(options) - set(takes))
    if unknown:
        raise GradtraceError(
            f"the figure of a {name} takes "
            + (f"the options {', '.join(takes)}" if takes else "no options")
            + f", got {', '.join(unknown)}"
        )
    result: Path = draw(record, path, **options)
    return result
