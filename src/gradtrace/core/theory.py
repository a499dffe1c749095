"""Theory beside measurement: bounds, criteria, rates, horizons, the verdict and its note.

For a vanilla RNN every step Jacobian J_t = diag(phi'(a_t)) W_hh obeys
||J_t||_2 <= gamma * sigma_max(W_hh), with gamma = sup |phi'| (1/4 for sigmoid, 1 for tanh), so

    c(k) = ||J_T ... J_{k+1}||_2 <= (gamma sigma_max)^(T-k)        (the rigorous bound)

and gamma sigma_max < 1 is sufficient for vanishing. The lectures state the criterion with the
spectral radius rho(W_hh) instead ("rho < 1/gamma: vanishing; rho > 1/gamma: exploding is
possible"). For a normal W_hh rho = sigma_max and the two agree; for a non-normal one sigma_max
can be many times rho, and products can grow for many steps before the eigenvalues make them
decay (transient growth). The long-run growth rate per step is the top Lyapunov exponent.

What a measured curve is called comes from one function, `judge`, on the numbers themselves,
with n = T - k the number of steps the gradient flows back and L(n) = log10 c(T - n):

    rate        least-squares slope of L(n) against n, decades per step, over the finite points;
                with fewer than two, the identity at n = 0 (c = metric(I)) is the second point
    verdict     "transient growth" if the rate is below -NEUTRAL_BAND but c(k) is amplified at
                least 10^TRANSIENT_DECADES-fold over the identity somewhere in the window;
                else "vanishing" below -NEUTRAL_BAND (and whenever c(k) is exactly zero
                somewhere), "exploding" above +NEUTRAL_BAND, "neutral" in between
    horizon     the memory horizon: how many steps back c(k) stays within HORIZON_DECADES
                decades (a factor 1000) of the one-step value c(T-1)

and one function, `write_note`, puts those numbers and the theory into words.

All log values here are log10 unless a name says otherwise; rates are decades per step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from gradtrace.core.engine import suffix_sum
from gradtrace.core.factors import StepSource, as_source, chunk_steps, chunks_forward
from gradtrace.errors import check
from gradtrace.records.flow import MatrixSpectrum

VERDICTS = ("vanishing", "exploding", "neutral", "transient growth")
NEUTRAL_BAND = 0.005  # decades per step (about 1.2 % per step) counted as neither
HORIZON_DECADES = 3.0  # the memory horizon ends where c(k) < 1e-3 c(T-1)
TRANSIENT_DECADES = 1.0  # amplified 10x over the identity while decaying: transient growth


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
EXACT_LABEL = "prod_t ||J_t||_2"


def step_norm_kind(jacobians: Tensor | StepSource) -> str:
    """Which per-step norm `norm_product_bound_log10` uses for these Jacobians.

    The exact spectral norm of every J_t costs a few S^3 per step, more than the sweep
    itself; past `EXACT_NORM_FLOPS` the bound uses an O(S^2) upper bound on ||J_t||_2 (see
    `Factors.norm_bound`), so the product is still a valid (looser) bound.
    """
    source, _ = as_source(jacobians)
    count = source.steps * source.batch
    return "exact" if count * source.size**3 <= EXACT_NORM_FLOPS else "cheap"


def norm_product_bound_label(jacobians: Tensor | StepSource) -> str:
    """How `norm_product_bound_log10` bounds each step of these Jacobians, for figures and JSON."""
    if step_norm_kind(jacobians) == "exact":
        return EXACT_LABEL
    source, _ = as_source(jacobians)
    return f"prod_t {source.factors(0, 1).norm_label}"


def _step_norms(source: StepSource) -> Tensor:
    """log10 of an upper bound on ||J_t||_2 (the exact norm when affordable), (T, B)."""
    exact = step_norm_kind(source) == "exact"
    logs = []
    for start, stop in chunks_forward(source.steps, chunk_steps(source)):
        factors = source.factors(start, stop)
        if exact:
            norms = torch.linalg.matrix_norm(factors.dense().to(torch.float64), ord=2)
        else:
            norms = factors.norm_bound().to(torch.float64)
        logs.append(torch.log10(norms))  # (n, B)
    return torch.cat(logs)


def norm_product_bound_log10(jacobians: Tensor | StepSource, metric: str) -> Tensor:
    """log10 of prod_{t>k} ||J_t||, a bound on c(k) that holds for any cell, k = 0..T-1.

    ||J_t|| is the spectral norm, or an upper bound on it for large problems (see
    `step_norm_kind`); either way c(k) <= the product by submultiplicativity. The Jacobians
    stream a chunk at a time.

    Args:
        jacobians: (T, S, S), (T, B, S, S), or a step source.

    Returns:
        (T,) or (B, T), float64: the suffix sums of log10 ||J_t||.
    """
    source, batched = as_source(jacobians)
    suffix = suffix_sum(_step_norms(source))  # (T, B): sum over t >= k+1
    slack = 0.5 * math.log10(source.size) if metric == "frobenius" else 0.0
    bound = (suffix + slack).T  # (B, T)
    return bound if batched else bound[0]


def step_spectra(jacobians: Tensor | StepSource) -> MatrixSpectrum | None:
    """max over the steps and the batch of ||J_t||_2 and of rho(J_t), streamed a chunk at a
    time; None past `EXACT_NORM_FLOPS`, where the decompositions would cost more than the
    curve.

    Args:
        jacobians: (T, S, S), (T, B, S, S), or a step source.
    """
    source, _ = as_source(jacobians)
    if step_norm_kind(source) != "exact":
        return None
    sigma, rho = 0.0, 0.0
    for start, stop in chunks_forward(source.steps, chunk_steps(source)):
        J = source.factors(start, stop).dense().to(torch.float64)  # (n, B, S, S)
        sigma = max(sigma, float(torch.linalg.matrix_norm(J, ord=2).max()))
        rho = max(rho, float(torch.linalg.eigvals(J).abs().max()))
    return MatrixSpectrum(sigma, rho)


def identity_log10(metric: str, size: int) -> float:
    """log10 metric(I) of the S x S identity: c at n = 0, before any step."""
    return 0.5 * math.log10(size) if metric == "frobenius" else 0.0


def measured_rate(log10_norm: Tensor, anchor: float | None = None) -> float:
    """Least-squares slope of log10 c(k) against the distance n = T-k, in decades per step.

    Non-finite values (an exactly zero product) are left out. With fewer than two finite
    points, `anchor` (log10 c at n = 0, see `identity_log10`) is the second point when given;
    without it the rate is -inf if the product vanished and 0 otherwise.
    """
    c = log10_norm.to(torch.float64)
    n = torch.arange(c.shape[-1], 0, -1, dtype=torch.float64, device=c.device)
    keep = torch.isfinite(c)
    n, c = n[keep], c[keep]
    if n.numel() < 2 and anchor is not None:
        n = torch.cat([n, torch.zeros(1, dtype=torch.float64, device=n.device)])
        c = torch.cat([c, torch.full((1,), anchor, dtype=torch.float64, device=c.device)])
        if not bool(keep.any()):
            return -math.inf
    if n.numel() < 2:
        return -math.inf if bool((log10_norm == -math.inf).any()) else 0.0
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
    """ "vanishing", "exploding" or "neutral" from a rate alone (decades per step)."""
    if rate_per_step < -band:
        return "vanishing"
    if rate_per_step > band:
        return "exploding"
    return "neutral"


@dataclass(frozen=True)
class Judgement:
    """What a measured curve does, from its numbers alone (see the module docstring).

    Attributes:
        verdict: One of `VERDICTS`.
        rate_per_step: The measured rate, decades per step.
        horizon: The memory horizon in steps.
        steps: T.
        peak_log10: The largest finite log10 c(k) (-inf if none is finite).
        peak_steps: n = T - k at that peak.
        floor_log10: The smallest finite log10 c(k).
        zero_from: The smallest n at which c(k) is exactly zero, or None.
        anchor_log10: log10 c at n = 0 (the identity).
    """

    verdict: str
    rate_per_step: float
    horizon: int
    steps: int
    peak_log10: float
    peak_steps: int
    floor_log10: float
    zero_from: int | None
    anchor_log10: float


def judge(log10_norm: Tensor, metric: str = "spectral", size: int = 1) -> Judgement:
    """Rate, verdict and horizon of one curve log10 c(k), k = 0..T-1.

    Args:
        log10_norm: (T,) the curve (a batch's mean curve, say).
        metric: The metric it was measured with (for the identity at n = 0).
        size: The size of the measured block (for the identity's Frobenius norm).
    """
    c = log10_norm.detach().to("cpu", torch.float64).reshape(-1)
    T = int(c.shape[0])
    anchor = identity_log10(metric, size)
    rate = measured_rate(c, anchor)
    finite = torch.isfinite(c)
    zero = c == -math.inf
    n = torch.arange(T, 0, -1)  # n = T - k for k = 0..T-1
    zero_from = int(n[zero].min()) if bool(zero.any()) else None
    if bool(finite.any()):
        values = torch.where(finite, c, -math.inf)
        peak_index = int(values.argmax())
        peak, floor = float(c[peak_index]), float(c[finite].min())
        peak_steps = int(n[peak_index])
    else:
        peak, floor, peak_steps = -math.inf, -math.inf, 0
    if zero_from is not None:
        word = "vanishing"  # exactly zero: no gradient reaches further back at all
    elif rate < -NEUTRAL_BAND and peak - anchor >= TRANSIENT_DECADES:
        word = "transient growth"
    else:
        word = verdict(rate)
    return Judgement(word, rate, memory_horizon(c), T, peak, peak_steps, floor, zero_from, anchor)


def eigen_prediction(gamma: float, spectral_radius: float) -> str:
    """What the eigenvalue criterion says: rho < 1/gamma predicts vanishing."""
    if gamma * spectral_radius < 1:
        return "vanishing"
    return "exploding possible"


def _factor_of_ten(rate: float) -> str:
    if rate == 0 or not math.isfinite(rate):
        return ""
    return f" (a factor 10 every {1 / abs(rate):.3g} steps)"


def describe(j: Judgement) -> str:
    """The measurement in words: what c(k) does over the window, from the judgement's numbers."""
    span = "one step" if j.steps == 1 else f"all T = {j.steps} steps"
    rate = f"{j.rate_per_step:+.3g} decades per step"
    if j.zero_from is not None:
        before = j.zero_from - 1
        if before == 0:
            return "c(k) is exactly zero from the last step back: no gradient passes even one step"
        return (
            f"c(k) is exactly zero from {j.zero_from} steps back (no path carries a gradient "
            f"further), after {before} step{'s' if before > 1 else ''} at {rate}"
        )
    if j.verdict == "transient growth":
        return (
            f"transient growth: c(k) is amplified to at least {10**j.floor_log10:.3g} over {span}, "
            f"peaking at {10**j.peak_log10:.3g} at {j.peak_steps} steps back, while its slope is "
            f"{rate}{_factor_of_ten(j.rate_per_step)}"
        )
    if j.verdict == "neutral":
        total = j.rate_per_step * j.steps
        return f"c(k) keeps its size: {rate}, {total:+.2g} decades over {span}"
    moves = "vanishes" if j.verdict == "vanishing" else "explodes"
    return f"c(k) {moves} at {rate}{_factor_of_ten(j.rate_per_step)} over {span}"


def _explain_rnn(j: Judgement, gamma: float, spectrum: MatrixSpectrum) -> str:
    g_rho, g_sigma = gamma * spectrum.spectral_radius, gamma * spectrum.sigma_max
    shape = (
        f"W_hh is non-normal (sigma_max = {spectrum.sigma_max:.3g} vs rho = "
        f"{spectrum.spectral_radius:.3g})"
    )
    zero = j.zero_from is not None
    if g_sigma < 1:
        if zero:
            return (
                "The singular-value bound guarantees vanishing, and units switched off along "
                "the way (phi' = 0) make the product exactly zero."
            )
        if j.verdict == "neutral":
            total = math.log10(g_sigma) * j.steps
            span = "this one step" if j.steps == 1 else f"these {j.steps} steps"
            return (
                f"The singular-value bound guarantees shrinking by a factor {g_sigma:.4g} per "
                f"step, but that is so close to 1 ({total:+.2g} decades over {span}) that over "
                "this window the product keeps its size; it vanishes only over longer spans."
            )
        return "The singular-value bound guarantees vanishing, and the measurement obeys it."
    if g_rho < 1:
        if zero:
            return (
                "The eigenvalue criterion predicts vanishing; units switched off along the way "
                "(phi' = 0) make the product exactly zero."
            )
        if j.verdict == "vanishing":
            return (
                "The eigenvalue criterion predicts vanishing and the measurement agrees, "
                "although gamma*sigma_max >= 1 means the rigorous bound does not guarantee it."
            )
        if j.verdict == "transient growth":
            return (
                f"The eigenvalue criterion predicts vanishing in the long run, but {shape}: "
                "products grow before they decay, so over this window gradients are amplified, "
                "not vanishing."
            )
        return (
            f"The eigenvalue criterion predicts vanishing but the measurement disagrees: {shape}, "
            "so products can grow before they decay."
        )
    if zero:
        return (
            "The eigenvalue criterion allows exploding (rho >= 1/gamma), but phi'(a) = 0 on "
            "every path (switched-off units) makes the product exactly zero."
        )
    if j.verdict == "exploding":
        return "Exploding is possible by the eigenvalue criterion, and it explodes."
    if j.verdict == "neutral":
        return (
            "The eigenvalue criterion allows exploding (rho >= 1/gamma), yet the product keeps "
            "its size: the derivatives phi'(a) along the trajectory hold it at the edge."
        )
    if j.verdict == "transient growth":
        return (
            "The eigenvalue criterion allows exploding (rho >= 1/gamma); the product grows at "
            "first, then the derivatives phi'(a) along the trajectory make it decay."
        )
    return (
        "The eigenvalue criterion allows exploding (rho >= 1/gamma), but saturated units "
        "(phi'(a) well below gamma) make the measured product vanish."
    )


def write_note(
    j: Judgement, gamma: float | None, spectrum: MatrixSpectrum | None, cell: str
) -> str:
    """One paragraph that puts the measurement and the theory together, consistent with `j`.

    Args:
        j: The curve's judgement.
        gamma: sup |phi'| for a vanilla RNN, else None.
        spectrum: sigma_max and rho of W_hh (vanilla RNN), or the largest over the steps of
            ||J_t||_2 and rho(J_t) (a step function), else None.
        cell: "rnn", "lstm", "gru" or "step", for the gated and step-function wording.
    """
    measured = describe(j)
    if gamma is not None and spectrum is not None:
        g_rho, g_sigma = gamma * spectrum.spectral_radius, gamma * spectrum.sigma_max
        head = f"gamma*rho = {g_rho:.3g} and gamma*sigma_max = {g_sigma:.3g}; measured: "
        return head + measured + ". " + _explain_rnn(j, gamma, spectrum)
    if cell == "step":
        if spectrum is None:
            return f"Step function; measured: {measured}. The bound uses the step norms."
        return (
            f"Step function; measured: {measured}. Its step Jacobians have norms up to "
            f"{spectrum.sigma_max:.3g} and spectral radii up to {spectrum.spectral_radius:.3g}"
            + (
                ", so no step can amplify: the bound, the product of the step norms, "
                "guarantees the decay."
                if spectrum.sigma_max < 1
                else "; the bound uses the step norms."
            )
        )
    return (
        f"Gated cell; measured: {measured}. The gates, not a fixed gamma, set each step's "
        "derivative, so the bound uses the step norms."
    )
