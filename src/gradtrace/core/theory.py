"""Theory beside measurement: bounds, criteria, rates, horizons and verdicts.

For a vanilla RNN every step Jacobian J_t = diag(phi'(a_t)) W_hh obeys
||J_t||_2 <= gamma * sigma_max(W_hh), with gamma = sup |phi'| (1/4 for sigmoid, 1 for tanh), so

    c(k) = ||J_T ... J_{k+1}||_2 <= (gamma sigma_max)^(T-k)        (the rigorous bound)

and gamma sigma_max < 1 is sufficient for vanishing. The lectures state the criterion with the
spectral radius rho(W_hh) instead ("rho < 1/gamma: vanishing; rho > 1/gamma: exploding is
possible"). For a normal W_hh rho = sigma_max and the two agree; for a non-normal one sigma_max
can be many times rho and the eigenvalue criterion can be wrong about what the product does over
a finite horizon. The long-run growth rate per step of the product is its top Lyapunov exponent.

All log values here are log10 unless a name says otherwise; rates are decades per step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from gradtrace.core.engine import suffix_sum
from gradtrace.errors import check

VERDICTS = ("vanishing", "exploding", "neutral")
NEUTRAL_BAND = 0.005  # decades per step (about 1.2 % per step) counted as neither
HORIZON_DECADES = 3.0  # the memory horizon ends where c(k) < 1e-3 c(T-1)


@dataclass(frozen=True)
class MatrixSpectrum:
    """Largest singular value and spectral radius of one recurrent weight block."""

    sigma_max: float
    spectral_radius: float


def matrix_spectrum(W: Tensor) -> MatrixSpectrum:
    """sigma_max and rho of a square matrix, computed in float64."""
    check(
        W.ndim == 2 and W.shape[0] == W.shape[1],
        f"`W` must be a square matrix, got shape {tuple(W.shape)}",
    )
    W64 = W.detach().to(torch.float64)
    sigma = float(torch.linalg.matrix_norm(W64, ord=2))
    rho = float(torch.linalg.eigvals(W64).abs().max())
    return MatrixSpectrum(sigma, rho)


def rnn_bound_log10(gamma: float, sigma_max: float, steps: int, metric: str, size: int) -> Tensor:
    """log10 of the bound (gamma sigma_max)^(T-k) on c(k), for k = 0..T-1.

    The bound holds for the spectral norm and hence for `maxabs` (|entry| <= sigma_max); the
    Frobenius norm is at most sqrt(H) times the spectral norm, so that factor is added for it.
    """
    n = torch.arange(steps, 0, -1, dtype=torch.float64)  # T-k for k = 0..T-1
    per_step = math.log10(gamma * sigma_max) if gamma * sigma_max > 0 else -math.inf
    slack = 0.5 * math.log10(size) if metric == "frobenius" else 0.0
    return n * per_step + slack


EXACT_NORM_FLOPS = 2e9  # above this, exact step norms would cost more than the curve itself


def step_norm_kind(jacobians: Tensor) -> str:
    """Which per-step norm `norm_product_bound_log10` uses for these Jacobians.

    The exact spectral norm of every J_t costs a few S^3 per step, more than the sweep
    itself; past `EXACT_NORM_FLOPS` the bound uses min(||J_t||_F, sqrt(||J_t||_1 ||J_t||_inf)),
    an O(S^2) upper bound on ||J_t||_2, so the product is still a valid (looser) bound.
    """
    S = jacobians.shape[-1]
    count = jacobians.numel() // max(S * S, 1)
    return "exact" if count * S**3 <= EXACT_NORM_FLOPS else "cheap"


def norm_product_bound_label(jacobians: Tensor) -> str:
    """How `norm_product_bound_log10` bounds each step of these Jacobians, for figures and JSON."""
    if step_norm_kind(jacobians) == "exact":
        return "prod_t ||J_t||_2"
    return "prod_t min(||J_t||_F, sqrt(||J_t||_1 ||J_t||_inf))"


def _step_norms(jacobians: Tensor) -> Tensor:
    if step_norm_kind(jacobians) == "exact":
        return torch.linalg.matrix_norm(jacobians.to(torch.float64), ord=2)
    J = jacobians  # in its own dtype: a float64 copy of a large stack costs more than the norms
    frobenius = torch.linalg.matrix_norm(J, ord="fro").to(torch.float64)
    one = torch.linalg.matrix_norm(J, ord=1).to(torch.float64)
    inf = torch.linalg.matrix_norm(J, ord=math.inf).to(torch.float64)
    return torch.minimum(frobenius, torch.sqrt(one * inf))


def norm_product_bound_log10(jacobians: Tensor, metric: str) -> Tensor:
    """log10 of prod_{t>k} ||J_t||, a bound on c(k) that holds for any cell, k = 0..T-1.

    ||J_t|| is the spectral norm, or an upper bound on it for large problems (see
    `step_norm_kind`); either way c(k) <= the product by submultiplicativity.

    Args:
        jacobians: (T, S, S) or (T, B, S, S).

    Returns:
        (T,) or (B, T), float64: the suffix sums of log10 ||J_t||.
    """
    logs = torch.log10(_step_norms(jacobians))  # (T,) or (T, B)
    suffix = suffix_sum(logs)  # (T,) or (T, B): sum over t >= k+1
    slack = 0.5 * math.log10(jacobians.shape[-1]) if metric == "frobenius" else 0.0
    return (suffix + slack).T if suffix.ndim == 2 else suffix + slack


def measured_rate(log10_norm: Tensor) -> float:
    """Least-squares slope of log10 c(k) against the distance n = T-k, in decades per step.

    Non-finite values (an exactly zero product) are left out; with fewer than two finite
    points the rate is -inf if the product vanished and 0 otherwise.
    """
    c = log10_norm.to(torch.float64)
    n = torch.arange(c.shape[-1], 0, -1, dtype=torch.float64, device=c.device)
    keep = torch.isfinite(c)
    if int(keep.sum()) < 2:
        return -math.inf if bool((c == -math.inf).any()) else 0.0
    n, c = n[keep], c[keep]
    n_centered = n - n.mean()
    return float((n_centered * (c - c.mean())).sum() / (n_centered**2).sum())


def memory_horizon(log10_norm: Tensor, decades: float = HORIZON_DECADES) -> int:
    """How many steps back c(k) stays at or above 10^-decades times c(T-1).

    Returns the largest n in 1..T with c(k) >= 10^-decades c(T-1) for every k >= T-n; the
    whole sequence (T) when it never drops that far, and 0 when c(T-1) is already exactly 0.
    """
    c = log10_norm.to(torch.float64)
    T = c.shape[-1]
    if c[-1] == -math.inf:  # even one step annihilates the state: nothing is remembered
        return 0
    below = (c < c[-1] - decades) | torch.isnan(c)  # (T,)
    if not bool(below.any()):
        return T
    last_below = int(torch.nonzero(below).max())  # the latest k that has dropped out
    return T - 1 - last_below


def verdict(rate_per_step: float, band: float = NEUTRAL_BAND) -> str:
    """ "vanishing", "exploding" or "neutral" from the measured rate (decades per step)."""
    if rate_per_step < -band:
        return "vanishing"
    if rate_per_step > band:
        return "exploding"
    return "neutral"


def curve_verdict(log10_norm: Tensor, band: float = NEUTRAL_BAND) -> str:
    """The verdict of a measured curve: "vanishing" outright once the product is exactly zero.

    A curve that reaches c(k) = 0 (log -inf: a dead ReLU layer, say) has vanished whatever the
    slope of its finite part; otherwise the verdict follows the measured rate.
    """
    if bool((log10_norm == -math.inf).any()):
        return "vanishing"
    return verdict(measured_rate(log10_norm), band)


def eigen_prediction(gamma: float, spectral_radius: float) -> str:
    """What the eigenvalue criterion says: rho < 1/gamma predicts vanishing."""
    if gamma * spectral_radius < 1:
        return "vanishing"
    return "exploding possible"


def criterion_note(gamma: float, spectrum: MatrixSpectrum, measured: str, rate: float) -> str:
    """Words that put the eigenvalue criterion, the rigorous bound and the measurement together."""
    g_rho = gamma * spectrum.spectral_radius
    g_sigma = gamma * spectrum.sigma_max
    predicted = eigen_prediction(gamma, spectrum.spectral_radius)
    head = (
        f"gamma*rho = {g_rho:.3g} and gamma*sigma_max = {g_sigma:.3g}; "
        f"measured {rate:+.3g} decades per step ({measured})."
    )
    if g_sigma < 1:
        return head + " The singular-value bound guarantees vanishing, and it vanishes."
    if predicted == "vanishing" and measured != "vanishing":
        return head + (
            " The eigenvalue criterion predicts vanishing but the measurement disagrees: W_hh is "
            f"non-normal (sigma_max = {spectrum.sigma_max:.3g} vs rho = "
            f"{spectrum.spectral_radius:.3g}), so products can grow before they decay."
        )
    if predicted == "vanishing":
        return head + (
            " The eigenvalue criterion predicts vanishing and the measurement agrees, although "
            "gamma*sigma_max >= 1 means the rigorous bound does not guarantee it."
        )
    if measured == "exploding":
        return head + " Exploding is possible by the eigenvalue criterion, and it explodes."
    if measured == "neutral":
        return head + (
            " The eigenvalue criterion allows exploding (rho >= 1/gamma), yet the product keeps "
            "its size: the derivatives phi'(a) along the trajectory hold it at the edge."
        )
    return head + (
        " The eigenvalue criterion allows exploding (rho >= 1/gamma), but saturated units "
        "(phi'(a) well below gamma) make the measured product vanish."
    )
