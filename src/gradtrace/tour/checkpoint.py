"""Lecture 000's random checkpoint, reproduced from its seed, and what its plot really shows.

The lecture draws, with numpy's legacy generator seeded 12345 and in this order: the states h
(5, 20), the inputs x (5, 20), the bias b_h (5, 1), the input weights W_hx (5, 5), then for each
example the eigenvalues (uniform in [0, 4), then in [4, 14)) and a Gaussian eigenvector matrix
Q, with W_hh = Q diag(eig) Q^-1. Column i of h and x is what step i + 1 reads (the state it
starts from, its input): gradtrace's checkpoint mode with row k-1 the state step k starts from.

Its `prod(k)` is not dh_t/dh_k. It starts from the number 1 and multiplies in place with `*=`,
which numpy does entry by entry; the Jacobian factor W_hh^T diag(sigma'(a)) it writes is a
matrix times `np.diag` of a (5, 5) array (the (5,) pre-activation plus the (5, 1) bias
broadcasts to (5, 5)), and `np.diag` of a matrix is its diagonal, a vector. So each factor is
the vector W_hh^T sigma'(a_i), and the "product" is their entrywise product; its loop runs from
column t-1 down to column k-1, t-k+1 factors where dh_t/dh_k has t-k. `lecture_products`
reproduces all of it; `analyse` in checkpoint mode measures the true product
J_t ... J_{k+1}, J_i = diag(sigma'(a_i)) W_hh, with gradtrace's engine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gradtrace.analysis.curve import analyse
from gradtrace.cells import RNNWeights, checkpoint, get_cell
from gradtrace.core.theory import matrix_spectrum, norm_product_bound_log10
from gradtrace.plots.figure import plt
from gradtrace.records.flow import GradientFlow
from gradtrace.tour.embed import figure
from gradtrace.tour.page import Figure, Section, esc, num, para, power, table

SEED, STEPS, UNITS = 12345, 20, 5
EXAMPLES = {"vanishing": (0.0, 4.0), "exploding": (4.0, 14.0)}  # eigenvalues in [lo, hi)


@dataclass(frozen=True)
class Checkpoint:
    """The lecture's draws, in the lecture's layout: h and x (H, T), b_h (H, 1), W_hx (H, I);
    per example the eigenvalues (H,) and the eigenvector matrix Q (H, H)."""

    h: np.ndarray
    x: np.ndarray
    b_h: np.ndarray
    W_hx: np.ndarray
    eigenvalues: dict[str, np.ndarray]
    eigenvectors: dict[str, np.ndarray]

    def recurrent(self, example: str) -> np.ndarray:
        """Q diag(eig) Q^-1 of one example, computed as the lecture does."""
        Q = self.eigenvectors[example]
        return Q @ np.diag(self.eigenvalues[example]) @ np.linalg.inv(Q)

    def weights(self, example: str, W_hh: np.ndarray | None = None) -> RNNWeights:
        """The sigmoid RNN of one example as gradtrace's weights (float64)."""
        W = self.recurrent(example) if W_hh is None else W_hh
        return RNNWeights(
            torch.from_numpy(W.copy()),
            torch.from_numpy(self.W_hx.copy()),
            torch.from_numpy(self.b_h[:, 0].copy()),
            "sigmoid",
        )


def lecture_checkpoint() -> Checkpoint:
    """Every draw of lecture 000, from np.random.RandomState(12345), in the lecture's order."""
    rng = np.random.RandomState(SEED)
    h = rng.randn(UNITS, STEPS)
    x = rng.randn(UNITS, STEPS)
    b_h = rng.randn(UNITS, 1)
    W_hx = rng.randn(UNITS, UNITS)
    eig, vectors = {}, {}
    for name, (lo, hi) in EXAMPLES.items():
        eig[name] = lo + rng.rand(UNITS) * (hi - lo)
        vectors[name] = rng.randn(UNITS, UNITS)
    return Checkpoint(h, x, b_h, W_hx, eig, vectors)


def _sigmoid_slope(z: np.ndarray) -> np.ndarray:
    s = 1 / (1 + np.exp(-z))
    return s * (1 - s)


def lecture_products(cp: Checkpoint, W_hh: np.ndarray) -> np.ndarray:
    """What the lecture plots at k = 1..T: the largest entry of its `prod(k)`, bug for bug.

    Returns:
        (T,) float64, entry k-1 for the lecture's k.
    """
    values = np.empty(STEPS)
    for k in range(1, STEPS + 1):
        acc: float | np.ndarray = 1.0  # numpy's *= turns the number into a vector at once
        for col in range(STEPS - 1, k - 2, -1):  # the lecture's loop: columns t-1 .. k-1
            pre = W_hh @ cp.h[:, col] + cp.W_hx @ cp.x[:, col] + cp.b_h  # (H,) + (H, 1): (H, H)
            acc = acc * (W_hh.T @ np.diag(_sigmoid_slope(pre)))  # np.diag(matrix): a vector
        values[k - 1] = np.max(acc)
    return values


def true_flows(cp: Checkpoint, example: str) -> dict[str, GradientFlow]:
    """c(k) = ||dh_T/dh_k|| for k = 0..T-1 by the engine, largest entry and spectral norm."""
    weights = cp.weights(example)
    x, h = torch.from_numpy(cp.x.T.copy()), torch.from_numpy(cp.h.T.copy())  # (T, I), (T, H)
    return {m: analyse(weights, x, states=h, metric=m) for m in ("maxabs", "spectral")}


def _slopes(cp: Checkpoint, example: str) -> np.ndarray:
    """sigma'(a_i) at every unit and step, (H, T): how saturated the checkpoint is."""
    W = cp.recurrent(example)
    return _sigmoid_slope(W @ cp.h + cp.W_hx @ cp.x + cp.b_h)


def checkpoint_section(example: str) -> Section:
    """One of the lecture's two examples: its curve, the true curve, the theory beside them."""
    cp = lecture_checkpoint()
    W = cp.recurrent(example)
    lecture = lecture_products(cp, W)
    flows = true_flows(cp, example)
    maxabs, spectral = flows["maxabs"], flows["spectral"]
    eig = np.sort(np.linalg.eigvals(W).real)
    spec = matrix_spectrum(torch.from_numpy(W))
    gamma = float(spectral.theory.gamma or 0.25)
    weights = cp.weights(example)
    x, h = torch.from_numpy(cp.x.T.copy()).unsqueeze(1), torch.from_numpy(cp.h.T.copy())
    run = checkpoint(get_cell("rnn"), weights, x, h.unsqueeze(1))
    step_bound = norm_product_bound_log10(run, "spectral")[0]  # (T,): prod_{t>k} ||J_t||
    median_slope = float(np.median(_slopes(cp, example)))
    k = np.arange(STEPS)
    truth = maxabs.log10_norm[0]
    # What the lecture plots at k = 1..t-1 against the true largest entry of dh_t/dh_k.
    gap = np.abs(np.log10(np.abs(lecture[:-1])) - truth[1:].numpy())
    lowest_column = min(range(STEPS - 1, k_ - 2, -1)[-1] for k_ in range(1, STEPS + 1))
    claim_word = "vanishing" if example == "vanishing" else "exploding"
    agree = spectral.verdict == claim_word
    numbers = {
        "lecture_curve": lecture,
        "true_log10_maxabs": truth,
        "true_log10_spectral": spectral.log10_norm[0],
        "bound_log10": spectral.theory.bound_log10,
        "step_norm_bound_log10": step_bound,
        "eigenvalues": eig,
        "drawn_eigenvalues": np.sort(cp.eigenvalues[example]),
        "sigma_max": spec.sigma_max,
        "spectral_radius": spec.spectral_radius,
        "gamma": gamma,
        "rate_per_step": spectral.rate_per_step,
        "flow_verdict": spectral.verdict,
        "eigen_prediction": spectral.theory.eigen_prediction,
        "lowest_column": lowest_column,
        "factors_at_k": [STEPS - k_ + 1 for k_ in range(1, STEPS + 1)],
        "median_slope": median_slope,
    }
    rows = [
        (
            str(k_),
            num(lecture[k_ - 1], 3),
            power(float(truth[k_])),
            power(float(spectral.log10_norm[0, k_])),
            power(float(spectral.theory.bound_log10[k_])),
        )
        for k_ in range(1, STEPS, 3)
    ]
    text = (
        para(
            f"Reproduced from seed {SEED}: eigenvalues of W_hh "
            f"{esc(', '.join(num(e, 3) for e in eig))} (spectral radius "
            f"{num(spec.spectral_radius)}), but sigma_max(W_hh) = {num(spec.sigma_max)}: "
            f"Q diag(eig) Q^-1 with a random Q is far from normal. The rigorous bound "
            f"(gamma sigma_max)^(t-k) = {num(gamma * spec.sigma_max)}^(t-k) grows, so it says "
            "nothing here; the eigenvalue criterion predicts "
            f"<em>{esc(spectral.theory.eigen_prediction)}</em>."
        )
        + para(
            f"The true product J_t ... J_(k+1) (gradtrace's engine) is <b>{esc(spectral.verdict)}"
            f"</b> at {num(spectral.rate_per_step, 3)} decades per step: "
            f"||dh_t/dh_0|| = {power(float(spectral.log10_norm[0, 0]))}. The lecture's curve "
            "is an entrywise product of vectors W_hh^T sigma'(a_i) with one factor too many; "
            f"at k = 1..{STEPS - 1} it differs from the true largest entry by up to "
            f"{num(float(gap.max()), 2)} decades, and it falls from {num(lecture[-1], 3)} at "
            f"k = {STEPS} to {num(lecture[0], 3)} at k = 1. "
            f"Its loop never reaches a negative column for the k = 1..{STEPS} it is called "
            f"with (the lowest is column {lowest_column}); called with k = 0 it would, and "
            "Python would silently wrap to the last column."
        )
        + table(
            (
                "k",
                "lecture's prod(k), max entry",
                "true max entry",
                "true ||.||_2",
                "(gamma sigma_max)^(t-k)",
            ),
            rows,
        )
    )
    if example == "exploding":
        text += para(
            f"Why it vanishes: with W_hh this large and N(0, 1) states the pre-activations are "
            f"large, so sigmoid'(a) is tiny (median {num(median_slope, 3)} over the "
            f"{UNITS * STEPS} unit-steps). The product of the step norms ||J_t||_2 itself is "
            f"{power(float(step_bound[0]))} over the 20 steps: rho(W_hh) &gt; 4 is necessary "
            "for growth, far from sufficient, because the same large weights saturate the "
            "sigmoid."
        )
    return Section(
        id=f"checkpoint-{example}",
        title=f"The lecture's checkpoint: the {example} example",
        lecture=f"lecture 000, section {'1.4' if example == 'vanishing' else '1.5'}",
        claim=para(
            "A sigmoid RNN whose W_hh has every eigenvalue below 1/gamma = 4 lets the early "
            "steps' share of the gradient die out; the eigenvalue condition suffices for "
            "vanishing."
            if example == "vanishing"
            else "A sigmoid RNN whose W_hh has every eigenvalue above 4 makes the early steps' "
            "share of the gradient blow up. (The condition is only necessary for exploding; "
            "the lecture builds this case on purpose to show the blow-up.)"
        ),
        measured=text,
        agree=agree,
        verdict=_verdict(example, spectral, spec.sigma_max, agree),
        figures=(_figure(example, lecture, maxabs, spectral, step_bound, k),),
        numbers=numbers,
        records={"maxabs": maxabs, "spectral": spectral},
    )


def _verdict(example: str, flow: GradientFlow, sigma_max: float, agree: bool) -> str:
    """One line: what the true product does, against the example's claim."""
    measured = (
        f"the true dh_t/dh_k is {flow.verdict} ({num(flow.rate_per_step, 3)} decades per step)"
    )
    if not agree:
        why = ": the large weights saturate the sigmoid" if example == "exploding" else ""
        return f"{measured}, not {example}{why}."
    if example == "exploding":
        return f"{measured}, as the lecture says."
    return (
        f"{measured}, as the lecture says, though sigma_max = {num(sigma_max)} > 4 leaves its "
        "eigenvalue argument unproved."
    )


def _figure(
    example: str,
    lecture: np.ndarray,
    maxabs: GradientFlow,
    spectral: GradientFlow,
    step_bound: torch.Tensor,
    k: np.ndarray,
) -> Figure:
    fig, ax = plt.subplots(figsize=(8.0, 4.4))
    positive = lecture > 0
    ks = np.arange(1, STEPS + 1)
    ax.semilogy(ks, np.abs(lecture), "x-", color="tab:red", lw=1, label="lecture's prod(k), |max|")
    if not positive.all():
        ax.semilogy(
            ks[~positive],
            np.abs(lecture[~positive]),
            "o",
            mfc="none",
            color="tab:red",
            label="(negative there)",
        )
    ax.semilogy(
        k,
        10 ** maxabs.log10_norm[0].numpy(),
        "o-",
        ms=3,
        color="tab:blue",
        label="true dh_t/dh_k, largest |entry|",
    )
    ax.semilogy(
        k,
        10 ** spectral.log10_norm[0].numpy(),
        "s-",
        ms=3,
        color="navy",
        label="true ||dh_t/dh_k||_2",
    )
    ax.semilogy(k, 10 ** step_bound.numpy(), ":", color="grey", label="prod ||J_t||_2 (bound)")
    rho = float(spectral.theory.spectral_radius) * float(spectral.theory.gamma or 0.25)
    ax.semilogy(
        k,
        rho ** (STEPS - k),
        "--",
        color="tab:orange",
        lw=1,
        label=f"(gamma rho)^(t-k), gamma rho = {rho:.3g}",
    )
    ax.set(
        xlabel="k (step the gradient flows back to; t = 20)",
        ylabel="contribution (log scale)",
        xticks=range(0, STEPS + 1, 2),
    )
    ax.set_title(f"Lecture 000, {example} example: its curve and the true product", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="best")
    return figure(
        fig,
        "The lecture's plotted values (red) beside the true products from gradtrace's engine "
        "(blue), the product of the step norms (grey, a rigorous bound that uses the real "
        "slopes) and the rate the eigenvalues suggest (orange). The bound (gamma sigma_max)^(t-k) "
        f"is {power(float(spectral.theory.bound_log10[0]))} at k = 0, off the chart.",
        f"lecture 000 {example} example",
    )
