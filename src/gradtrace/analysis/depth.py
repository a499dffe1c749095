"""Vanishing and exploding gradients through depth: an L-layer MLP, layer by layer.

A deep feed-forward net is the unrolled recurrence with a different weight per step:

    a_l = W_l y_{l-1} + b_l,    y_l = phi(a_l),    l = 1..L,    y_0 = x
    dy_l/dy_{l-1} = diag(phi'(a_l)) W_l

so the backward pass dL/dy_{l-1} = (dy_l/dy_{l-1})^T dL/dy_l is the engine's loss-gradient sweep
with these layer Jacobians, and ||dL/dy_l|| <= ||dL/dy_L|| prod_{m>l} gamma sigma_max(W_m).
The loss is L = (1/2B) sum_b ||y_L - t_b||^2 with Gaussian targets t_b.

Initialisations: "default" is PyTorch's nn.Linear (U(-1/sqrt(H), 1/sqrt(H)) for weights and
biases), "xavier" is Glorot and Bengio (2010) uniform with the activation's gain, "he" is
He et al. (2015) normal with the activation's gain; the last two use zero biases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from gradtrace.core.activations import get_activation
from gradtrace.core.engine import suffix_sum
from gradtrace.core.gradient_profile import loss_gradient_profile
from gradtrace.core.theory import matrix_spectrum
from gradtrace.errors import check

INITS = ("default", "xavier", "he")
_GAIN_NAMES = {"sigmoid": "sigmoid", "tanh": "tanh", "relu": "relu", "linear": "linear"}


@dataclass(frozen=True, eq=False)
class MLP:
    """Weights of an L-layer square MLP: W (L, H, H), b (L, H), and its activation."""

    W: Tensor
    b: Tensor
    activation: str

    @property
    def depth(self) -> int:
        return int(self.W.shape[0])

    @property
    def width(self) -> int:
        return int(self.W.shape[-1])


@dataclass(frozen=True, eq=False)
class DepthProfile:
    """Per-layer gradient norms with the theory beside them.

    Attributes:
        log10_grad_norm: (L+1,) log10 ||dL/dy_l|| for l = 0..L (l = 0 is the input), the
            norm taken over the whole (B, H) batch gradient.
        sigma_max: (L,) largest singular value of each W_l.
        bound_log10: (L+1,) log10 of ||dL/dy_L|| prod_{m>l} gamma sigma_max(W_m).
    """

    activation: str
    init: str
    width: int
    batch: int
    log10_grad_norm: Tensor
    sigma_max: Tensor
    gamma: float
    bound_log10: Tensor

    @property
    def depth(self) -> int:
        return int(self.sigma_max.shape[0])

    def __repr__(self) -> str:
        return (
            f"DepthProfile({self.depth}-layer {self.activation} MLP, {self.init} init, width "
            f"{self.width}: {self.rate_per_layer:+.3g} decades per layer)"
        )

    @property
    def rate_per_layer(self) -> float:
        """Average change of log10 ||dL/dy_l|| per layer going back from the output."""
        g = self.log10_grad_norm
        return float((g[0] - g[-1]) / self.depth) if bool(torch.isfinite(g).all()) else -math.inf

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite numbers become None)."""

        def floats(t: Tensor) -> list[float | None]:
            return [v if math.isfinite(v) else None for v in t.tolist()]

        return {
            "activation": self.activation,
            "init": self.init,
            "layers": self.depth,
            "width": self.width,
            "batch": self.batch,
            "layer": list(range(self.depth + 1)),
            "log10_grad_norm": floats(self.log10_grad_norm),
            "rate_per_layer": self.rate_per_layer,
            "theory": {
                "gamma": self.gamma,
                "sigma_max": floats(self.sigma_max),
                "bound_log10": floats(self.bound_log10),
            },
        }


def init_mlp(
    layers: int,
    width: int,
    activation: str = "sigmoid",
    init: str = "default",
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> MLP:
    """Draw a seeded L-layer MLP of width H with the given initialisation.

    Raises:
        GradtraceError: on layers or width below 1, an unknown activation or init.
    """
    check(layers >= 1, f"`layers` must be at least 1, got {layers}")
    check(width >= 1, f"`width` must be at least 1, got {width}")
    check(init in INITS, f"`init` must be one of {', '.join(INITS)}, got {init!r}")
    get_activation(activation)
    gen = torch.Generator().manual_seed(seed)
    W = torch.empty(layers, width, width, dtype=torch.float64)
    b = torch.zeros(layers, width, dtype=torch.float64)
    gain = torch.nn.init.calculate_gain(_GAIN_NAMES.get(activation, "leaky_relu"))  # type: ignore[arg-type]
    for layer in range(layers):
        if init == "default":
            bound = 1 / math.sqrt(width)
            W[layer].uniform_(-bound, bound, generator=gen)
            b[layer].uniform_(-bound, bound, generator=gen)
        elif init == "xavier":
            torch.nn.init.xavier_uniform_(W[layer], gain=gain, generator=gen)
        else:
            W[layer].normal_(0.0, gain / math.sqrt(width), generator=gen)
    return MLP(W.to(dtype), b.to(dtype), activation)


def mlp_forward(mlp: MLP, x: Tensor) -> tuple[Tensor, Tensor]:
    """Run the MLP on x (B, H); return pre-activations (L, B, H) and outputs y_0..y_L."""
    phi = get_activation(mlp.activation).fn
    pre, outs = [], [x]
    for layer in range(mlp.depth):
        a = outs[-1] @ mlp.W[layer].T + mlp.b[layer]  # (B, H)
        pre.append(a)
        outs.append(phi(a))
    return torch.stack(pre), torch.stack(outs)  # (L, B, H), (L+1, B, H)


def depth_profile(
    mlp: MLP, init: str = "default", *, batch: int = 32, seed: int = 0
) -> DepthProfile:
    """||dL/dy_l|| for every layer of `mlp` on a seeded Gaussian batch, with the bound.

    Raises:
        GradtraceError: if `batch` is below 1.
    """
    check(batch >= 1, f"`batch` must be at least 1, got {batch}")
    gen = torch.Generator().manual_seed(seed + 1)
    H, dtype, device = mlp.width, mlp.W.dtype, mlp.W.device
    x = torch.randn(batch, H, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
    target = torch.randn(batch, H, generator=gen, dtype=torch.float64).to(
        dtype=dtype, device=device
    )
    act = get_activation(mlp.activation)
    pre, outs = mlp_forward(mlp, x)
    jac = act.derivative(pre).unsqueeze(-1) * mlp.W.unsqueeze(1)  # (L, B, H, H): diag(phi') W_l
    grad_last = (outs[-1] - target) / batch  # (B, H): dL/dy_L
    per_sample = loss_gradient_profile(jac, grad_last).log10_norm  # (B, L+1)
    # ||dL/dy_l|| over the whole batch: sqrt(sum_b ||g_b||^2), summed in log space.
    batch_norm = 0.5 * torch.logsumexp(2 * per_sample * math.log(10), dim=0) / math.log(10)
    sigma = torch.tensor([matrix_spectrum(W).sigma_max for W in mlp.W], dtype=torch.float64)
    step = torch.log10(act.gamma * sigma)  # (L,)
    suffix = suffix_sum(step)  # (L,): sum over m > l
    bound = batch_norm[-1] + torch.cat([suffix, torch.zeros(1, dtype=torch.float64)])
    return DepthProfile(
        mlp.activation, init, H, batch, batch_norm.cpu(), sigma, act.gamma, bound.cpu()
    )
