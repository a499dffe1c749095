"""Figure of a trace: one panel per module, layer and direction, log10 c(k) under its bound."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from gradtrace.plots.figure import curve_limits, finite_values, save
from gradtrace.tracing.records import LayerTrace, SensitivityProfile, TraceResult

import matplotlib.pyplot as plt  # isort: skip  (after figure, which selects the Agg backend)


def _panel(ax: Any, rec: LayerTrace) -> None:
    k = np.arange(rec.steps)
    curves = rec.log10_norm  # (B, T)
    mean = finite_values(curves.mean(dim=0))
    if rec.batch > 1:
        low, high = finite_values(curves.amin(dim=0)), finite_values(curves.amax(dim=0))
        ax.fill_between(k, low, high, color="tab:blue", alpha=0.2, lw=0, label="batch range")
    label = "measured" + (", batch mean" if rec.batch > 1 else "")
    ax.plot(k, mean, color="tab:blue", lw=2, label=label)
    bound = finite_values(rec.bound_log10)
    ax.plot(k, bound, "--", color="tab:red", lw=1.3, label=f"bound {rec.bound}")
    if rec.cell_path_log10 is not None:
        path = finite_values(rec.cell_path_log10.mean(dim=0))
        ax.plot(k, path, color="tab:green", lw=1.3, label="cell path prod diag(f_t)")
    if rec.loss_grad_log10 is not None:  # k = 0..T: one point more than the curve
        grad = finite_values(rec.loss_grad_log10.reshape(-1, rec.steps + 1).mean(dim=0))
        ax.plot(
            np.arange(rec.steps + 1),
            grad,
            color="tab:purple",
            lw=1.3,
            label="||dL/dh_k|| (whole model)",
        )
    if rec.horizon < rec.steps:
        ax.axvline(rec.steps - rec.horizon, color="grey", ls=":", lw=1, label="memory horizon")
    ax.set_ylim(*curve_limits(mean, bound))
    rate = f"{rec.rate_per_step:+.3g}" if math.isfinite(rec.rate_per_step) else "-inf"
    ax.set_title(f"{rec.label}: {rec.verdict}, {rate} decades/step", fontsize=10)
    ax.set_xlabel("k (step of this direction)")
    ax.set_ylabel(f"log10 ||dh_T/dh_k|| ({rec.metric})")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=7)


def plot_trace(result: TraceResult, path: str | Path, title: str | None = None) -> Path:
    """Draw every traced layer and direction, forward directions left, reverse ones right.

    Args:
        result: A `TraceResult`.
        path: Where to write the figure (.png, .pdf or .svg).
        title: The figure's title; by default the metric and input shape.

    Returns:
        The path written.
    """
    reverse = any(rec.direction == "reverse" for rec in result.layers)
    cols = 2 if reverse else 1
    rows = max(1, math.ceil(len(result.layers) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(6.4 * cols, 3.6 * rows), squeeze=False)
    for ax, rec in zip(axes.flat, result.layers, strict=False):
        _panel(ax, rec)
    for ax in list(axes.flat)[len(result.layers) :]:
        ax.set_visible(False)
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
