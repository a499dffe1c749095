"""Tests for gradtrace.core.weights and gradtrace.cells.random_weights.

Each constructor is checked on the spectral property it promises, against torch.linalg in
float64: eigenvalues of V diag(lambda) V^-1 (1e-8, V's conditioning costs digits), spectral
radius R (1e-10), Q^T Q = S^2 I (1e-12 S^2), S I exactly, and the entry variance G^2 / H of a
Gaussian matrix within a stated statistical tolerance. SPEC strings are parsed as documented and
malformed ones refused with an error that names `--spectrum`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from gradtrace.cells import GRUWeights, LSTMWeights, RNNWeights
from gradtrace.cells.lstm import lstm_weights_from_torch
from gradtrace.cells.random_weights import GATES, random_weights, recurrent_blocks
from gradtrace.core import weights as w
from gradtrace.core.weights import Spectrum, parse_spectrum
from gradtrace.errors import GradtraceError

DTYPE = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _eigenvalues(W: Tensor) -> Tensor:
    """Eigenvalues of W, checked to be real (1e-8), sorted ascending."""
    lam = torch.linalg.eigvals(W.to(DTYPE))
    assert float(lam.imag.abs().max()) < 1e-8
    return torch.sort(lam.real).values


# ---------------------------------------------------------------- constructors


def test_with_eigenvalues_has_exactly_those_eigenvalues() -> None:
    lam = torch.tensor([-0.7, 0.1, 0.5, 2.0, 3.9, 13.0], dtype=DTYPE)
    W = w.with_eigenvalues(lam, _gen())
    assert W.shape == (6, 6)
    assert W.dtype == DTYPE
    torch.testing.assert_close(_eigenvalues(W), lam, atol=1e-8, rtol=1e-8)
    # Random eigenvectors: far from normal (for a normal matrix sigma_max = rho = 13).
    assert float(torch.linalg.svdvals(W)[0]) > 13 * (1 + 1e-3)


@pytest.mark.parametrize(("low", "high"), [(0.0, 4.0), (4.0, 14.0), (-1.0, 1.0)])
def test_eig_uniform_has_real_eigenvalues_in_the_interval(low: float, high: float) -> None:
    W = w.eig_uniform(8, low, high, _gen(3), DTYPE)
    lam = _eigenvalues(W)
    assert bool((lam >= low - 1e-8).all() and (lam < high + 1e-8).all())
    # The eigenvalues are the uniform draw made first from the same generator.
    drawn = low + (high - low) * torch.rand(8, generator=_gen(3), dtype=DTYPE)
    torch.testing.assert_close(lam, torch.sort(drawn).values, atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("rho", [0.0, 0.5, 1.0, 3.7])
def test_radius_is_exact(rho: float) -> None:
    W = w.radius(10, rho, _gen(1), DTYPE)
    assert float(torch.linalg.eigvals(W).abs().max()) == pytest.approx(rho, abs=1e-10)


@pytest.mark.parametrize("scale", [1.0, 0.9, 2.5])
def test_orthogonal_times_scale(scale: float) -> None:
    H = 12
    W = w.orthogonal(H, scale, _gen(2), DTYPE)
    eye = torch.eye(H, dtype=DTYPE)
    torch.testing.assert_close(W.T @ W, scale**2 * eye, atol=1e-12 * scale**2, rtol=0)
    # all singular values equal the scale: sigma_max = rho = scale
    svd = torch.linalg.svdvals(W)
    torch.testing.assert_close(svd, torch.full((H,), scale, dtype=DTYPE), atol=1e-12, rtol=0)


def test_identity_times_scale_is_exact() -> None:
    assert torch.equal(w.identity(4, 1.0, DTYPE), torch.eye(4, dtype=DTYPE))
    assert torch.equal(w.identity(3, 0.5, torch.float32), 0.5 * torch.eye(3))


def test_gaussian_entries_have_variance_gain_squared_over_h() -> None:
    # H^2 = 160,000 entries: the sample variance has relative standard error sqrt(2 / H^2)
    # = 0.35 %, so 2 % is more than five standard errors; the sample mean has standard error
    # G / H / H = 1.9e-5 and 2e-4 is ten of them.
    H, G = 400, 3.0
    W = w.gaussian(H, G, _gen(4), DTYPE)
    assert float(W.var()) == pytest.approx(G**2 / H, rel=0.02)
    assert abs(float(W.mean())) < 2e-4


CONSTRUCTORS: list[tuple[str, Callable[[torch.Generator], Tensor]]] = [
    ("with_eigenvalues", lambda g: w.with_eigenvalues(torch.arange(1.0, 6.0), g)),
    ("eig_uniform", lambda g: w.eig_uniform(5, 0.0, 4.0, g, DTYPE)),
    ("radius", lambda g: w.radius(5, 1.1, g, DTYPE)),
    ("orthogonal", lambda g: w.orthogonal(5, 1.0, g, DTYPE)),
    ("gaussian", lambda g: w.gaussian(5, 2.0, g, DTYPE)),
]


@pytest.mark.parametrize(("name", "make"), CONSTRUCTORS, ids=[n for n, _ in CONSTRUCTORS])
def test_same_seed_same_matrix_other_seed_other_matrix(
    name: str, make: Callable[[torch.Generator], Tensor]
) -> None:
    assert torch.equal(make(_gen(7)), make(_gen(7)))
    assert not torch.equal(make(_gen(7)), make(_gen(8)))


def test_float32_is_the_float64_matrix_rounded() -> None:
    W64 = w.eig_uniform(6, 0.0, 4.0, _gen(5), DTYPE)
    W32 = w.eig_uniform(6, 0.0, 4.0, _gen(5), torch.float32)
    assert W32.dtype == torch.float32
    assert torch.equal(W32, W64.to(torch.float32))


# ---------------------------------------------------------------- SPEC strings

ACCEPTED = [
    ("eig-uniform:0:4", Spectrum("eig-uniform", (0.0, 4.0))),
    ("eig-uniform:-1.5:2e1", Spectrum("eig-uniform", (-1.5, 20.0))),
    ("radius:1.5", Spectrum("radius", (1.5,))),
    ("radius:0", Spectrum("radius", (0.0,))),
    ("orthogonal", Spectrum("orthogonal", (1.0,))),
    ("orthogonal:0.9", Spectrum("orthogonal", (0.9,))),
    ("identity", Spectrum("identity", (1.0,))),
    ("identity:2", Spectrum("identity", (2.0,))),
    ("gaussian:3", Spectrum("gaussian", (3.0,))),
    ("  gaussian:3 ", Spectrum("gaussian", (3.0,))),
]


@pytest.mark.parametrize(("spec", "expected"), ACCEPTED, ids=[s.strip() for s, _ in ACCEPTED])
def test_parse_spectrum_accepts_the_documented_forms(spec: str, expected: Spectrum) -> None:
    assert parse_spectrum(spec) == expected


REJECTED = [
    ("spiral:2", "must be one of"),
    ("", "must be one of"),
    ("Orthogonal", "must be one of"),
    ("eig-uniform", "with finite numbers"),
    ("eig-uniform:1", "with finite numbers"),
    ("eig-uniform:1:2:3", "with finite numbers"),
    ("radius", "with finite numbers"),
    ("gaussian", "with finite numbers"),
    ("orthogonal:1:2", "with finite numbers"),
    ("radius:abc", "must have numbers"),
    ("orthogonal:", "must have numbers"),
    ("eig-uniform:0:x", "must have numbers"),
    ("eig-uniform:4:0", "needs LO < HI"),
    ("eig-uniform:2:2", "needs LO < HI"),
    ("radius:-1", "needs a value >= 0"),
    ("gaussian:-0.5", "needs a value >= 0"),
    ("radius:inf", "with finite numbers"),
    ("radius:1e400", "with finite numbers"),
    ("gaussian:nan", "with finite numbers"),
    ("eig-uniform:-inf:0", "with finite numbers"),
]


@pytest.mark.parametrize(("spec", "words"), REJECTED, ids=[s or "empty" for s, _ in REJECTED])
def test_parse_spectrum_refuses_malformed_specs(spec: str, words: str) -> None:
    with pytest.raises(GradtraceError, match=r"^`--spectrum` ") as err:
        parse_spectrum(spec)
    message = str(err.value)
    assert words in message
    assert repr(spec) in message  # shows what was received
    assert "\n" not in message


@pytest.mark.parametrize(
    ("spec", "reference"),
    [
        ("eig-uniform:0:4", lambda g: w.eig_uniform(5, 0.0, 4.0, g, DTYPE)),
        ("radius:0.8", lambda g: w.radius(5, 0.8, g, DTYPE)),
        ("orthogonal:1.2", lambda g: w.orthogonal(5, 1.2, g, DTYPE)),
        ("identity:0.5", lambda g: w.identity(5, 0.5, DTYPE)),
        ("gaussian:2", lambda g: w.gaussian(5, 2.0, g, DTYPE)),
    ],
    ids=["eig-uniform", "radius", "orthogonal", "identity", "gaussian"],
)
def test_spectrum_build_calls_its_constructor(
    spec: str, reference: Callable[[torch.Generator], Tensor]
) -> None:
    assert torch.equal(parse_spectrum(spec).build(5, _gen(9), DTYPE), reference(_gen(9)))


# ---------------------------------------------------------------- random_weights


@pytest.mark.parametrize("cell", list(GATES))
def test_default_init_is_pytorch_uniform_and_seeded(cell: str) -> None:
    H, I = 16, 3
    weights = random_weights(cell, H, I, seed=4)
    again = random_weights(cell, H, I, seed=4)
    other = random_weights(cell, H, I, seed=5)
    gates = GATES[cell]
    assert weights.W_hh.shape == (gates * H, H)
    assert torch.equal(weights.W_hh, again.W_hh)
    assert not torch.equal(weights.W_hh, other.W_hh)
    # U(-1/sqrt(H), 1/sqrt(H)) for every recurrent and input weight
    bound = 1 / math.sqrt(H)
    W_in = weights.W_hx if isinstance(weights, RNNWeights) else weights.W_ih
    assert W_in.shape == (gates * H, I)
    for tensor in (weights.W_hh, W_in):
        assert float(tensor.abs().max()) <= bound
        assert float(tensor.abs().max()) > 0.9 * bound  # and it fills the interval


@pytest.mark.parametrize(
    ("cell", "kind", "names"),
    [
        ("rnn", RNNWeights, ["W_hh"]),
        ("lstm", LSTMWeights, ["W_hi", "W_hf", "W_hg", "W_ho"]),
        ("gru", GRUWeights, ["W_hr", "W_hz", "W_hn"]),
    ],
)
def test_each_gate_block_is_drawn_from_the_spectrum(cell: str, kind: type, names: list) -> None:
    H = 6
    weights = random_weights(cell, H, 2, spectrum=parse_spectrum("radius:0.7"), seed=1)
    assert isinstance(weights, kind)
    blocks = recurrent_blocks(weights)
    assert list(blocks) == names
    for block in blocks.values():
        assert block.shape == (H, H)
        assert float(torch.linalg.eigvals(block).abs().max()) == pytest.approx(0.7, abs=1e-10)
    if len(blocks) > 1:  # drawn independently, not one block repeated
        first, second = list(blocks.values())[:2]
        assert not torch.equal(first, second)


def test_random_rnn_keeps_its_activation_and_dtype() -> None:
    weights = random_weights("rnn", 4, 2, activation="sigmoid", dtype=torch.float32)
    assert isinstance(weights, RNNWeights)
    assert weights.activation == "sigmoid"
    assert weights.W_hh.dtype == weights.W_hx.dtype == weights.b.dtype == torch.float32


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cell": "transformer", "hidden": 4, "input_size": 2}, r"`cell` must be one of rnn"),
        ({"cell": "rnn", "hidden": 0, "input_size": 2}, r"`hidden` must be at least 1, got 0"),
        ({"cell": "gru", "hidden": 3, "input_size": -1}, r"`input_size` must be at least 1"),
    ],
    ids=["unknown-cell", "hidden-0", "input-negative"],
)
def test_random_weights_refuses_bad_options(kwargs: dict, match: str) -> None:
    with pytest.raises(GradtraceError, match=match):
        random_weights(**kwargs)


def test_projected_lstm_blocks_are_the_square_maps_the_gates_see() -> None:
    # Regression: with proj_size the blocks were dropped and sigma_max / rho came out NaN.
    lstm = torch.nn.LSTM(3, 5, proj_size=2, dtype=torch.float64)
    w = lstm_weights_from_torch(lstm)
    blocks = recurrent_blocks(w)
    assert sorted(blocks) == ["W_hf W_hr", "W_hg W_hr", "W_hi W_hr", "W_ho W_hr"]
    W_hh, W_hr = lstm.weight_hh_l0.detach(), lstm.weight_hr_l0.detach()  # (4H, P), (P, H)
    torch.testing.assert_close(blocks["W_hf W_hr"], W_hh[5:10] @ W_hr, atol=1e-14, rtol=0)
