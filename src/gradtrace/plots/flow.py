"""Figures of gradient flow: one panel per `GradientFlow`, a grid of them for a trace, and the
input-sensitivity profile.

A panel shows log10 c(k) (the batch mean, with the batch's range shaded), the LSTM cell path,
the memory horizon, and the theory's bound when it is informative: drawn when it comes within
`BOUND_DECADES` of the measurement somewhere, otherwise only named in the legend with its value
at k = 0, so that a bound 80 decades above the curve does not flatten it. A loss-gradient
profile ||dL/dh_k|| has its own axis on the right, since it is a different quantity.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from gradtrace.plots.figure import curve_limits, finite_values, plt, save
from gradtrace.records.flow import GradientFlow
from gradtrace.records.trace import SensitivityProfile, TraceResult

BOUND_DECADES = 3.0


def _bound(ax: Any, flow: GradientFlow, k: Any, mean: Any) -> Any:
    """Draw the bound if it is informative; return the values that set the y-limits."""
    bound = finite_values(flow.theory.bound_log10)
    gap = bound - mean
    close = np.isfinite(gap) & (gap <= BOUND_DECADES)
    if close.any():
        ax.plot(k, bound, "--", color="tab:red", lw=1.3, label=f"bound {flow.theory.bound}")
        return bound
    at_zero = float(flow.theory.bound_log10[0])
    value = f"10^{at_zero:+.3g}" if math.isfinite(at_zero) else "0"
    ax.plot([], [], " ", label=f"bound {flow.theory.bound}: {value} at k = 0 (far above)")
    return np.full_like(mean, np.nan)


def draw_flow(ax: Any, flow: GradientFlow, title: str | None = None) -> None:
    """One panel: log10 c(k) against k, the cell path, the bound, the horizon, ||dL/dh_k||."""
    k = np.arange(flow.steps)
    curves = flow.log10_norm  # (B, T)
    mean = finite_values(curves.mean(dim=0))
    if flow.batch > 1:
        low, high = finite_values(curves.amin(dim=0)), finite_values(curves.amax(dim=0))
        ax.fill_between(k, low, high, color="tab:blue", alpha=0.2, lw=0, label="batch range")
    label = f"measured ({flow.metric})" + (", batch mean" if flow.batch > 1 else "")
    if flow.estimate == "matrix-free":
        label += f", matrix-free lower bound (moved {flow.estimate_error:.1g} decades last round)"
    ax.plot(k, mean, color="tab:blue", lw=2, label=label)
    bound = _bound(ax, flow, k, mean)
    if flow.cell_path_log10 is not None:
        path = finite_values(flow.cell_path_log10.mean(dim=0))
        ax.plot(k, path, color="tab:green", lw=1.3, label="cell path prod diag(f_t)")
    if flow.horizon < flow.steps:
        ax.axvline(flow.steps - flow.horizon, color="grey", ls=":", lw=1)
        ax.plot([], [], ":", color="grey", label=f"memory horizon {flow.horizon} steps")
    ax.set_ylim(*curve_limits(mean, bound))
    ax.set_xlabel("k (the step the gradient flows back to)")
    ax.set_ylabel("log10 ||dh_T/dh_k||")
    ax.grid(alpha=0.3)
    rate = f"{flow.rate_per_step:+.3g}" if math.isfinite(flow.rate_per_step) else "-inf"
    ax.set_title(title or f"{flow.label}: {flow.verdict}, {rate} decades/step", fontsize=10)
    handles, labels = ax.get_legend_handles_labels()
    if flow.loss_grad_log10 is not None:  # k = 0..T: its own quantity, its own axis
        right = ax.twinx()
        grad = finite_values(flow.loss_grad_log10.reshape(-1, flow.steps + 1).mean(dim=0))
        (line,) = right.plot(np.arange(flow.steps + 1), grad, color="tab:purple", lw=1.3)
        right.set_ylabel("log10 ||dL/dh_k|| (whole model)", color="tab:purple")
        right.tick_params(axis="y", colors="tab:purple")
        handles.append(line)
        labels.append("||dL/dh_k|| (right axis)")
    ax.legend(handles, labels, loc="best", fontsize=7)


def plot_flow(flow: GradientFlow, path: str | Path, title: str | None = None) -> Path:
    """Draw one `GradientFlow` and write it to `path` (.png, .pdf or .svg)."""
    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    draw_flow(ax, flow, title)
    return save(fig, path)


def plot_trace(result: TraceResult, path: str | Path, title: str | None = None) -> Path:
    """Draw every traced layer and direction, forward directions left, reverse ones right."""
    columns = [
        [rec for rec in result.layers if rec.direction == direction]
        for direction in ("forward", "reverse")
    ]
    columns = [column for column in columns if column] or [[]]
    rows = max(1, max(len(column) for column in columns))
    fig, axes = plt.subplots(  # constrained: the title above the panels, never on them
        rows, len(columns), figsize=(6.6 * len(columns), 3.8 * rows), squeeze=False,
        layout="constrained",
    )  # fmt: skip
    for c, column in enumerate(columns):
        for r in range(rows):
            if r < len(column):
                draw_flow(axes[r, c], column[r])
            else:
                axes[r, c].set_visible(False)
    shape = "x".join(str(n) for n in result.input_shape)
    fig.suptitle(title or f"Gradient flow through time, inputs {shape}", fontsize=12)
    return save(fig, path)


def plot_sensitivity(profile: SensitivityProfile, path: str | Path) -> Path:
    """log10 ||dy_T/dx_k|| (or ||dL/dx_k||) against the input step k, batch mean and range."""
    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    k = np.arange(1, profile.steps + 1)
    curves = profile.log10_norm  # (B, T)
    mean = finite_values(curves.mean(dim=0))
    if curves.shape[0] > 1:
        low, high = finite_values(curves.amin(dim=0)), finite_values(curves.amax(dim=0))
        ax.fill_between(k, low, high, color="tab:blue", alpha=0.2, lw=0, label="batch range")
    ax.plot(k, mean, color="tab:blue", lw=2, label="batch mean")
    ax.set_xlabel("input step k")
    ax.set_ylabel(f"log10 ||{profile.quantity}|| ({profile.metric})")
    ax.set_title(f"Input sensitivity {profile.quantity} over T = {profile.steps} steps")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return save(fig, path)
