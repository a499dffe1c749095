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

import torch
from torch import Tensor

from gradtrace import budgets
from gradtrace.core import theory
from gradtrace.core.activations import get_activation
from gradtrace.core.engine import suffix_sum
from gradtrace.core.gradient_profile import loss_gradient_profile
from gradtrace.errors import check, check_seed
from gradtrace.records.depth import DepthProfile

INITS = ("default", "xavier", "he")
_GAIN_NAMES = {"sigmoid": "sigmoid", "tanh": "tanh", "relu": "relu", "linear": "linear"}


@dataclass(frozen=True, eq=False)
class MLP:
    """Weights of an L-layer square MLP: W (L, H, H), b (L, H), its activation and init."""

    W: Tensor
    b: Tensor
    activation: str
    init: str = "default"

    @property
    def depth(self) -> int:
        return int(self.W.shape[0])

    @property
    def hidden_size(self) -> int:
        return int(self.W.shape[-1])


def _check_sizes(layers: int, hidden_size: int, batch: int) -> None:
    for name, value in (("layers", layers), ("hidden_size", hidden_size), ("batch", batch)):
        check(
            isinstance(value, int) and not isinstance(value, bool) and value >= 1,
            f"`{name}` must be a whole number of at least 1, got {value!r}",
        )
    L, H, B = layers, hidden_size, batch
    work = budgets.Work(
        memory=8.0 * L * H * (H + 1) + 8.0 * L * B * H * (H + 3),  # weights, layer Jacobians
        flops=L * (25.0 * H**3 + 6.0 * B * H * H),  # one SVD per layer, the sweep
        steps=L * 40.0,  # per layer: init, forward, spectrum, sweep
    )
    budgets.require(work, "`layers` or `hidden_size`")


def init_mlp(
    layers: int,
    hidden_size: int,
    activation: str = "sigmoid",
    init: str = "default",
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> MLP:
    """Draw a seeded L-layer MLP of width H with the given initialisation.

    Raises:
        GradtraceError: on layers or hidden_size below 1, an unknown activation or init, or a
            network over the work budget.
    """
    _check_sizes(layers, hidden_size, 1)
    check(init in INITS, f"`init` must be one of {', '.join(INITS)}, got {init!r}")
    get_activation(activation)
    gen = torch.Generator().manual_seed(check_seed(seed))
    H = hidden_size
    W = torch.empty(layers, H, H, dtype=torch.float64)
    b = torch.zeros(layers, H, dtype=torch.float64)
    gain = torch.nn.init.calculate_gain(_GAIN_NAMES.get(activation, "leaky_relu"))  # type: ignore[arg-type]
    for layer in range(layers):
        if init == "default":
            bound = 1 / math.sqrt(H)
            W[layer].uniform_(-bound, bound, generator=gen)
            b[layer].uniform_(-bound, bound, generator=gen)
        elif init == "xavier":
            torch.nn.init.xavier_uniform_(W[layer], gain=gain, generator=gen)
        else:
            W[layer].normal_(0.0, gain / math.sqrt(H), generator=gen)
    return MLP(W.to(dtype), b.to(dtype), activation, init)


def mlp_forward(mlp: MLP, x: Tensor) -> tuple[Tensor, Tensor]:
    """Run the MLP on x (B, H); return pre-activations (L, B, H) and outputs y_0..y_L."""
    phi = get_activation(mlp.activation).fn
    pre, outs = [], [x]
    for layer in range(mlp.depth):
        a = outs[-1] @ mlp.W[layer].T + mlp.b[layer]  # (B, H)
        pre.append(a)
        outs.append(phi(a))
    return torch.stack(pre), torch.stack(outs)  # (L, B, H), (L+1, B, H)


def profile_mlp(mlp: MLP, *, batch: int = 32, seed: int = 0) -> DepthProfile:
    """||dL/dy_l|| for every layer of `mlp` on a seeded Gaussian batch, with the bound.

    Raises:
        GradtraceError: if `batch` is below 1 or the work is over the budget.
    """
    _check_sizes(mlp.depth, mlp.hidden_size, batch)
    gen = torch.Generator().manual_seed(check_seed(seed) + 1)
    H, dtype, device = mlp.hidden_size, mlp.W.dtype, mlp.W.device
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
    sigma = torch.tensor([theory.matrix_spectrum(W).sigma_max for W in mlp.W], dtype=torch.float64)
    step = torch.log10(act.gamma * sigma)  # (L,)
    suffix = suffix_sum(step)  # (L,): sum over m > l
    bound = batch_norm[-1] + torch.cat([suffix, torch.zeros(1, dtype=torch.float64)])
    g = batch_norm.cpu().to(torch.float64)
    # The depth curve read as a curve through time: n = L - l layers back from the output.
    judgement = theory.judge(g[:-1] - g[-1])
    rate = float((g[0] - g[-1]) / mlp.depth) if bool(torch.isfinite(g).all()) else -math.inf
    return DepthProfile(
        mlp.activation, mlp.init, H, batch, g, sigma, act.gamma, bound.cpu(), rate,
        judgement.verdict,
    )  # fmt: skip


def depth_profile(
    layers: int = 20,
    hidden_size: int = 64,
    activation: str = "sigmoid",
    init: str = "default",
    *,
    batch: int = 32,
    seed: int = 0,
) -> DepthProfile:
    """Per-layer gradient norms of a freshly drawn MLP: `profile_mlp(init_mlp(...))`.

    Example:
        >>> depth_profile(30, 64, "sigmoid").verdict
        'vanishing'

    Raises:
        GradtraceError: on a bad size, activation or init, or a network over the work budget.
    """
    _check_sizes(layers, hidden_size, batch)
    mlp = init_mlp(layers, hidden_size, activation, init, seed=seed)
    return profile_mlp(mlp, batch=batch, seed=seed)
