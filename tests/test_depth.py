"""Tests for gradtrace.analysis.depth: per-layer gradient norms of a deep MLP.

Reference: torch.autograd on the same MLP forward pass (retain_grad on every layer's output y_l)
with the same seeded batch and loss L = (1/2B) sum_b ||y_L - t_b||^2, where x and then t are
drawn N(0, 1) from a generator seeded with seed + 1. The norms agree to 1e-10 in log10 (about
2e-10 relative) in float64. The bound ||dL/dy_L|| prod_{m>l} gamma sigma_max(W_m) is recomputed
from torch.linalg.svdvals and never exceeded (1e-9 in log10).
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import Tensor

from gradtrace.analysis.depth import INITS, MLP, depth_profile, init_mlp, mlp_forward, profile_mlp
from gradtrace.core.activations import ACTIVATIONS, get_activation
from gradtrace.errors import GradtraceError
from gradtrace.records import DepthProfile

DTYPE = torch.float64
LAYERS, WIDTH, BATCH, SEED = 12, 16, 8, 3


def autograd_layer_norms(mlp: MLP, batch: int, seed: int) -> Tensor:
    """log10 ||dL/dy_l|| over the whole (B, H) gradient for l = 0..L, by autograd."""
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(batch, mlp.hidden_size, generator=gen, dtype=DTYPE)
    target = torch.randn(batch, mlp.hidden_size, generator=gen, dtype=DTYPE)
    phi = get_activation(mlp.activation).fn
    outputs = [x.requires_grad_(True)]
    for layer in range(mlp.depth):
        outputs.append(phi(outputs[-1] @ mlp.W[layer].T + mlp.b[layer]))
        outputs[-1].retain_grad()
    loss = (outputs[-1] - target).pow(2).sum() / (2 * batch)
    loss.backward()
    return torch.stack([torch.log10(y.grad.norm()) for y in outputs])  # (L+1,)


@pytest.mark.parametrize("init", INITS)
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_layer_norms_equal_autograd_and_stay_below_the_bound(activation: str, init: str) -> None:
    mlp = init_mlp(LAYERS, WIDTH, activation, init, seed=SEED)
    profile = profile_mlp(mlp, batch=BATCH, seed=SEED)
    expected = autograd_layer_norms(mlp, BATCH, SEED)
    assert profile.log10_grad_norm.shape == (LAYERS + 1,)
    torch.testing.assert_close(profile.log10_grad_norm, expected, atol=1e-10, rtol=0)

    gamma = ACTIVATIONS[activation].gamma
    sigma = torch.linalg.svdvals(mlp.W)[:, 0]  # (L,)
    torch.testing.assert_close(profile.sigma_max, sigma, atol=1e-12, rtol=1e-12)
    steps = torch.log10(gamma * sigma)
    bound = torch.stack([expected[-1] + steps[layer:].sum() for layer in range(LAYERS + 1)])
    torch.testing.assert_close(profile.bound_log10, bound, atol=1e-10, rtol=0)
    assert float((profile.log10_grad_norm - profile.bound_log10).max()) <= 1e-9
    assert profile.gamma == gamma
    assert (profile.depth, profile.width, profile.batch) == (LAYERS, WIDTH, BATCH)
    assert (mlp.init, profile.init, profile.activation) == (init, init, activation)


def test_sigmoid_default_init_vanishes_over_30_layers() -> None:
    # sigmoid' <= 1/4 and PyTorch's default weights have sigma_max ~ 2/sqrt(3) at H = 64, so
    # each layer at least halves the gradient: more than 9 decades over 30 layers.
    profile = depth_profile(30, 64, "sigmoid", "default", seed=0)  # drawn from scratch
    assert profile == profile_mlp(init_mlp(30, 64, "sigmoid", "default", seed=0))
    g = profile.log10_grad_norm
    assert profile.rate_per_layer == pytest.approx(float(g[0] - g[-1]) / 30, rel=1e-12)
    assert profile.rate_per_layer < -0.3
    assert bool((g[1:] > g[:-1]).all())  # shrinks at every layer going back
    assert float(g[-1] - g[0]) > 9
    assert profile.verdict == "vanishing"


def test_mlp_forward_returns_pre_activations_and_outputs() -> None:
    mlp = init_mlp(3, 4, "tanh", seed=1)
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(0), dtype=DTYPE)
    pre, outs = mlp_forward(mlp, x)
    assert pre.shape == (3, 2, 4)
    assert outs.shape == (4, 2, 4)
    assert torch.equal(outs[0], x)
    y = x
    for layer in range(3):
        a = torch.einsum("ij,bj->bi", mlp.W[layer], y) + mlp.b[layer]
        torch.testing.assert_close(pre[layer], a, atol=1e-14, rtol=0)
        y = torch.tanh(a)
    torch.testing.assert_close(outs[-1], y, atol=1e-14, rtol=0)


# ---------------------------------------------------------------- initialisations


def test_default_init_is_pytorch_linear_uniform() -> None:
    mlp = init_mlp(20, 64, "sigmoid", "default", seed=0)
    bound = 1 / math.sqrt(64)
    for t in (mlp.W, mlp.b):
        assert float(t.abs().max()) <= bound
        assert float(t.abs().max()) > 0.99 * bound  # 82,000 draws fill the interval
    # U(-a, a) has variance a^2 / 3; 81,920 weights give a relative standard error of 0.4 %
    # on the sample variance, so 3 % is over seven of them.
    assert float(mlp.W.var()) == pytest.approx(bound**2 / 3, rel=0.03)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "linear", "leaky_relu"])
def test_xavier_and_he_scale_with_the_activation_gain(activation: str) -> None:
    H, L = 64, 20
    gain = torch.nn.init.calculate_gain(activation)  # type: ignore[arg-type]  # leaky: 0.01
    xavier = init_mlp(L, H, activation, "xavier", seed=0)
    he = init_mlp(L, H, activation, "he", seed=0)
    # Glorot: U(-a, a), a = gain sqrt(6 / (fan_in + fan_out)), variance gain^2 / H
    a = gain * math.sqrt(6 / (2 * H))
    assert float(xavier.W.abs().max()) <= a
    # He: N(0, gain^2 / H). Both variances over 81,920 entries: relative standard error
    # 0.4 % (uniform) and 0.5 % (normal), so 3 % is six of them or more.
    assert float(xavier.W.var()) == pytest.approx(gain**2 / H, rel=0.03)
    assert float(he.W.var()) == pytest.approx(gain**2 / H, rel=0.03)
    assert float(xavier.b.abs().max()) == float(he.b.abs().max()) == 0.0


@pytest.mark.parametrize("init", INITS)
def test_init_is_seeded(init: str) -> None:
    first = init_mlp(4, 8, "tanh", init, seed=7)
    assert torch.equal(first.W, init_mlp(4, 8, "tanh", init, seed=7).W)
    assert not torch.equal(first.W, init_mlp(4, 8, "tanh", init, seed=8).W)
    assert init_mlp(4, 8, "tanh", init, seed=7, dtype=torch.float32).W.dtype == torch.float32


# ---------------------------------------------------------------- record and bad input


def test_to_dict_is_strict_json() -> None:
    profile = profile_mlp(init_mlp(5, 8, "relu", "he", seed=2), batch=4)
    record = json.loads(json.dumps(profile.to_dict(), allow_nan=False))
    assert record["format"] == "gradtrace.depth_profile/1"
    assert record["sigma_max"]["shape"] == [5]  # one per layer
    assert record["log10_grad_norm"]["shape"] == [6]  # layers l = 0..5
    assert record["log10_grad_norm"]["data"] == profile.log10_grad_norm.tolist()
    assert record["bound_log10"]["data"] == profile.bound_log10.tolist()
    assert record["sigma_max"]["data"] == profile.sigma_max.tolist()
    assert record["gamma"] == 1.0
    assert record["rate_per_layer"] == profile.rate_per_layer
    assert record["verdict"] == profile.verdict
    assert DepthProfile.from_dict(record) == profile
    assert (record["activation"], record["init"], record["width"], record["batch"]) == (
        "relu",
        "he",
        8,
        4,
    )


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: init_mlp(0, 8), r"`layers` must be a whole number of at least 1, got 0"),
        (lambda: init_mlp(3, 0), r"`hidden_size` must be a whole number of at least 1, got 0"),
        (lambda: init_mlp(3, 8, init="lecun"), r"`init` must be one of default, xavier, he"),
        (lambda: init_mlp(3, 8, "softsign"), r"`activation` must be one of"),
        (
            lambda: profile_mlp(init_mlp(3, 8), batch=0),
            r"`batch` must be a whole number of at least 1, got 0",
        ),
        (
            lambda: depth_profile(3, 8, batch=0),
            r"`batch` must be a whole number of at least 1, got 0",
        ),
    ],
    ids=[
        "layers-0",
        "hidden-size-0",
        "unknown-init",
        "unknown-activation",
        "batch-0",
        "from-scratch-batch-0",
    ],
)
def test_bad_input_raises_naming_the_argument(call: object, match: str) -> None:
    with pytest.raises(GradtraceError, match=match):
        call()  # type: ignore[operator]
