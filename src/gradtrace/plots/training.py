"""Figures of training runs: one run's learning curve beside its gradient picture, and several
runs' learning curves and contribution curves side by side (the reproduction's figures).

A run's figure has three panels: the test loss (or accuracy) against the step with the task's
trivial baseline, the raw gradient norm with the clipping threshold, and the exact contribution
curve log10 c(k) of the first recurrent layer before and after training, with the memory
horizons and the task's dependency length marked.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gradtrace.plots.figure import finite_values, plt, save
from gradtrace.records.training import TrainRun


def _label(run: TrainRun) -> str:
    c = run.config
    label = f"{c['model']} seed {c['seed']}"
    return label + (" reversed" if c.get("reverse") else "") + (f" clip {c['clip']}")


def draw_learning(ax: Any, run: TrainRun, label: str | None = None, color: Any = None) -> None:
    """The test metric against the step, the baseline dotted."""
    steps, values = run.curves["eval_step"], run.curves["test_loss"]
    ax.plot(steps, values, "-", color=color, lw=1.5, label=label or _label(run))
    if run.status == "diverged" and run.diverged_step is not None:
        ax.axvline(run.diverged_step, color=color or "tab:red", ls="--", lw=1)
    ax.set_xlabel("training step")
    ax.set_ylabel("test loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)


def draw_exact(ax: Any, run: TrainRun, color: Any = None, tag: str = "") -> None:
    """log10 c(k) of the first recurrent layer before (dashed) and after (solid) training."""
    for flow, style, when in ((run.before, "--", "before"), (run.after, "-", "after")):
        if flow is None:
            continue
        mean = finite_values(flow.log10_norm.mean(dim=0))
        k = np.arange(flow.steps) - flow.steps  # steps back from the end: -T .. -1
        ax.plot(k, mean, style, color=color, lw=1.4, label=f"{tag}{when} (horizon {flow.horizon})")
    ax.set_xlabel("k - T (steps back from the last one)")
    ax.set_ylabel("log10 ||dh_T/dh_k||")
    ax.grid(alpha=0.3)


def plot_train_run(run: TrainRun, path: str | Path) -> Path:
    """Draw one run: learning curve, gradient norm, contribution curves before and after."""
    fig, axes = plt.subplots(1, 3, figsize=(15.0, 4.0))
    draw_learning(axes[0], run)
    baseline = run.metrics.get("baseline", math.nan)
    if math.isfinite(baseline):
        axes[0].axhline(baseline, color="grey", ls=":", label=f"trivial baseline {baseline:.3g}")
    axes[0].legend(fontsize=7)
    axes[0].set_title(f"{run.config['task']} T={run.config['length']}: {run.status}")
    norms = np.asarray(run.curves["grad_norm"], dtype=float)
    norms[~np.isfinite(norms)] = np.nan  # gaps where the norm overflowed
    axes[1].semilogy(run.curves["step"], norms, lw=0.8, label="raw gradient norm")
    if run.config.get("clip") != "none":
        axes[1].axhline(run.config["max_norm"], color="tab:red", ls=":", label="clip threshold")
    axes[1].set_xlabel("training step")
    axes[1].legend(fontsize=7)
    axes[1].grid(alpha=0.3)
    axes[1].set_title("gradient norm before clipping")
    draw_exact(axes[2], run)
    _dependency(axes[2], run)
    axes[2].legend(fontsize=7)
    axes[2].set_title("exact gradient flow through time")
    return save(fig, path)


def _dependency(ax: Any, run: TrainRun, color: Any = "grey", tag: str = "") -> None:
    """The task's dependency as a line at k - T = -dependency, where the curves reach it;
    beyond the steps measured, named in the legend only (a line there would lie outside
    every curve: adding-mean's test sequences may be shorter than its longest dependency)."""
    dependency = run.metrics.get("dependency", math.nan)
    if not math.isfinite(dependency):
        return
    measured = max((f.steps for f in (run.before, run.after) if f is not None), default=0)
    label = f"{tag}dependency {dependency:g}"
    if dependency <= measured:
        ax.axvline(-dependency, color=color, ls=":", lw=1, label=label)
    else:
        ax.plot([], [], color=color, ls=":", lw=1, label=f"{label} (> {measured} steps measured)")


def plot_runs(runs: Sequence[TrainRun], path: str | Path, title: str) -> Path:
    """Several runs of one experiment: learning curves left, contribution curves right."""
    fig, axes = plt.subplots(1, 2, figsize=(12.0, 4.2))
    colors = plt.get_cmap("tab10")
    for i, run in enumerate(runs):
        draw_learning(axes[0], run, color=colors(i % 10))
        draw_exact(axes[1], run, color=colors(i % 10), tag=f"{_label(run)}: ")
    if runs:
        baseline = runs[0].metrics.get("baseline", math.nan)
        if math.isfinite(baseline):
            axes[0].axhline(baseline, color="grey", ls=":", label=f"baseline {baseline:.3g}")
    dependencies = [run.metrics.get("dependency", math.nan) for run in runs]
    several = len(set(dependencies)) > 1  # reversal changes it: each run's, in its colour
    for i, run in enumerate(runs):
        if dependencies[i] not in dependencies[:i]:
            color, tag = (colors(i % 10), f"{_label(run)}: ") if several else ("grey", "")
            _dependency(axes[1], run, color=color, tag=tag)
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=6)
    fig.suptitle(title, fontsize=11)
    return save(fig, path)
