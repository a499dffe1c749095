"""Theory beside measurement for one recurrent cell: the report behind `gradtrace curve`.

Two ways to get the step Jacobians J_1..J_T of a cell:

    trajectory mode   run s_t = step(x_t, s_{t-1}) from s_0 and take each J_t on the way
    checkpoint mode   (vanilla RNN, the lectures' way) the states are given: row k-1 of h (T, H)
                      is the state step k starts from, a_k = W_hh h[k-1] + W_hx x[k-1] + b and
                      J_k = diag(phi'(a_k)) W_hh

Then the engine gives c(k) = metric(J_T ... J_{k+1}) for every k, and the report puts next to it
gamma, sigma_max and rho of each recurrent block, the bound on c(k), the measured rate, the top
Lyapunov exponent, the verdict, the memory horizon, and a sentence on whether the eigenvalue
criterion and the measurement agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from gradtrace.cells import LSTMWeights, RNNWeights, get_cell, run_trajectory
from gradtrace.cells.lstm import lstm_cell_path_jacobian
from gradtrace.cells.random_weights import recurrent_blocks
from gradtrace.cells.rnn import rnn_jacobian
from gradtrace.core import theory
from gradtrace.core.activations import get_activation
from gradtrace.core.engine import contribution_curve, diagonal_curve
from gradtrace.core.lyapunov import top_exponent
from gradtrace.errors import check


@dataclass(frozen=True, eq=False)
class Theory:
    """The theoretical side of a report.

    Attributes:
        gamma: sup |phi'| of a vanilla RNN's activation; None for gated cells.
        sigma_max: largest singular value over the recurrent blocks.
        spectral_radius: largest spectral radius over the recurrent blocks.
        bound_log10: (T,) log10 upper bound on c(k): (gamma sigma_max)^(T-k) for a vanilla
            RNN, the product of the step Jacobians' spectral norms (worst over the batch) for
            gated cells.
        bound: which bound `bound_log10` is.
        blocks: sigma_max and rho of each recurrent block by name.
    """

    gamma: float | None
    sigma_max: float
    spectral_radius: float
    bound_log10: Tensor
    bound: str
    blocks: dict[str, theory.MatrixSpectrum] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class CurveReport:
    """Contribution curve of one cell with the theory beside it.

    `log10_norm` is (T,) or (B, T); the scalar summaries (rate, horizon, verdict, Lyapunov)
    are taken on the batch mean of log10 c(k), i.e. the geometric mean over sequences.
    """

    cell: str
    activation: str | None
    hidden: int
    mode: str
    metric: str
    log10_norm: Tensor
    theory: Theory
    rate_per_step: float
    lyapunov_max: float
    verdict: str
    horizon: int
    note: str
    cell_path_log10: Tensor | None = None

    @property
    def steps(self) -> int:
        return int(self.log10_norm.shape[-1])

    def __repr__(self) -> str:  # one line in a notebook, not pages of tensors
        name = self.cell + (f" {self.activation}" if self.activation else "")
        return (
            f"CurveReport({name}, H={self.hidden}, T={self.steps}, {self.mode}, {self.metric}: "
            f"{self.verdict}, {self.rate_per_step:+.3g} decades/step, horizon {self.horizon}, "
            f"lyapunov_max {self.lyapunov_max:+.3g})"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; non-finite numbers (an exactly zero product) become None."""
        t = self.theory
        out: dict[str, Any] = {
            "cell": self.cell,
            "activation": self.activation,
            "mode": self.mode,
            "metric": self.metric,
            "steps": self.steps,
            "hidden": self.hidden,
            "batch": 1 if self.log10_norm.ndim == 1 else int(self.log10_norm.shape[0]),
            "k": list(range(self.steps)),
            "log10_norm": _json(self.log10_norm),
            "verdict": self.verdict,
            "rate_per_step": _json_float(self.rate_per_step),
            "horizon": self.horizon,
            "lyapunov_max": _json_float(self.lyapunov_max),
            "note": self.note,
            "theory": {
                "gamma": t.gamma,
                "sigma_max": t.sigma_max,
                "spectral_radius": t.spectral_radius,
                "bound": t.bound,
                "bound_log10": _json(t.bound_log10),
                "eigen_prediction": (
                    theory.eigen_prediction(t.gamma, t.spectral_radius) if t.gamma else None
                ),
                "blocks": {
                    name: {"sigma_max": s.sigma_max, "spectral_radius": s.spectral_radius}
                    for name, s in t.blocks.items()
                },
            },
        }
        if self.cell_path_log10 is not None:
            out["cell_path_log10_norm"] = _json(self.cell_path_log10)
        return out


def _json_float(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _json(t: Tensor) -> list[Any]:
    values = t.detach().cpu().to(torch.float64)
    return [_json(row) if row.ndim else _json_float(float(row)) for row in values.unbind(0)]


def _theory(weights: Any, jacobians: Tensor, metric: str) -> Theory:
    blocks = {n: theory.matrix_spectrum(W) for n, W in recurrent_blocks(weights).items()}
    sigma = max((b.sigma_max for b in blocks.values()), default=math.nan)
    rho = max((b.spectral_radius for b in blocks.values()), default=math.nan)
    T, S = jacobians.shape[0], jacobians.shape[-1]
    if isinstance(weights, RNNWeights):
        gamma = get_activation(weights.activation).gamma
        bound = theory.rnn_bound_log10(gamma, sigma, T, metric, S)
        return Theory(gamma, sigma, rho, bound, "(gamma*sigma_max)^(T-k)", blocks)
    per_item = theory.norm_product_bound_log10(jacobians, metric)  # (T,) or (B, T)
    bound = per_item.amax(dim=0) if per_item.ndim == 2 else per_item
    return Theory(None, sigma, rho, bound, theory.norm_product_bound_label(jacobians), blocks)


def report_from_jacobians(
    cell: str,
    weights: Any,
    jacobians: Tensor,
    *,
    metric: str = "spectral",
    mode: str = "trajectory",
    cell_path: Tensor | None = None,
) -> CurveReport:
    """Measure c(k) from step Jacobians and put the theory of `weights` beside it.

    Args:
        cell: The cell's name, for the record.
        weights: The cell's weights (for gamma, sigma_max and rho).
        jacobians: J_1..J_T, (T, S, S) or (T, B, S, S).
        metric: "spectral", "frobenius" or "maxabs".
        mode: "trajectory" or "checkpoint", for the record.
        cell_path: LSTM only: the cell-state path Jacobians dc_t/dc_{t-1}, (T, B, H, H).
    """
    batched = jacobians.ndim == 4
    S = jacobians.shape[-1]
    P = S if not isinstance(weights, LSTMWeights) else weights.proj_size
    # For an LSTM the hidden-state path is the (h, h) block of d(h_T, c_T)/d(h_k, c_k).
    rows = cols = slice(0, P) if isinstance(weights, LSTMWeights) else None
    curve = contribution_curve(jacobians, metric, rows=rows, cols=cols).log10_norm
    mean_curve = curve.mean(dim=0) if batched else curve  # (T,)
    rate = theory.measured_rate(mean_curve)
    lyapunov_max = top_exponent(jacobians)
    th = _theory(weights, jacobians, metric)
    verdict = theory.curve_verdict(mean_curve)
    if th.gamma is not None:
        spectrum = theory.MatrixSpectrum(th.sigma_max, th.spectral_radius)
        note = theory.criterion_note(th.gamma, spectrum, verdict, rate)
    else:
        note = (
            f"Gated cell: measured {rate:+.3g} decades per step ({verdict}); the gates, not a "
            "fixed gamma, set each step's derivative, so the bound uses the step norms."
        )
    path = None
    if cell_path is not None:  # diag(f_t): the products stay diagonal, so O(T H) suffices
        diagonals = torch.diagonal(cell_path, dim1=-2, dim2=-1)  # (T, B, H)
        path = diagonal_curve(diagonals if batched else diagonals[:, 0], metric).log10_norm
    return CurveReport(
        cell=cell,
        activation=weights.activation if isinstance(weights, RNNWeights) else None,
        hidden=weights.hidden_size,
        mode=mode,
        metric=metric,
        log10_norm=curve,
        theory=th,
        rate_per_step=rate,
        lyapunov_max=lyapunov_max,
        verdict=verdict,
        horizon=theory.memory_horizon(mean_curve),
        note=note,
        cell_path_log10=path,
    )


def analyse_trajectory(
    cell: str, weights: Any, x: Tensor, s0: Tensor | None = None, *, metric: str = "spectral"
) -> CurveReport:
    """Run `cell` over x (T, B, I) from s0 (B, S; zeros if None) and report on its Jacobians.

    The returned curve is (B, T) for B > 1 and (T,) for B = 1.
    """
    c = get_cell(cell)
    check(
        isinstance(x, Tensor) and x.ndim == 3,
        f"`x` must have shape (T, B, I), got {tuple(x.shape) if isinstance(x, Tensor) else x!r}",
    )
    if s0 is None:
        s0 = torch.zeros(x.shape[1], c.state_size(weights), dtype=x.dtype, device=x.device)
    states, jac = run_trajectory(c, weights, x, s0)  # (T+1, B, S), (T, B, S, S)
    cell_path = None
    if cell == "lstm":
        T, B, _ = x.shape  # every step at once: J_t depends only on (x_t, s_{t-1})
        flat = lstm_cell_path_jacobian(
            weights, x.reshape(T * B, -1), states[:-1].reshape(T * B, -1)
        )
        cell_path = flat.reshape(T, B, *flat.shape[-2:])  # (T, B, H, H)
    if x.shape[1] == 1:
        jac = jac[:, 0]  # (T, S, S)
    return report_from_jacobians(cell, weights, jac, metric=metric, cell_path=cell_path)


def analyse_checkpoint(
    weights: RNNWeights, x: Tensor, h: Tensor, *, metric: str = "spectral"
) -> CurveReport:
    """The lectures' checkpoint mode for a vanilla RNN: states given, one Jacobian per row.

    Args:
        weights: The RNN's weights.
        x: Inputs, (T, I): row k-1 is x_k.
        h: States, (T, H): row k-1 is the state step k starts from.
    """
    check(
        isinstance(weights, RNNWeights),
        "`--mode checkpoint` is defined for the vanilla RNN (`--cell rnn`) only",
    )
    check(isinstance(h, Tensor) and h.ndim == 2, "`h` must have shape (T, H) in checkpoint mode")
    check(
        isinstance(x, Tensor) and x.ndim == 2 and x.shape[0] == h.shape[0],
        f"`x` must have shape (T, I) with T = {h.shape[0]} rows like `h`, "
        f"got {tuple(x.shape) if isinstance(x, Tensor) else x!r}",
    )
    check(h.shape[0] >= 1, "`h` must hold at least one state (T >= 1), got T = 0")
    jac = rnn_jacobian(weights, x, h)  # (T, H, H): the rows act as a batch of independent steps
    return report_from_jacobians("rnn", weights, jac, metric=metric, mode="checkpoint")
