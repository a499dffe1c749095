"""Creating and saving figures the same way everywhere: Agg backend, PNG, PDF or SVG by suffix,
written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
from torch import Tensor

matplotlib.use("Agg")  # files only: never open a window, work without a display

import matplotlib.pyplot as plt

from gradtrace.io.files import write_atomic
from gradtrace.plots import check_figure_path

__all__ = ["curve_limits", "finite_values", "plt", "save"]


def save(fig: Any, path: str | Path) -> Path:
    """Write `fig` to `path` (.png, .pdf or .svg) atomically and close it.

    Raises:
        GradtraceError: if the suffix is not one matplotlib writes here, or the place cannot be
            written.
    """
    path = check_figure_path(path)
    if fig.get_layout_engine() is None:  # a figure made with its own layout keeps it
        fig.tight_layout()
    try:
        write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=130, format=path.suffix[1:].lower()))
    finally:
        plt.close(fig)
    return path


def finite_values(values: Tensor) -> Any:
    """As a numpy array with -inf / inf / NaN (a vanished product) as NaN: gaps in the line."""
    v = values.detach().cpu().to(torch.float64)
    return torch.where(torch.isfinite(v), v, torch.nan).numpy()


def curve_limits(mean: Any, bound: Any) -> tuple[float, float]:
    """y-limits that show the whole curve and the bound near it, not the bound's far end."""
    finite = mean[np.isfinite(mean)]
    if finite.size == 0:
        return -1.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    span = max(high - low, 1.0)
    near = bound[np.isfinite(bound) & (bound <= high + span)]
    high = max(high, float(near.max())) if near.size else high
    return low - 0.1 * span, high + 0.1 * span


def lines_limits(ax: Any, margin: float = 1.0) -> tuple[float, float]:
    """y-limits that hold every line drawn on `ax` whole (their finite values), `margin`
    beyond each end; (-1, 1) when nothing finite is drawn."""
    values = [np.asarray(line.get_ydata(), dtype=float) for line in ax.get_lines()]
    drawn = np.concatenate(values) if values else np.array([])
    drawn = drawn[np.isfinite(drawn)]
    if drawn.size == 0:
        return -1.0, 1.0
    return float(drawn.min()) - margin, float(drawn.max()) + margin
