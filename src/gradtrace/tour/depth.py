"""Lecture 002: a deep net attenuates the gradient layer by layer, and an unrolled linear RNN
is a deep net whose layers share one W, so its product is W^p = V Lambda^p V^-1.
"""

from __future__ import annotations

import math

import torch

from gradtrace.analysis.curve import analyse
from gradtrace.analysis.depth import depth_profile
from gradtrace.cells import RNNWeights
from gradtrace.core.spectra import eig_uniform
from gradtrace.core.theory import matrix_spectrum
from gradtrace.plots.figure import finite_values, plt
from gradtrace.records.depth import DepthProfile
from gradtrace.tour.embed import figure
from gradtrace.tour.page import Section, esc, num, para, power, table

DEPTH, WIDTH = 30, 64
# (activation, initialisation): the lecture's sigmoid, and two that keep the gain near 1.
NETS = (("sigmoid", "default"), ("tanh", "xavier"), ("relu", "he"))
POWER_SIZE, POWER_STEPS, POWER_SEED = 5, 60, 3
POWER_EIGENVALUES = (0.3, 1.1)  # uniform in [0.3, 1.1): some below 1, perhaps some above


def depth_section() -> Section:
    """||dL/dy_l|| through 30 layers: the sigmoid's factor <= 1/4 at every layer."""
    profiles: dict[str, DepthProfile] = {
        f"{a}-{i}": depth_profile(DEPTH, WIDTH, a, i, seed=0) for a, i in NETS
    }
    sig = profiles["sigmoid-default"]
    quarter = math.log10(0.25)
    rows = [
        (
            esc(name),
            num(p.rate_per_layer, 3),
            esc(p.verdict),
            power(float(p.log10_grad_norm[0] - p.log10_grad_norm[-1])),
        )
        for name, p in profiles.items()
    ]
    agree = sig.verdict == "vanishing" and sig.rate_per_layer < 0
    measured = para(
        f"A {DEPTH}-layer MLP of width {WIDTH} (gradtrace's <code>depth_profile</code>, the "
        "norm of dL/dy_l over a batch of 32, l counted from the input). With sigmoids and "
        f"PyTorch's default initialisation the gradient shrinks by {num(sig.rate_per_layer, 3)} "
        f"decades per layer going back, more than the {num(quarter, 3)} of the slope 1/4 alone: "
        "the slopes are below 1/4 away from 0 and the default weights shrink too. Initialisations "
        "scaled for the activation (Glorot and Bengio 2010 for tanh, He et al. 2015 for ReLU) "
        "keep the gain near 1."
    ) + table(("net", "decades per layer", "verdict", "||dL/dy_0|| / ||dL/dy_L||"), rows)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    layers = torch.arange(DEPTH + 1)
    for name, p in profiles.items():
        ax.plot(layers, finite_values(p.log10_grad_norm), "o-", ms=3, label=name)
    top = float(sig.log10_grad_norm[-1])
    ax.plot(
        layers,
        top + (DEPTH - layers) * quarter,
        "--",
        color="grey",
        label="slope 1/4 per layer from the output",
    )
    ax.set(xlabel="layer l (0 = input)", ylabel="log10 ||dL/dy_l||")
    ax.set_title(f"Gradient through {DEPTH} layers", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return Section(
        id="depth",
        title="Depth: the gradient through a deep sigmoid net",
        lecture="lecture 002, training deep networks is hard",
        claim=para(
            "Going back one layer multiplies the loss gradient by the layer's a' f': with the "
            "sigmoid, a' is at most 1/4, so through many layers the gradient disappears; an "
            "unrolled RNN is such a deep net."
        ),
        measured=measured,
        agree=agree,
        verdict=(
            f"the sigmoid net's gradient vanishes at {num(sig.rate_per_layer, 3)} decades per "
            "layer; scaled initialisations of tanh and ReLU nets do not."
            if agree
            else "the sigmoid net's gradient does not vanish through depth."
        ),
        figures=(figure(fig, "log10 ||dL/dy_l|| against the layer, three nets.", "depth"),),
        numbers={
            n: {
                "rate_per_layer": p.rate_per_layer,
                "verdict": p.verdict,
                "log10_grad_norm": p.log10_grad_norm,
            }
            for n, p in profiles.items()
        },
        records=dict(profiles),
    )


def power_matrix() -> torch.Tensor:
    """The shared W (H, H) of the matrix-power stop: V diag(eig) V^-1, seeded."""
    generator = torch.Generator().manual_seed(POWER_SEED)
    return eig_uniform(POWER_SIZE, *POWER_EIGENVALUES, generator, torch.float64)


def power_section() -> Section:
    """W^p three ways: repeated product, V Lambda^p V^-1, and the engine on a linear RNN."""
    W = power_matrix()
    H, T = POWER_SIZE, POWER_STEPS
    lam, V = torch.linalg.eig(W)  # complex in general
    V_inv = torch.linalg.inv(V)
    p = torch.arange(1, T + 1)
    direct = torch.stack([torch.linalg.matrix_power(W, int(q)) for q in p])  # (T, H, H)
    by_eig = torch.stack([(V * lam ** int(q)) @ V_inv for q in p])  # V Lambda^p V^-1
    scale = torch.linalg.matrix_norm(direct, ord=2)  # (T,)
    eig_error = float(((by_eig - direct).abs().amax(dim=(1, 2)) / scale).max())
    imag = float(by_eig.imag.abs().max())
    zeros = torch.zeros(T, H, dtype=torch.float64)
    linear = RNNWeights(
        W, torch.eye(H, dtype=torch.float64), torch.zeros(H, dtype=torch.float64), "linear"
    )
    flow = analyse(linear, zeros, states=zeros)  # c(k) = ||W^(T-k)||_2
    engine = flow.log10_norm[0].flip(0)  # indexed by p = T - k = 1..T
    engine_error = float((engine - torch.log10(scale)).abs().max())
    spec = matrix_spectrum(W)
    gelfand = float(scale[-1] ** (1 / T))  # ||W^p||^(1/p) -> rho
    agree = eig_error < 1e-10 and engine_error < 1e-10
    measured = para(
        f"A {H} x {H} W = V diag(eig) V^-1 with eigenvalues drawn in "
        f"[{POWER_EIGENVALUES[0]}, {POWER_EIGENVALUES[1]}) (seed {POWER_SEED}): "
        f"{esc(', '.join(num(float(v), 4) for v in lam.real.sort().values))}; rho = "
        f"{num(spec.spectral_radius)}, sigma_max = {num(spec.sigma_max)}. For p = 1..{T}, "
        f"V Lambda^p V^-1 equals W multiplied p times to a relative {num(eig_error, 2)} "
        f"(imaginary parts below {num(imag, 2)}), and gradtrace's engine on the linear RNN "
        "h_t = W h_(t-1) gives log10 ||dh_T/dh_k|| = log10 ||W^(T-k)||_2 to "
        f"{num(engine_error, 2)}. ||W^p||^(1/p) at p = {T} is {num(gelfand)}, on its way to rho "
        "(Gelfand's formula): the eigenvalues set the long-run rate, the eigenvectors' "
        "conditioning the size before it."
    ) + table(
        ("p", "||W^p||_2", "rho^p", "sigma_max^p"),
        [
            (
                str(int(q)),
                power(float(torch.log10(scale[q - 1]))),
                power(int(q) * math.log10(spec.spectral_radius)),
                power(int(q) * math.log10(spec.sigma_max)),
            )
            for q in (1, 2, 5, 10, 30, 60)
        ],
    )
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    ax.semilogy(p, scale, "o-", ms=3, label="||W^p||_2, repeated product")
    ax.semilogy(
        p, torch.linalg.matrix_norm(by_eig.real, ord=2), "x", ms=4, label="||V Lambda^p V^-1||_2"
    )
    ax.semilogy(p, spec.spectral_radius ** p.double(), "--", label="rho^p")
    ax.semilogy(p, spec.sigma_max ** p.double(), ":", label="sigma_max^p")
    ax.set(
        xlabel="p (steps through the linear RNN)",
        ylabel="norm (log scale)",
        ylim=(float(scale.min()) / 10, float(scale.max()) * 100),
    )
    ax.set_title("W^p = V Lambda^p V^-1", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return Section(
        id="matrix-power",
        title="The unrolled linear RNN: W^p = V Lambda^p V^-1",
        lecture="lecture 002, vanishing and exploding through shared weights",
        claim=para(
            "With the identity activation, dh_t/dh_(t-p) is W_hh multiplied p times, and by the "
            "eigendecomposition W^p = V Lambda^p V^-1: the eigenvalues raised to the p-th power "
            "decide whether it vanishes (all below 1) or explodes (one above 1)."
        ),
        measured=measured,
        agree=agree,
        verdict=(
            f"V Lambda^p V^-1 reproduces W^p to {num(eig_error, 2)} and the engine's product to "
            f"{num(engine_error, 2)}; rho = {num(spec.spectral_radius, 3)} sets the long-run rate."
            if agree
            else "the eigendecomposition or the engine disagrees with the repeated product."
        ),
        figures=(
            figure(
                fig,
                "The norm of W^p computed two ways, with rho^p and sigma_max^p.",
                "powers of a matrix",
            ),
        ),
        numbers={
            "eigenvalues_real": lam.real,
            "eigenvalues_imag": lam.imag,
            "log10_norm_power": torch.log10(scale),
            "engine_log10": engine,
            "eig_error": eig_error,
            "engine_error": engine_error,
            "spectral_radius": spec.spectral_radius,
            "sigma_max": spec.sigma_max,
        },
        records={"linear": flow},
    )
