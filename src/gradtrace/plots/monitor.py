"""Figures of a monitored run: one step's through-time profile, and the run over training.

    plot_monitor_step   one MonitorStep: ||dL/dh_b|| per boundary, split into the recurrent
                        and direct parts, one panel per recurrent layer and direction
    plot_run_profile    a heatmap per layer: boundary b (rows) by training step (columns),
                        colour log10 ||dL/dh_b||
    plot_run_norms      the global gradient norm over training, clipping events marked, the
                        step that went non-finite marked
    plot_run_shares     the recurrent share over training per layer, and the memory horizon of
                        the full traces
    plot_run_lags       the lag shares over training per layer and lag

Presentation only: every number comes from the records.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from gradtrace.plots.figure import plt, save
from gradtrace.records.monitor import MonitorStep, TimeProfile


def _logs(values: Any) -> Any:
    v = np.asarray(values, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log10(v)
    out[~np.isfinite(out)] = np.nan
    return out


def plot_monitor_step(step: MonitorStep, path: str | Path, title: str | None = None) -> Path:
    """The through-time profile of one monitored step (see the module docstring)."""
    profiles = step.profiles
    n = max(1, len(profiles))
    fig, axes = plt.subplots(1, n, figsize=(5.0 * n, 3.6), squeeze=False)
    for ax, prof in zip(axes[0], profiles, strict=False):
        b = np.asarray(prof.boundaries)
        ax.plot(b, _logs(prof.total), "o-", color="tab:blue", label="total dL/dh_b")
        ax.plot(
            b, _logs(prof.recurrent), "s--", color="tab:orange", label="recurrent (through time)"
        )
        ax.plot(b, _logs(prof.direct), "^:", color="tab:green", label="direct (own output)")
        if prof.cell_state is not None:
            ax.plot(
                b,
                _logs(prof.cell_state),
                "d-.",
                color="tab:purple",
                label="cell state dL/dc_b passed on",
            )
        ax.set_title(f"{prof.label}, K = {prof.chunk}")
        ax.set_xlabel("boundary b (steps into the sequence)")
        ax.set_ylabel("log10 norm")
        ax.legend(fontsize=7)
    if not profiles:
        axes[0][0].text(0.5, 0.5, "no recurrent module profiled", ha="center", va="center")
        axes[0][0].set_axis_off()
    fig.suptitle(title or f"step {step.step}: gradient through time")
    return save(fig, path)


def _keys(steps: list[MonitorStep]) -> list[str]:
    seen: dict[str, None] = {}
    for s in steps:
        for prof in s.profiles:
            seen[prof.label] = None
    return list(seen)


def _series(steps: list[MonitorStep], label: str) -> list[tuple[int, TimeProfile]]:
    return [(s.step, p) for s in steps for p in s.profiles if p.label == label]


def draw_profile_heatmap(ax: Any, series: list[tuple[int, TimeProfile]], label: str) -> Any:
    """log10 ||dL/dh_b|| as a map, boundary b by training step; returns the mesh.

    Both axes are in their own units: a cell spans from the midpoint with its neighbour to
    the next, so an uneven schedule (log-spaced steps) or the uneven last boundary (T after
    multiples of the chunk) is drawn at its true place. Every profile's last boundary is its
    last step T and goes in the top row, also when T varies from batch to batch (adding-mean
    draws one length per batch), which is then placed at the longest T.
    """
    interior = sorted({b for _, p in series for b in p.boundaries[:-1]})
    last = max(p.boundaries[-1] for _, p in series)
    rows = [*interior, last]
    grid = np.full((len(rows), len(series)), np.nan)
    for j, (_, prof) in enumerate(series):
        logs = _logs(prof.total)
        for b, v in zip(prof.boundaries[:-1], logs[:-1], strict=True):
            grid[interior.index(b), j] = v
        grid[-1, j] = logs[-1]
    x = np.array([s for s, _ in series], dtype=float)
    image = ax.pcolormesh(
        _edges(x), _edges(np.array(rows, dtype=float)), np.ma.masked_invalid(grid),
        cmap="viridis", shading="flat",
    )  # fmt: skip
    varies = len({p.boundaries[-1] for _, p in series}) > 1
    ax.set_xlabel("training step")
    ax.set_ylabel("boundary b" + (" (top: each batch's T)" if varies else " (time step)"))
    ax.set_title(f"{label}: log10 ||dL/dh_b||")
    return image


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges around sorted centres: the midpoints, and half a gap beyond each end."""
    if len(centres) == 1:
        return np.array([centres[0] - 0.5, centres[0] + 0.5])
    mid = (centres[1:] + centres[:-1]) / 2
    return np.concatenate([[2 * centres[0] - mid[0]], mid, [2 * centres[-1] - mid[-1]]])


def plot_run_profile(steps: list[MonitorStep], path: str | Path) -> Path:
    """Heatmaps of log10 ||dL/dh_b||, boundary by training step, one per layer."""
    labels = _keys(steps)
    n = max(1, len(labels))
    fig, axes = plt.subplots(n, 1, figsize=(8.0, 2.8 * n), squeeze=False)
    for ax, label in zip(axes[:, 0], labels, strict=False):
        image = draw_profile_heatmap(ax, _series(steps, label), label)
        fig.colorbar(image, ax=ax, label="log10 norm")
    if not labels:
        axes[0][0].text(0.5, 0.5, "no recurrent module profiled", ha="center", va="center")
    return save(fig, path)


def plot_run_norms(steps: list[MonitorStep], path: str | Path) -> Path:
    """The global gradient norm over training with clipping and non-finite steps marked."""
    fig, ax = plt.subplots(figsize=(8.0, 3.6))
    x = np.array([s.step for s in steps])
    y = _logs([s.grad_norm for s in steps])
    ax.plot(x, y, "-", color="tab:blue", lw=1.2, label="log10 global gradient norm")
    audits = [(s.step, s.clip) for s in steps if s.clip is not None and s.clip.acted]
    if audits:
        ax.plot(
            [step for step, _ in audits], _logs([clip.norm_before for _, clip in audits]), "v",
            color="tab:red", ms=5, label="clipping acted",
        )  # fmt: skip
        limits = {clip.max_norm for _, clip in audits if clip.max_norm}
        for m in limits:
            if m and math.isfinite(m):
                ax.axhline(math.log10(m), color="tab:red", ls=":", lw=1, label=f"max_norm {m:g}")
    for s in steps:
        if s.nonfinite is not None:
            ax.axvline(s.step, color="black", ls="--", lw=1, label=f"non-finite at step {s.step}")
    ax.set_xlabel("training step")
    ax.set_ylabel("log10 norm")
    ax.set_title("gradient norm over training")
    ax.legend(fontsize=7)
    return save(fig, path)


def plot_run_shares(steps: list[MonitorStep], path: str | Path) -> Path:
    """The recurrent share (and the traces' memory horizons) over training."""
    traced = [s for s in steps if s.trace is not None]
    fig, axes = plt.subplots(1, 2 if traced else 1, figsize=(11.0 if traced else 6.0, 3.6),
                             squeeze=False)  # fmt: skip
    ax = axes[0][0]
    for label in _keys(steps):
        series = _series(steps, label)
        ax.plot(
            [s for s, _ in series], [p.mean_recurrent_share for _, p in series], "-", label=label
        )
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("training step")
    ax.set_ylabel("recurrent share of dL/dh_b")
    ax.set_title("gradient carried back through time")
    ax.legend(fontsize=7)
    if traced:
        ax2 = axes[0][1]
        labels = {rec.label for s in traced for rec in s.trace.layers}  # type: ignore[union-attr]
        for label in sorted(labels):
            pts = [
                (s.step, rec.horizon) for s in traced for rec in s.trace.layers  # type: ignore[union-attr]
                if rec.label == label
            ]  # fmt: skip
            ax2.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=label)
        ax2.set_xlabel("training step")
        ax2.set_ylabel("memory horizon (steps)")
        ax2.set_title("exact trace: memory horizon")
        ax2.legend(fontsize=7)
    return save(fig, path)


def plot_run_lags(steps: list[MonitorStep], path: str | Path) -> Path:
    """Lag shares at the first boundary over training, per layer and lag."""
    fig, ax = plt.subplots(figsize=(8.0, 3.6))
    for label in _keys(steps):
        series = [(s, p) for s, p in _series(steps, label) if p.lag_shares is not None]
        if not series:
            continue
        lags = series[0][1].lags
        for i, d in enumerate(lags):
            ax.plot(
                [s for s, _ in series], [float(p.lag_shares[i, 0]) for _, p in series],  # type: ignore[index]
                "o-", ms=3, label=f"{label}, lag >= {d}",
            )  # fmt: skip
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("training step")
    ax.set_ylabel("share of dL/dh_b from outputs >= d steps later")
    ax.set_title("gradient by time lag (first boundary)")
    ax.legend(fontsize=7)
    return save(fig, path)
