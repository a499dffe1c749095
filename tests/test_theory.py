"""Tests for gradtrace.core.theory: spectra, bounds, rates, horizons, verdicts and the note.

References: torch.linalg (svdvals, eigvals) for sigma_max and rho (1e-12 relative), closed
forms for the bounds ((gamma sigma)^(T-k), sums of known step norms; 1e-12), exact geometric
curves for the rate (1e-12), hand-built curves with known drop points for the horizon, and
matrix powers W^n for a non-normal checkpoint example. Notes are written from the judgement of
exact geometric curves with the verdict named. Everything in float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from gradtrace.analysis.curve import analyse
from gradtrace.cells import RNNWeights
from gradtrace.core import theory
from gradtrace.core.spectra import eig_uniform
from gradtrace.errors import GradtraceError
from gradtrace.records.flow import MatrixSpectrum

DTYPE = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def jordan(H: int, diagonal: float, coupling: float) -> Tensor:
    """diagonal * I + coupling * (shift): eigenvalues all `diagonal`, far from normal."""
    return diagonal * torch.eye(H, dtype=DTYPE) + coupling * torch.diag(
        torch.ones(H - 1, dtype=DTYPE), 1
    )


# ---------------------------------------------------------------- spectra

SPECTRUM_MATRICES = [
    pytest.param(lambda: torch.randn(6, 6, generator=_gen(0), dtype=DTYPE), id="gaussian"),
    pytest.param(lambda: eig_uniform(5, 0.0, 4.0, _gen(2), DTYPE), id="eig-uniform-0-4"),
    pytest.param(
        lambda: torch.tensor([[0.0, -2.0], [2.0, 0.0]], dtype=DTYPE), id="rotation-complex-eigs"
    ),
    pytest.param(lambda: jordan(4, 0.0, 3.0), id="nilpotent-rho-0"),
    pytest.param(lambda: torch.diag(torch.tensor([-3.0, 1.0, 2.0], dtype=DTYPE)), id="diagonal"),
    pytest.param(lambda: torch.randn(4, 4, generator=_gen(1)), id="float32-input"),
]


@pytest.mark.parametrize("make", SPECTRUM_MATRICES)
def test_matrix_spectrum_matches_torch_linalg(make: Callable[[], Tensor]) -> None:
    W = make()
    W64 = W.to(DTYPE)
    s = theory.matrix_spectrum(W)
    assert s.sigma_max == pytest.approx(float(torch.linalg.svdvals(W64).max()), rel=1e-12)
    assert s.spectral_radius == pytest.approx(
        float(torch.linalg.eigvals(W64).abs().max()), rel=1e-12, abs=1e-12
    )
    assert s.spectral_radius <= s.sigma_max * (1 + 1e-12)  # rho <= sigma_max always


def test_matrix_spectrum_refuses_a_non_square_matrix() -> None:
    with pytest.raises(GradtraceError, match=r"`W` must be a square matrix, got shape \(3, 2\)"):
        theory.matrix_spectrum(torch.ones(3, 2, dtype=DTYPE))


def test_eig_uniform_0_4_is_non_normal_with_rho_below_four() -> None:
    # The lectures' example: eigenvalues in [0, 4), H = 5, so the eigenvalue criterion says
    # "vanishing" for sigmoid (rho < 1/gamma = 4); sigma_max is nonetheless far above rho.
    s = theory.matrix_spectrum(eig_uniform(5, 0.0, 4.0, _gen(2), DTYPE))
    assert s.spectral_radius < 4
    assert s.sigma_max > 5 * s.spectral_radius  # 36.95 vs 3.67 for this seed
    assert theory.eigen_prediction(0.25, s.spectral_radius) == "vanishing"
    assert 0.25 * s.sigma_max > 1  # the rigorous bound guarantees nothing


# ---------------------------------------------------------------- bounds


@pytest.mark.parametrize(
    ("metric", "slack"),
    [("spectral", 0.0), ("maxabs", 0.0), ("frobenius", 0.5 * math.log10(9))],
    ids=["spectral", "maxabs", "frobenius-sqrt-H"],
)
def test_rnn_bound_is_gamma_sigma_to_the_power_t_minus_k(metric: str, slack: float) -> None:
    T, gamma, sigma, H = 6, 0.25, 8.0, 9  # gamma * sigma = 2
    expected = torch.tensor([6, 5, 4, 3, 2, 1], dtype=DTYPE) * math.log10(2) + slack
    bound = theory.rnn_bound_log10(gamma, sigma, T, metric, H)
    torch.testing.assert_close(bound, expected, atol=1e-12, rtol=0)


def test_rnn_bound_of_a_zero_matrix_is_minus_infinity() -> None:
    assert bool((theory.rnn_bound_log10(1.0, 0.0, 4, "spectral", 3) == -math.inf).all())


@pytest.mark.parametrize("metric", ["spectral", "frobenius"])
def test_norm_product_bound_sums_known_step_norms(metric: str) -> None:
    # J_t = diag(d_t) R with R a rotation has ||J_t||_2 = max |d_t| exactly.
    T, B, S = 5, 2, 3
    peaks = torch.tensor([[2.0, 0.5], [4.0, 1.0], [0.1, 3.0], [1.0, 1.0], [10.0, 0.2]], dtype=DTYPE)
    d = torch.rand(T, B, S, generator=_gen(0), dtype=DTYPE) * peaks.unsqueeze(-1)
    d[..., 0] = peaks  # (T, B, S), max |d_t| = peaks[t]
    R, _ = torch.linalg.qr(torch.randn(S, S, generator=_gen(1), dtype=DTYPE))
    J = d.unsqueeze(-1) * R  # (T, B, S, S)
    logs = torch.log10(peaks)  # (T, B)
    suffix = torch.stack([logs[k:].sum(0) for k in range(T)])  # (T, B): sum over t >= k+1
    slack = 0.5 * math.log10(S) if metric == "frobenius" else 0.0
    batched = theory.norm_product_bound_log10(J, metric)
    torch.testing.assert_close(batched, suffix.T + slack, atol=1e-12, rtol=0)  # (B, T)
    single = theory.norm_product_bound_log10(J[:, 1], metric)
    torch.testing.assert_close(single, suffix[:, 1] + slack, atol=1e-12, rtol=0)  # (T,)


# ---------------------------------------------------------------- rate, horizon, verdict


@pytest.mark.parametrize("rate", [-0.3, -0.004, 0.0, 0.07, 1.5])
def test_measured_rate_of_a_geometric_curve_is_its_ratio(rate: float) -> None:
    T = 40
    n = torch.arange(T, 0, -1, dtype=DTYPE)  # T - k
    log10_c = 2.5 + rate * n  # c(k) = 10^2.5 * (10^rate)^(T-k)
    assert theory.measured_rate(log10_c) == pytest.approx(rate, abs=1e-12)


def test_measured_rate_leaves_out_exact_zeros() -> None:
    log10_c = -0.2 * torch.arange(10, 0, -1, dtype=DTYPE)
    log10_c[:4] = -math.inf  # the product became exactly zero before k = 4
    assert theory.measured_rate(log10_c) == pytest.approx(-0.2, abs=1e-12)


@pytest.mark.parametrize(
    ("values", "expected"),
    [([-math.inf, -math.inf, -1.0], -math.inf), ([0.3], 0.0), ([math.nan, 1.0], 0.0)],
    ids=["vanished", "one-step", "one-finite"],
)
def test_measured_rate_with_fewer_than_two_points(values: list[float], expected: float) -> None:
    assert theory.measured_rate(torch.tensor(values, dtype=DTYPE)) == expected


def _one_decade_per_step(T: int) -> Tensor:
    return -torch.arange(T - 1, -1, -1, dtype=DTYPE)  # log10 c(k) = -(T-1-k), c(T-1) = 1


HORIZONS = [
    pytest.param(torch.zeros(25, dtype=DTYPE), 25, id="flat-never-drops"),
    pytest.param(torch.linspace(5, 0, 25, dtype=DTYPE), 25, id="growing-back-never-drops"),
    # c(T-4) = 1e-3 c(T-1) still counts; c(T-5) = 1e-4 c(T-1) drops out: n = 4.
    pytest.param(_one_decade_per_step(25), 4, id="decade-per-step"),
    pytest.param(
        torch.tensor([0.0, 0.0, -3.5, 0.0, 0.0, 0.0, 0.0], dtype=DTYPE), 4, id="dip-at-k2"
    ),
    pytest.param(torch.tensor([0.0, math.nan, 0.0, 0.0], dtype=DTYPE), 2, id="nan-counts-as-drop"),
    pytest.param(torch.tensor([-math.inf, 0.0, 0.0], dtype=DTYPE), 2, id="exact-zero-at-k0"),
    pytest.param(torch.tensor([-4.0, 1.0], dtype=DTYPE), 1, id="drop-right-before-the-end"),
]


@pytest.mark.parametrize(("log10_c", "expected"), HORIZONS)
def test_memory_horizon_on_constructed_curves(log10_c: Tensor, expected: int) -> None:
    assert theory.memory_horizon(log10_c) == expected


def test_memory_horizon_with_another_threshold() -> None:
    assert theory.memory_horizon(_one_decade_per_step(25), decades=10.0) == 11


VERDICTS = [
    (-0.5, "vanishing"),
    (-0.0051, "vanishing"),
    (-0.005, "neutral"),  # the band edge itself is neutral
    (0.0, "neutral"),
    (0.005, "neutral"),
    (0.0051, "exploding"),
    (2.0, "exploding"),
    (-math.inf, "vanishing"),
]


@pytest.mark.parametrize(("rate", "expected"), VERDICTS, ids=[str(r) for r, _ in VERDICTS])
def test_verdict_thresholds(rate: float, expected: str) -> None:
    assert theory.NEUTRAL_BAND == 0.005
    assert theory.verdict(rate) == expected


def test_verdict_with_a_wider_band() -> None:
    assert theory.verdict(-0.05, band=0.1) == "neutral"


@pytest.mark.parametrize(
    ("gamma", "rho", "expected"),
    [
        (0.25, 3.99, "vanishing"),
        (0.25, 4.0, "exploding possible"),
        (1.0, 1.2, "exploding possible"),
    ],
)
def test_eigen_prediction_compares_rho_with_one_over_gamma(
    gamma: float, rho: float, expected: str
) -> None:
    assert theory.eigen_prediction(gamma, rho) == expected


# (gamma, sigma_max, rho, measured verdict, words the note must hold)
NOTES = [
    pytest.param(0.25, 3.0, 2.0, "vanishing", "guarantees vanishing", id="bound-guarantees"),
    pytest.param(0.25, 30.0, 3.0, "exploding", "predicts vanishing but the", id="non-normal"),
    pytest.param(0.25, 30.0, 3.0, "neutral", "predicts vanishing but the", id="non-normal-flat"),
    pytest.param(0.25, 6.0, 3.0, "vanishing", "measurement agrees, although", id="eigen-agrees"),
    pytest.param(0.25, 20.0, 14.0, "exploding", "and it explodes", id="explodes"),
    pytest.param(1.0, 1.5, 1.2, "neutral", "keeps its size", id="edge"),
    pytest.param(0.25, 20.0, 14.0, "vanishing", "saturated units", id="saturated"),
]


# log10 c(k) = rate * (T - k) over T = 20 steps: a geometric curve with each verdict; the
# vanishing one never rises above the identity, so it is not transient growth.
MEASURED_RATES = {"vanishing": -0.1, "exploding": 0.1, "neutral": 0.0}


@pytest.mark.parametrize(("gamma", "sigma", "rho", "measured", "words"), NOTES)
def test_write_note_names_non_normal_only_when_it_disagrees(
    gamma: float, sigma: float, rho: float, measured: str, words: str
) -> None:
    rate = MEASURED_RATES[measured]
    judgement = theory.judge(rate * torch.arange(20, 0, -1, dtype=DTYPE))
    assert judgement.verdict == measured
    assert judgement.rate_per_step == pytest.approx(rate, abs=1e-12)
    note = theory.write_note(judgement, gamma, MatrixSpectrum(sigma, rho), "rnn")
    assert words in note
    assert ("non-normal" in note) == (words == "predicts vanishing but the")
    assert note.startswith(
        f"gamma*rho = {gamma * rho:.3g} and gamma*sigma_max = {gamma * sigma:.3g}; measured: "
    )


def test_non_normal_checkpoint_grows_although_the_eigenvalues_predict_vanishing() -> None:
    # Linear RNN (gamma = 1) with W = 0.5 I + 10 N: rho = 0.5 < 1, so the eigenvalue criterion
    # predicts vanishing, but ||W^n|| grows about tenfold per step for n <= 4 (binomial terms
    # C(n, j) 10^j 0.5^(n-j)). In checkpoint mode with phi linear, J_k = W for every k.
    T, H, I = 4, 5, 2
    W = jordan(H, 0.5, 10.0)
    weights = RNNWeights(W, torch.ones(H, I, dtype=DTYPE), torch.zeros(H, dtype=DTYPE), "linear")
    x, h = torch.randn(T, I, generator=_gen(0), dtype=DTYPE), torch.randn(T, H, generator=_gen(1))
    report = analyse(weights, x, states=h.to(DTYPE))
    powers = torch.stack([torch.linalg.matrix_power(W, T - k) for k in range(T)])  # W^(T-k)
    expected = torch.log10(torch.linalg.svdvals(powers)[:, 0])
    assert report.log10_norm.shape == (1, T)
    torch.testing.assert_close(report.log10_norm[0], expected, atol=1e-10, rtol=0)
    assert report.theory.spectral_radius == pytest.approx(0.5, rel=1e-12)
    assert report.theory.sigma_max > 10
    assert theory.eigen_prediction(1.0, report.theory.spectral_radius) == "vanishing"
    assert report.verdict == "exploding"
    assert report.rate_per_step > 0.9  # about +1 decade per step
    assert "non-normal" in report.note
    assert "predicts vanishing but the measurement disagrees" in report.note


def test_memory_horizon_is_zero_when_the_last_step_annihilates_the_state() -> None:
    # Regression: an exactly zero J_T made every c(k) = -inf and the horizon came out as T.
    curve = torch.full((7,), -math.inf, dtype=torch.float64)
    assert theory.memory_horizon(curve) == 0


def test_large_problems_bound_each_step_by_a_cheap_norm_that_is_never_below_the_spectral(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Past the flop budget the bound switches to min(||J||_F, sqrt(||J||_1 ||J||_inf)), an upper
    # bound on ||J||_2 (Hoelder) that is at most sqrt(S) times it; the product stays a bound.
    J = torch.randn(6, 2, 5, 5, generator=_gen(3), dtype=DTYPE)
    exact = theory.norm_product_bound_log10(J, "spectral")
    monkeypatch.setattr(theory, "EXACT_NORM_FLOPS", 0)
    assert theory.step_norm_kind(J) == "cheap"
    cheap = theory.norm_product_bound_log10(J, "spectral")
    steps = torch.arange(6, 0, -1, dtype=DTYPE)  # T - k factors
    assert bool((cheap >= exact - 1e-12).all())
    assert bool((cheap <= exact + steps * 0.5 * math.log10(5) + 1e-12).all())


def test_a_curve_that_reaches_exactly_zero_is_vanishing_whatever_its_finite_slope() -> None:
    # Regression: a ReLU RNN whose product collapsed to 0 after a flat stretch read "neutral".
    log10_c = torch.zeros(10, dtype=DTYPE)
    log10_c[:4] = -math.inf
    assert theory.verdict(theory.measured_rate(log10_c)) == "neutral"
    assert theory.judge(log10_c).verdict == "vanishing"
    assert theory.judge(torch.zeros(10, dtype=DTYPE)).verdict == "neutral"
