"""Figure of gradient norms through the layers of an MLP, with the bound."""

from __future__ import annotations

from pathlib import Path

import torch

from gradtrace.analysis.depth import DepthProfile
from gradtrace.plots.figure import new_figure, save


def plot_depth(profile: DepthProfile, path: str | Path) -> Path:
    """Plot log10 ||dL/dy_l|| against the layer l, with the bound from gamma sigma_max."""
    fig, ax = new_figure()
    layers = torch.arange(profile.depth + 1).numpy()
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
        f"{profile.rate_per_layer:+.3g} decades/layer"
    )
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    return save(fig, path)
