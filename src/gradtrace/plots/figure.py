"""Creating and saving figures the same way everywhere: Agg backend, PNG or PDF by suffix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

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
