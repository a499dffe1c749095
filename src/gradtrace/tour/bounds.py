"""Lecture 001's bound ||ds_t/ds_k|| <= (gamma lambda)^(t-k), and where the eigenvalue reading
of it misleads.

The bound is a theorem with lambda = sigma_max(W), the largest singular value: every step
Jacobian diag(phi'(a)) W has spectral norm at most gamma sigma_max. Read with lambda the largest
eigenvalue (the criterion of lecture 000) it is no bound at all once W is not normal: the
lecture-000 matrix, at the sigmoid's steepest point (a = 0, so every J_t = W / 4), amplifies a
gradient 6.5-fold in one step although gamma rho < 1.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from gradtrace.analysis.curve import CurveConfig, analyse, run_curve
from gradtrace.cells import RNNWeights
from gradtrace.core.theory import matrix_spectrum
from gradtrace.plots.figure import plt
from gradtrace.plots.flow import draw_flow
from gradtrace.records.flow import GradientFlow
from gradtrace.tour.checkpoint import lecture_checkpoint
from gradtrace.tour.embed import figure
from gradtrace.tour.page import Section, esc, num, para, power, table

# The three RNNs of the bound's stop: decided vanishing, permitted but vanishing, exploding.
BOUND_CONFIGS = {
    "sigmoid-gain-1.5": CurveConfig(
        activation="sigmoid", hidden_size=32, steps=100, batch=4, spectrum="gaussian:1.5", seed=0
    ),
    "sigmoid-gain-3": CurveConfig(
        activation="sigmoid", hidden_size=32, steps=100, batch=4, spectrum="gaussian:3", seed=0
    ),
    "tanh-gain-3": CurveConfig(
        activation="tanh", hidden_size=32, steps=100, batch=4, spectrum="gaussian:3", seed=0
    ),
}
# A tanh RNN along a real trajectory whose W_hh = V diag(eig) V^-1 has every eigenvalue in
# [0.5, 0.9): the eigenvalue criterion says vanishing, the product first grows.
TRANSIENT_CONFIG = CurveConfig(
    activation="tanh", hidden_size=16, steps=120, spectrum="eig-uniform:0.5:0.9", seed=2
)
STEEPEST_STEPS = 40


def bound_section() -> Section:
    """The measured c(k) never exceeds (gamma sigma_max)^(T-k)."""
    flows = {name: run_curve(config) for name, config in BOUND_CONFIGS.items()}
    rows, excess = [], {}
    for name, flow in flows.items():
        th = flow.theory
        over = float((flow.log10_norm - th.bound_log10).max())  # <= 0 when the bound holds
        excess[name] = over
        rows.append(
            (
                esc(name),
                num(th.gamma or math.nan),
                num(th.sigma_max),
                num(th.spectral_radius),
                num((th.gamma or math.nan) * th.sigma_max),
                esc(flow.verdict),
                num(flow.rate_per_step, 3),
                num(flow.lyapunov_max, 3),
                num(over, 3),
            )
        )
    holds = all(v <= 1e-9 for v in excess.values())
    loose = flows["sigmoid-gain-3"].theory
    permitted = (loose.gamma or math.nan) * loose.sigma_max
    measured = para(
        "Three vanilla RNNs (H = 32, T = 100, a batch of 4 trajectories, W_hh Gaussian with the "
        "gain named), measured by the engine along their trajectories. The last column is "
        "max_k [log10 c(k) - log10 (gamma sigma_max)^(T-k)]: negative means the bound holds at "
        "every k and every sequence."
    ) + table(
        (
            "RNN",
            "gamma",
            "sigma_max",
            "rho",
            "gamma sigma_max",
            "verdict",
            "decades/step",
            "top Lyapunov (nats/step)",
            "max excess (decades)",
        ),
        rows,
    )
    measured += para(
        "Only gamma sigma_max &lt; 1 decides anything: the first RNN must vanish and does. Above "
        "1 the bound permits growth without causing it: the second sigmoid RNN vanishes with "
        f"gamma sigma_max = {num(permitted, 3)}, while the tanh RNN of the same weights is "
        "chaotic (positive Lyapunov exponent) and its gradient explodes."
    )
    fig, axes = plt.subplots(1, 3, figsize=(15.0, 4.0))
    for ax, (name, flow) in zip(axes, flows.items(), strict=True):
        draw_flow(ax, flow, title=f"{name}: {flow.verdict}")
    return Section(
        id="bound",
        title="The bound (gamma sigma_max)^(t-k) against the measurement",
        lecture="lecture 001, the magnitude of the product",
        claim=para(
            "Each factor ds_j/ds_(j-1) = diag(sigma'(a_j)) W has norm at most gamma ||W||, with "
            "gamma = 1/4 for the logistic sigmoid and 1 for tanh, so the product over t - k steps "
            "is at most (gamma lambda)^(t-k): below 1 it vanishes, large enough it can explode."
        ),
        measured=measured,
        agree=holds,
        verdict=(
            "with lambda = sigma_max the bound holds at every k in all three RNNs; it decides "
            "vanishing only when gamma sigma_max < 1."
            if holds
            else "a measured curve exceeds (gamma sigma_max)^(t-k)."
        ),
        figures=(
            figure(
                fig,
                "log10 c(k) of each RNN with its bound where it is informative.",
                "three RNNs against the bound",
            ),
        ),
        numbers={
            "excess": excess,
            "sigma_max": {n: f.theory.sigma_max for n, f in flows.items()},
            "rate_per_step": {n: f.rate_per_step for n, f in flows.items()},
            "flow_verdict": {n: f.verdict for n, f in flows.items()},
            "lyapunov_max": {n: f.lyapunov_max for n, f in flows.items()},
        },
        records=dict(flows),
    )


def steepest_flow() -> tuple[GradientFlow, np.ndarray]:
    """Lecture 000's vanishing W_hh at the sigmoid's steepest point: a checkpoint with every
    state, input and bias zero, so a_t = 0, sigma'(a_t) = 1/4 and J_t = W_hh / 4 exactly."""
    W = lecture_checkpoint().recurrent("vanishing")
    H, T = W.shape[0], STEEPEST_STEPS
    zeros = torch.zeros(T, H, dtype=torch.float64)  # (T, H): states and inputs alike
    weights = RNNWeights(
        torch.from_numpy(W.copy()),
        torch.eye(H, dtype=torch.float64),
        torch.zeros(H, dtype=torch.float64),
        "sigmoid",
    )
    return analyse(weights, zeros, states=zeros), W


def non_normal_section() -> Section:
    """rho < 1/gamma and still growth: the eigenvalue criterion is no bound."""
    flow, W = steepest_flow()
    spec = matrix_spectrum(torch.from_numpy(W))
    gamma = 0.25
    n = np.arange(STEEPEST_STEPS, 0, -1)  # T - k for k = 0..T-1
    curve = flow.log10_norm[0].numpy()  # log10 ||(W/4)^(T-k)||
    eigen_rate = n * math.log10(gamma * spec.spectral_radius)
    over = curve - eigen_rate  # > 0 where (gamma rho)^(T-k) is not a bound
    one_step = float(curve[-1])
    transient = run_curve(TRANSIENT_CONFIG)
    peak = float(transient.log10_norm.max())
    agree = bool((over <= 1e-9).all()) and transient.verdict != "transient growth"
    measured = (
        para(
            f"Lecture 000's own W_hh (spectral radius {num(spec.spectral_radius, 3)}, sigma_max = "
            f"{num(spec.sigma_max)}) "
            "at a checkpoint whose states, inputs and bias are zero: every slope is "
            "sigmoid'(0) = 1/4, so each step Jacobian is exactly W_hh / 4, with gamma rho = "
            f"{num(gamma * spec.spectral_radius, 3)} &lt; 1. One step back already multiplies "
            f"the gradient by ||W_hh / 4||_2 = {power(one_step)}, and c(k) stays above "
            f"(gamma rho)^(T-k) at every one of the {STEEPEST_STEPS} distances, by at least a "
            f"factor {power(float(over.min()))}. The criterion gets the eventual rate right (the "
            "product decays like rho^n once n is large) and everything before it wrong."
        )
        + para(
            "Along a real trajectory, a tanh RNN (H = 16) whose W_hh = V diag(eig) V^-1 has "
            f"every eigenvalue in [0.5, 0.9) (rho = {num(transient.theory.spectral_radius, 3)}, "
            f"sigma_max = {num(transient.theory.sigma_max, 3)}) is judged "
            f"<b>{esc(transient.verdict)}</b> by gradtrace: the product is amplified up to "
            f"{power(peak)}-fold before it decays at {num(transient.rate_per_step, 3)} decades "
            "per step."
        )
        + table(
            ("n = t - k", "||(W/4)^n||_2", "(gamma rho)^n", "(gamma sigma_max)^n"),
            [
                (
                    str(int(n[i])),
                    power(float(curve[i])),
                    power(float(eigen_rate[i])),
                    power(float(n[i] * math.log10(gamma * spec.sigma_max))),
                )
                for i in (STEEPEST_STEPS - 1, STEEPEST_STEPS - 2, STEEPEST_STEPS - 5, 20, 0)
            ],
        )
    )
    fig, (left, right) = plt.subplots(1, 2, figsize=(13.0, 4.2))
    left.semilogy(n, 10**curve, "o-", ms=3, label="||dh_T/dh_k||_2 = ||(W/4)^n||_2")
    left.semilogy(n, 10**eigen_rate, "--", color="tab:orange", label="(gamma rho)^n")
    left.semilogy(
        n,
        (gamma * spec.sigma_max) ** n.astype(float),
        ":",
        color="tab:red",
        label="(gamma sigma_max)^n",
    )
    left.set(
        xlabel="n = T - k (steps back)",
        ylabel="contribution (log scale)",
        ylim=(10 ** (curve.min() - 2), 10 ** (curve.max() + 3)),
    )
    left.set_title("Lecture 000's W_hh at sigmoid'(a) = 1/4", fontsize=10)
    left.grid(alpha=0.3, which="both")
    left.legend(fontsize=8)
    draw_flow(right, transient, title=f"tanh, eigenvalues in [0.5, 0.9): {transient.verdict}")
    return Section(
        id="non-normal",
        title="Where the eigenvalue criterion misleads: non-normal W_hh",
        lecture="lecture 000, section 1.3.2, and lecture 001's lambda read as an eigenvalue",
        claim=para(
            "If the largest eigenvalue of W_hh in absolute value is below 1/gamma (4 for the "
            "sigmoid) the gradient vanishes: the eigenvalue condition is stated as sufficient."
        ),
        measured=measured,
        agree=agree,
        verdict=(
            "the eigenvalue condition bounds the measurement here."
            if agree
            else "with gamma rho < 1 the product still amplifies: "
            f"{power(one_step, markup=False)} after one step for lecture 000's W_hh, "
            f"{power(peak, markup=False)}-fold transient growth along a trajectory; the "
            "sufficient condition needs sigma_max."
        ),
        figures=(
            figure(
                fig,
                "Left: the exact products against the eigenvalue rate and the "
                "singular-value bound. Right: transient growth along a trajectory.",
                "non-normal recurrent matrices",
            ),
        ),
        numbers={
            "steepest_log10": curve,
            "eigen_rate_log10": eigen_rate,
            "sigma_max": spec.sigma_max,
            "spectral_radius": spec.spectral_radius,
            "one_step_log10": one_step,
            "transient_verdict": transient.verdict,
            "transient_peak_log10": peak,
        },
        records={"steepest": flow, "transient": transient},
    )
