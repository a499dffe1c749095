"""Tests for gradtrace.core.spectra: recurrent matrices with a chosen spectrum, and SPEC strings.

Each constructor is checked on the spectral property it promises, against torch.linalg in
float64: eigenvalues of V diag(lambda) V^-1 (1e-8, V's conditioning costs digits), spectral
radius R (1e-10), Q^T Q = S^2 I (1e-12 S^2), S I exactly, and the entry variance G^2 / H of a
Gaussian matrix within a stated statistical tolerance. SPEC strings are parsed as documented and
malformed ones refused with an error that names `spectrum`. (`random_weights`, which draws
each gate block from a SPEC, is tested in test_cells.py.)
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from gradtrace.core import spectra
from gradtrace.core.spectra import Spectrum, parse_spectrum
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
    W = spectra.with_eigenvalues(lam, _gen())
    assert W.shape == (6, 6)
    assert W.dtype == DTYPE
    torch.testing.assert_close(_eigenvalues(W), lam, atol=1e-8, rtol=1e-8)
    # Random eigenvectors: far from normal (for a normal matrix sigma_max = rho = 13).
    assert float(torch.linalg.svdvals(W)[0]) > 13 * (1 + 1e-3)


@pytest.mark.parametrize(("low", "high"), [(0.0, 4.0), (4.0, 14.0), (-1.0, 1.0)])
def test_eig_uniform_has_real_eigenvalues_in_the_interval(low: float, high: float) -> None:
    W = spectra.eig_uniform(8, low, high, _gen(3), DTYPE)
    lam = _eigenvalues(W)
    assert bool((lam >= low - 1e-8).all() and (lam < high + 1e-8).all())
    # The eigenvalues are the uniform draw made first from the same generator.
    drawn = low + (high - low) * torch.rand(8, generator=_gen(3), dtype=DTYPE)
    torch.testing.assert_close(lam, torch.sort(drawn).values, atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("rho", [0.0, 0.5, 1.0, 3.7])
def test_radius_is_exact(rho: float) -> None:
    W = spectra.radius(10, rho, _gen(1), DTYPE)
    assert float(torch.linalg.eigvals(W).abs().max()) == pytest.approx(rho, abs=1e-10)


@pytest.mark.parametrize("scale", [1.0, 0.9, 2.5])
def test_orthogonal_times_scale(scale: float) -> None:
    H = 12
    W = spectra.orthogonal(H, scale, _gen(2), DTYPE)
    eye = torch.eye(H, dtype=DTYPE)
    torch.testing.assert_close(W.T @ W, scale**2 * eye, atol=1e-12 * scale**2, rtol=0)
    # all singular values equal the scale: sigma_max = rho = scale
    svd = torch.linalg.svdvals(W)
    torch.testing.assert_close(svd, torch.full((H,), scale, dtype=DTYPE), atol=1e-12, rtol=0)


def test_identity_times_scale_is_exact() -> None:
    assert torch.equal(spectra.identity(4, 1.0, DTYPE), torch.eye(4, dtype=DTYPE))
    assert torch.equal(spectra.identity(3, 0.5, torch.float32), 0.5 * torch.eye(3))


def test_gaussian_entries_have_variance_gain_squared_over_h() -> None:
    # H^2 = 160,000 entries: the sample variance has relative standard error sqrt(2 / H^2)
    # = 0.35 %, so 2 % is more than five standard errors; the sample mean has standard error
    # G / H / H = 1.9e-5 and 2e-4 is ten of them.
    H, G = 400, 3.0
    W = spectra.gaussian(H, G, _gen(4), DTYPE)
    assert float(W.var()) == pytest.approx(G**2 / H, rel=0.02)
    assert abs(float(W.mean())) < 2e-4


CONSTRUCTORS: list[tuple[str, Callable[[torch.Generator], Tensor]]] = [
    ("with_eigenvalues", lambda g: spectra.with_eigenvalues(torch.arange(1.0, 6.0), g)),
    ("eig_uniform", lambda g: spectra.eig_uniform(5, 0.0, 4.0, g, DTYPE)),
    ("radius", lambda g: spectra.radius(5, 1.1, g, DTYPE)),
    ("orthogonal", lambda g: spectra.orthogonal(5, 1.0, g, DTYPE)),
    ("gaussian", lambda g: spectra.gaussian(5, 2.0, g, DTYPE)),
]


@pytest.mark.parametrize(("name", "make"), CONSTRUCTORS, ids=[n for n, _ in CONSTRUCTORS])
def test_same_seed_same_matrix_other_seed_other_matrix(
    name: str, make: Callable[[torch.Generator], Tensor]
) -> None:
    assert torch.equal(make(_gen(7)), make(_gen(7)))
    assert not torch.equal(make(_gen(7)), make(_gen(8)))


def test_float32_is_the_float64_matrix_rounded() -> None:
    W64 = spectra.eig_uniform(6, 0.0, 4.0, _gen(5), DTYPE)
    W32 = spectra.eig_uniform(6, 0.0, 4.0, _gen(5), torch.float32)
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
    with pytest.raises(GradtraceError, match=r"^`spectrum` ") as err:
        parse_spectrum(spec)
    message = str(err.value)
    assert words in message
    assert repr(spec) in message  # shows what was received
    assert "\n" not in message


@pytest.mark.parametrize(
    ("spec", "reference"),
    [
        ("eig-uniform:0:4", lambda g: spectra.eig_uniform(5, 0.0, 4.0, g, DTYPE)),
        ("radius:0.8", lambda g: spectra.radius(5, 0.8, g, DTYPE)),
        ("orthogonal:1.2", lambda g: spectra.orthogonal(5, 1.2, g, DTYPE)),
        ("identity:0.5", lambda g: spectra.identity(5, 0.5, DTYPE)),
        ("gaussian:2", lambda g: spectra.gaussian(5, 2.0, g, DTYPE)),
    ],
    ids=["eig-uniform", "radius", "orthogonal", "identity", "gaussian"],
)
def test_spectrum_build_calls_its_constructor(
    spec: str, reference: Callable[[torch.Generator], Tensor]
) -> None:
    assert torch.equal(parse_spectrum(spec).build(5, _gen(9), DTYPE), reference(_gen(9)))
