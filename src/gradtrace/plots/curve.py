"""Figure of a contribution curve: log10 c(k) with the theory's bound drawn over it."""

from __future__ import annotations

from pathlib import Path

import torch

from gradtrace.analysis.recurrent import CurveReport
from gradtrace.plots.figure import curve_limits, finite_values, new_figure, save


def plot_curve(report: CurveReport, path: str | Path, title: str | None = None) -> Path:
    """Plot log10 c(k) = log10 ||ds_T/ds_k|| against k, the bound, and the memory horizon."""
    fig, ax = new_figure()
    k = torch.arange(report.steps).numpy()
    curves = finite_values(report.log10_norm.reshape(-1, report.steps))  # gaps where c(k) = 0
    for row in curves[:20] if len(curves) > 1 else []:
        ax.plot(k, row, color="tab:blue", alpha=0.25, lw=0.8)
    mean = finite_values(report.log10_norm.reshape(-1, report.steps).mean(0))
    label = f"measured ({report.metric})" + (", batch mean" if len(curves) > 1 else "")
    ax.plot(k, mean, color="tab:blue", lw=2, label=label)
    bound = finite_values(report.theory.bound_log10)
    ax.plot(k, bound, "--", color="tab:red", lw=1.5, label=f"bound {report.theory.bound}")
    if report.cell_path_log10 is not None:
        path_mean = finite_values(report.cell_path_log10.reshape(-1, report.steps).mean(0))
        ax.plot(k, path_mean, color="tab:green", lw=1.5, label="cell-state path dc_T/dc_k")
    if report.horizon < report.steps:
        ax.axvline(report.steps - report.horizon, color="grey", ls=":", lw=1)
        ax.text(
            report.steps - report.horizon,
            0.02,
            f" horizon {report.horizon}",
            transform=ax.get_xaxis_transform(),
            va="bottom",
            ha="left",
            fontsize=8,
            color="grey",
        )
    ax.set_ylim(*curve_limits(mean, bound))
    ax.set_xlabel("k (the step the gradient flows back to)")
    ax.set_ylabel("log10 ||dh_T / dh_k||")
    name = report.cell + (f" ({report.activation})" if report.activation else "")
    ax.set_title(title or f"{name}: {report.verdict}, {report.rate_per_step:+.3g} decades/step")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    return save(fig, path)
