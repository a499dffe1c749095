"""The depth panel: per-layer gradient norms ||dL/dy_l|| of a freshly drawn MLP.

One update is `gradtrace.analysis.depth.depth_profile` (what `gradtrace mlp` runs): an L-layer
square MLP of width H with the chosen activation and initialisation, a seeded Gaussian batch
and a mean-square loss; the norm at every layer with the bound
||dL/dy_L|| prod_{m>l} gamma sigma_max(W_m) beside it. Float64.
"""

from __future__ import annotations

from typing import Any

from gradtrace.analysis.depth import INITS, depth_profile
from gradtrace.core.activations import ACTIVATIONS
from gradtrace.explorer.jsonable import floats, number
from gradtrace.explorer.params import Param, choice, integer

PARAMS: tuple[Param, ...] = (
    integer("layers", 20, 1, 100, "depth L"),
    integer("hidden_size", 64, 1, 128, "width H"),
    choice("activation", "sigmoid", ACTIVATIONS, "activation phi"),
    choice("init", "default", INITS, "initialisation"),
    integer("batch", 32, 1, 32, "batch B"),
    integer("seed", 0, 0, 1_000_000, "seed"),
)


def depth_panel(
    *, layers: int, hidden_size: int, activation: str, init: str, batch: int, seed: int
) -> dict[str, Any]:
    """log10 ||dL/dy_l|| for l = 0..L with its bound, sigma_max of each layer, the verdict.

    Returns:
        A JSON-able dict: "layer" (0..L, 0 the input), "log10_grad" and "bound_log10"
        (L + 1 each), "sigma_max" (L), "gamma", "rate_per_layer", "verdict", "command".

    Raises:
        GradtraceError: as `depth_profile`.
    """
    profile = depth_profile(layers, hidden_size, activation, init, batch=batch, seed=seed)
    return {
        "layer": list(range(layers + 1)),
        "log10_grad": floats(profile.log10_grad_norm),
        "bound_log10": floats(profile.bound_log10),
        "sigma_max": floats(profile.sigma_max),
        "gamma": profile.gamma,
        "rate_per_layer": number(profile.rate_per_layer),
        "verdict": profile.verdict,
        "command": (
            f"gradtrace mlp --layers {layers} --width {hidden_size} --activation {activation} "
            f"--init {init} --batch {batch} --seed {seed}"
        ),
    }
