"""Creating and saving figures the same way everywhere: Agg backend, PNG or PDF by suffix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
from torch import Tensor

matplotlib.use("Agg")  # files only: never open a window, work without a display

import matplotlib.pyplot as plt

from gradtrace.plots import check_figure_path


def new_figure(panels: int = 1, *, width: float = 7.0, height: float = 4.2) -> tuple[Any, Any]:
    """A figure with `panels` axes side by side (a single Axes when panels == 1)."""
    fig, axes = plt.subplots(1, panels, figsize=(width * panels if panels > 1 else width, height))
    return fig, axes


def save(fig: Any, path: str | Path) -> Path:
    """Write `fig` to `path` (suffix .png, .pdf or .svg), creating the folder, and close it.

    Raises:
        GradtraceError: if the suffix is not one matplotlib writes here.
    """
    path = check_figure_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
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
