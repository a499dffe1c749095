"""Figures of the dynamics lab: iterated maps, the Mandelbrot set, fixed points, RNN basins and
gradient cliffs.

Each public function takes one record and a path, draws, and writes PNG, PDF or SVG by the
path's suffix. Nothing is computed here beyond what drawing needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gradtrace.plots.figure import plt, save
from gradtrace.records.cliff import CliffReport, DescentPath
from gradtrace.records.fixed_points import FixedPoints, RNNPortrait
from gradtrace.records.maps import Bifurcation, EscapeImage, Iterates, MapReport

KIND_MARKERS = {"sink": "o", "source": "s", "saddle": "X", "marginal": "D"}
SINK, SOURCE = "tab:blue", "tab:red"
BASIN_COLORS = ("#fbb4ae", "#b3cde3", "#ccebc5", "#decbe4", "#fed9a6", "#ffffcc", "#e5d8bd")


def _draw_map_frame(ax: Any, report: MapReport) -> None:
    x, fx = report.curve.numpy()
    ax.plot(x, fx, color="black", lw=1.5, label=f"f(x) = {report.formula}")
    ax.plot(x, x, color="grey", ls="--", lw=1, label="diagonal x_{t+1} = x_t")
    for cycle in report.fixed_points:
        sink = cycle.kind == "sink"
        ax.plot(
            cycle.points, cycle.points, "o", ms=7, mec=SINK if sink else SOURCE,
            mfc=SINK if sink else "white", label=f"{cycle.kind} x* = {cycle.points[0]:.4g}",
        )  # fmt: skip
    if report.attractor is not None and report.attractor.period > 1:
        points = report.attractor.points
        ax.plot(points, points, "D", ms=5, color=SINK, label=f"attracting {len(points)}-cycle")
    ax.set_xlabel("x_t")
    ax.set_ylabel("x_{t+1}")
    ax.grid(alpha=0.3)


def _draw_cobweb(ax: Any, report: MapReport) -> None:
    _draw_map_frame(ax, report)
    stairs = np.repeat(report.orbit.numpy(), 2)  # (x0, x0), (x0, x1), (x1, x1), (x1, x2), ...
    ax.plot(stairs[:-1], stairs[1:], color="tab:orange", lw=0.9, label="orbit")
    ax.set_title(f"Cobweb from x0 = {report.orbit[0]:.3g}, {len(report.orbit) - 1} steps")
    ax.legend(fontsize=7, loc="best")


def _draw_phase(ax: Any, report: MapReport) -> None:
    _draw_map_frame(ax, report)
    x, fx = report.curve.numpy()
    for i in np.linspace(0, len(x) - 1, 9)[1:-1].astype(int):  # flow direction on the diagonal
        step = 0.04 * (x[-1] - x[0]) * np.sign(fx[i] - x[i])
        if step:
            ax.annotate(
                "", xy=(x[i] + step, x[i] + step), xytext=(x[i], x[i]),
                arrowprops={"arrowstyle": "->", "color": "tab:green", "lw": 1.5},
            )  # fmt: skip
    ax.set_title("Phase plot (arrows: sign of f(x) - x)")
    ax.legend(fontsize=7, loc="best")


def _draw_bifurcation(ax: Any, bif: Bifurcation) -> None:
    params = np.repeat(bif.params.numpy(), bif.states.shape[1])
    ax.plot(params, bif.states.flatten().numpy(), ",", color="black", alpha=0.5, rasterized=True)
    symbol = "r" if bif.family == "logistic" else "c"
    ax.set_xlabel(symbol)
    ax.set_ylabel("states visited after the transient")
    ax.set_title(f"Bifurcation diagram of the {bif.family} map")
    ax.grid(alpha=0.3)


def _draw_iterate(ax: Any, it: Iterates, row: int) -> None:
    x = it.x.numpy()
    ax.plot(x, it.values[row].numpy(), color="tab:purple", lw=1.2)
    ax.plot(x, x, color="grey", ls="--", lw=0.8)
    ax.set_ylim(x[0] - 0.05 * (x[-1] - x[0]), x[-1] + 0.05 * (x[-1] - x[0]))
    ax.set_title(f"y = f^{it.orders[row]}(x)")
    ax.set_xlabel("x")
    ax.grid(alpha=0.3)


def plot_bifurcation(bif: Bifurcation, path: str | Path) -> Path:
    """The states a family settles on, against its parameter."""
    fig, ax = plt.subplots(figsize=(8, 5))
    _draw_bifurcation(ax, bif)
    return save(fig, path)


def plot_map_report(report: MapReport, path: str | Path) -> Path:
    """Cobweb, phase plot and bifurcation diagram (or the orbit) above the iterates f^n."""
    columns = max(3, len(report.iterates.orders))
    fig = plt.figure(figsize=(3.6 * columns, 7.6))
    grid = fig.add_gridspec(2, columns, height_ratios=(1.3, 1))
    top = [fig.add_subplot(grid[0, i * columns // 3 : (i + 1) * columns // 3]) for i in range(3)]
    _draw_cobweb(top[0], report)
    _draw_phase(top[1], report)
    if report.bifurcation is not None:
        _draw_bifurcation(top[2], report.bifurcation)
    else:
        top[2].plot(report.orbit.numpy(), ".-", lw=0.8, ms=3)
        top[2].set(title="Orbit", xlabel="t", ylabel="x_t")
        top[2].grid(alpha=0.3)
    for row in range(len(report.iterates.orders)):
        _draw_iterate(fig.add_subplot(grid[1, row]), report.iterates, row)
    lyapunov = report.lyapunov.value
    fig.suptitle(f"{report.name} map f(x) = {report.formula}: Lyapunov exponent {lyapunov:+.4f}")
    return save(fig, path)


def plot_mandelbrot(image: EscapeImage, path: str | Path) -> Path:
    """Escape time on a log colour scale; members of the set in black."""
    fig, ax = plt.subplots(figsize=(8, 6.4 * image.counts.shape[0] / image.counts.shape[1] + 0.8))
    counts = np.ma.masked_where(image.inside.numpy(), np.log1p(image.counts.numpy()))
    cmap = plt.get_cmap("viridis").with_extremes(bad="black")
    re, im = image.re.numpy(), image.im.numpy()
    shown = ax.imshow(
        counts, cmap=cmap, origin="lower", extent=(re[0], re[-1], im[0], im[-1]),
        interpolation="nearest", aspect="equal",
    )  # fmt: skip
    fig.colorbar(shown, ax=ax, label="log(1 + escape time)", shrink=0.8)
    ax.set_xlabel("Re c")
    ax.set_ylabel("Im c")
    ax.set_title(f"Mandelbrot set (black): z <- z^2 + c bounded for {image.max_iter} steps")
    return save(fig, path)


def _basin_colors(count: int) -> Any:
    from matplotlib.colors import ListedColormap

    colors = [BASIN_COLORS[i % len(BASIN_COLORS)] for i in range(max(count, 1))]
    return ListedColormap(["#d9d9d9", *colors])  # index 0: label -1, no attractor reached


def _draw_fixed_points(ax: Any, portrait: RNNPortrait) -> None:
    for point in portrait.fixed_points.points:
        state = point.state.numpy()
        xy = (state[0], 0.0) if portrait.state_size == 1 else (state[0], state[1])
        face = "black" if point.kind == "sink" else "white"
        ax.plot(*xy, KIND_MARKERS[point.kind], ms=9, mec="black", mfc=face, label=point.kind)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax.legend(
        unique.values(), unique.keys(), fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0)
    )


def plot_rnn_portrait(portrait: RNNPortrait, path: str | Path) -> Path:
    """Basins of attraction (colours, grey: none reached) with the flow F(h) - h on top."""
    axis = portrait.axis.numpy()
    cmap = _basin_colors(len(portrait.attractors))
    if portrait.state_size == 2:
        fig, ax = plt.subplots(figsize=(7, 6.3))
        ax.imshow(
            portrait.labels.numpy() + 1, cmap=cmap, vmin=0, vmax=cmap.N - 1, origin="lower",
            extent=(axis[0], axis[-1], axis[0], axis[-1]), interpolation="nearest",
        )  # fmt: skip
        u, v = portrait.field.numpy()
        ax.streamplot(axis, axis, u, v, color="grey", density=0.9, linewidth=0.6, arrowsize=0.8)
        for orbit in portrait.trajectories.numpy():
            ax.plot(orbit[:, 0], orbit[:, 1], "-", color="tab:blue", lw=1)
            ax.plot(orbit[0, 0], orbit[0, 1], ".", color="tab:blue", ms=6)
        ax.set(xlabel="h_1", ylabel="h_2", xlim=(axis[0], axis[-1]), ylim=(axis[0], axis[-1]))
    else:
        fig, (ax, right) = plt.subplots(1, 2, figsize=(11, 4.5))
        labels = portrait.labels.numpy()[None, :] + 1
        speed = portrait.field[0].numpy()
        span = max(float(np.abs(speed).max()), 1e-3)
        ax.imshow(
            labels, cmap=cmap, vmin=0, vmax=cmap.N - 1, aspect="auto", interpolation="nearest",
            extent=(axis[0], axis[-1], -1.1 * span, 1.1 * span),
        )  # fmt: skip
        ax.plot(axis, speed, color="black", lw=1.5, label="F(h) - h")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set(xlabel="h", ylabel="F(h) - h (velocity)")
        for orbit in portrait.trajectories.numpy():
            right.plot(orbit[:, 0], ".-", lw=0.8, ms=3)
        right.set(xlabel="step t", ylabel="h_t", title="Trajectories from random starts")
        right.grid(alpha=0.3)
    _draw_fixed_points(ax, portrait)
    ax.set_title("Basins of attraction (grey: no attractor reached) and flow")
    return save(fig, path)


def plot_fixed_points(found: FixedPoints, path: str | Path) -> Path:
    """The eigenvalues of each fixed point in the complex plane, with the unit circle."""
    fig, ax = plt.subplots(figsize=(6, 5.5))
    angle = np.linspace(0, 2 * np.pi, 400)
    ax.plot(np.cos(angle), np.sin(angle), color="grey", lw=1, label="|lambda| = 1")
    for i, point in enumerate(found.points):
        eig = point.eigenvalues.numpy()
        ax.plot(
            eig.real, eig.imag, KIND_MARKERS[point.kind], ms=7, alpha=0.8,
            label=f"point {i}: {point.kind}",
        )  # fmt: skip
    ax.set(xlabel="Re lambda", ylabel="Im lambda", aspect="equal")
    ax.set_title(
        f"{len(found.points)} fixed points from {found.starts} starts: eigenvalues of dF/ds"
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save(fig, path)


def _draw_path(ax: Any, path: DescentPath, color: str, lo: float, hi: float) -> None:
    params, losses = path.params.numpy(), path.losses.numpy()
    shown = (params >= lo) & (params <= hi)
    label = "plain descent" if path.clip is None else f"clipped at eta = {path.clip:g}"
    ax.plot(params[shown], losses[shown], "o-", color=color, ms=3.5, lw=0.9, label=label)
    for i in np.flatnonzero(shown[:-1] & ~shown[1:]):  # a step that leaves the picture
        edge = lo if params[i + 1] < lo else hi
        ax.annotate(
            "", xy=(edge, losses[i]), xytext=(params[i], losses[i]),
            arrowprops={"arrowstyle": "->", "color": color, "lw": 1.5},
        )  # fmt: skip
        ax.text(
            edge, losses[i], f"  step {i + 1} lands at b = {params[i + 1]:.3g}\n",
            color=color, fontsize=8, ha="left" if edge == lo else "right", va="bottom",
        )  # fmt: skip


def plot_cliff(report: CliffReport, path: str | Path) -> Path:
    """h_T, L and |dL/db| against b, and the two descents on the loss and over time."""
    sweep = report.sweep
    b = sweep.values.numpy()
    lo, hi = float(b[0]), float(b[-1])
    switch = np.flatnonzero(np.diff(np.sign(sweep.h_final.numpy())) != 0)
    fig, ((ax_h, ax_loss), (ax_grad, ax_time)) = plt.subplots(2, 2, figsize=(12, 8))
    ax_h.plot(b, sweep.h_final.numpy(), color="black")
    ax_h.set(ylabel="h_T", title=f"Final state after T = {report.model.steps} steps")
    ax_loss.plot(b, sweep.loss.numpy(), color="black", lw=1.2, label="L(b)")
    _draw_path(ax_loss, report.plain, "tab:red", lo, hi)
    _draw_path(ax_loss, report.clipped, "tab:green", lo, hi)
    ax_loss.set(ylabel="L = (h_T - target)^2 / 2", title="Loss, with both descents")
    ax_loss.legend(fontsize=8, loc="upper left")
    ax_grad.semilogy(b, np.abs(sweep.grad.numpy()), color="black")
    ax_grad.set(ylabel="|dL/db| (core engine)", title="Gradient norm: the cliff")
    for ax in (ax_h, ax_loss, ax_grad):
        for i in switch:
            ax.axvline(b[i], color="tab:orange", ls=":", lw=1.2)
        ax.set_xlabel("bias b")
        ax.grid(alpha=0.3)
    for run, color in ((report.plain, "tab:red"), (report.clipped, "tab:green")):
        label = "plain" if run.clip is None else f"clipped, eta = {run.clip:g}"
        ax_time.plot(run.params.numpy(), "o-", color=color, ms=3, lw=0.9, label=label)
    ax_time.legend(fontsize=8)
    ax_time.set_yscale("symlog", linthresh=1.0)
    ax_time.set(xlabel="iteration", ylabel="b", title="Bias over the descent (symlog axis)")
    ax_time.grid(alpha=0.3)
    fig.suptitle(
        f"Gradient cliff of h_t = tanh({report.model.w:g} h_(t-1) + b), h_0 = "
        f"{report.model.h0:g}, target {report.model.target:g} (dotted: h_T changes sign)"
    )
    return save(fig, path)
