"""Figure of gradient norms through the layers of an MLP, with the bound."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gradtrace.plots.figure import plt, save
from gradtrace.records.depth import DepthProfile


def plot_depth(profile: DepthProfile, path: str | Path) -> Path:
    """Plot log10 ||dL/dy_l|| against the layer l, with the bound from gamma sigma_max."""
    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    layers = np.arange(profile.depth + 1)
    ax.plot(layers, profile.log10_grad_norm.numpy(), "o-", color="tab:blue", label="measured")
    ax.plot(
        layers,
        profile.bound_log10.numpy(),
        "--",
        color="tab:red",
        label="bound ||dL/dy_L|| prod gamma sigma_max(W_m)",
    )
    ax.set_xlabel("layer l (0 = input, L = output)")
    ax.set_ylabel("log10 ||dL/dy_l||")
    ax.set_title(
        f"{profile.depth}-layer {profile.activation} MLP, {profile.init} init: "
        f"{profile.verdict}, {profile.rate_per_layer:+.3g} decades/layer"
    )
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    return save(fig, path)
