"""Gradient flow through time in one cell or layer: the record every entry point shares.

`gradtrace curve`, each layer and direction of `gradtrace.trace`, a user's step function
(`trace_step`), and later the monitor and the results store all produce a `GradientFlow`.

Time runs in the recurrence's own order. For the steps t = 1..T of one layer and direction:

    log10_norm[b, k]        log10 c(k) = log10 metric(ds_T/ds_k), k = 0..T-1, sequence b; for
                            an LSTM the (h, h) block of d(h_T, c_T)/d(h_k, c_k)
    cell_path_log10[b, k]   LSTM only: log10 metric of prod_{t>k} diag(f_t), the cell path
    loss_grad_log10[b, k]   log10 ||dL/dh_k||, k = 0..T, with a loss

A reverse direction's k = 0 is its initial state and its last step reads x_1. The summaries
(rate, verdict, horizon, Lyapunov) are taken on the batch mean of log10 c(k), the geometric
mean over sequences; `gradtrace.core.theory` defines each of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from gradtrace.records.base import Record


@dataclass(frozen=True, eq=False, repr=False)
class MatrixSpectrum(Record):
    """Largest singular value and spectral radius of one square recurrent block."""

    sigma_max: float
    spectral_radius: float


@dataclass(frozen=True, eq=False, repr=False)
class LyapunovSpectrum(Record):
    """Lyapunov exponents of a Jacobian product and the per-step factors they average.

    Exponents are in nats per step (natural log); divide by ln 10 for decades per step.

    Attributes:
        exponents: lambda_1 >= ... >= lambda_K, shape (K,) or (B, K) for batched input.
        local_log_factors: log R_t[i, i] for every step, shape (T, K) or (T, B, K), columns in
            the order of `exponents`, so their mean over T is `exponents`; -inf where a
            Jacobian annihilates a direction (a dead ReLU unit, say).
    """

    exponents: Tensor
    local_log_factors: Tensor

    @property
    def top(self) -> Tensor:
        """The largest exponent lambda_1, shape () or (B,)."""
        return self.exponents[..., 0]

    @property
    def steps(self) -> int:
        """The number of Jacobians T the exponents average over."""
        return int(self.local_log_factors.shape[0])


@dataclass(frozen=True, eq=False, repr=False)
class Theory(Record):
    """The theory beside a measured curve.

    Attributes:
        gamma: sup |phi'| of a vanilla RNN's activation; None for gated cells and step
            functions, whose derivative the gates set step by step.
        sigma_max: Largest singular value over the square recurrent blocks (NaN if none).
        spectral_radius: Largest spectral radius over them (NaN if none).
        eigen_prediction: What the eigenvalue criterion rho < 1/gamma predicts, "vanishing" or
            "exploding possible"; None without a gamma.
        bound: Which upper bound on c(k) `bound_log10` is.
        bound_log10: (T,) log10 of that bound for k = 0..T-1 (the worst over the batch).
        blocks: sigma_max and rho of each square recurrent block, by name.
    """

    gamma: float | None
    sigma_max: float
    spectral_radius: float
    eigen_prediction: str | None
    bound: str
    bound_log10: Tensor
    blocks: dict[str, MatrixSpectrum]


@dataclass(frozen=True, eq=False, repr=False)
class GradientFlow(Record):
    """How gradients flow back through time in one cell, layer and direction.

    Attributes:
        cell: "rnn", "lstm", "gru", or "step" for a user's step function.
        activation: phi of a vanilla RNN; None for gated cells and step functions.
        metric: How c(k) measures a matrix: "spectral", "frobenius" or "maxabs".
        mode: "trajectory" (Jacobians along the states the recurrence produced) or
            "checkpoint" (states given, one Jacobian per row, the lectures' way).
        dtype: The dtype the Jacobians were computed in.
        hidden_size: H.
        proj_size: P, the size of h (P = H without an LSTM projection).
        state_size: S (H, or P + H for an LSTM's (h, c)).
        log10_norm: (B, T), see the module docstring.
        theory: gamma, sigma_max, rho, the bound.
        rate_per_step: Measured slope of log10 c(k) in decades per step (batch mean curve).
        verdict: One of `gradtrace.core.theory.VERDICTS`.
        horizon: Memory horizon in steps (`gradtrace.core.theory.memory_horizon`).
        lyapunov_max: Top Lyapunov exponent along the trajectory, nats per step (batch mean):
            (1/T) ln sigma_1(J_T ... J_1) (`gradtrace.analysis.flow.lyapunov_of`).
        note: Words that put the measurement and the theory together.
        cell_path_log10: (B, T), LSTM only.
        loss_grad_log10: (B, T + 1), with a loss only.
        lyapunov: The top-K Lyapunov spectrum per sequence, when asked for.
        module: The module's dotted path in a traced model ("" for a curve job).
        layer: The layer index.
        direction: "forward" or "reverse".
        calls: How many calls of the module make up the traced recurrence (a loop over a
            cell is one call per step, chained into one recurrence).
        untraced_calls: Further calls of the module that did not continue that recurrence (a
            second, unrelated sequence), counted but not traced.
        output_error: Largest |re-executed output - module's own output| of a traced layer;
            None where gradtrace's dropout masks make them differ by design.
        dropout: The rate at which the module's own inter-layer dropout dropped this layer's
            input in a train-mode trace (0 for its first layer: the model's dropout layers
            before the module are part of the input as given, drawn from
            `TraceResult.dropout_seed`).
        estimate: "exact", or "matrix-free" where c(k) is a lower bound from a few probe
            vectors (`gradtrace.core.matrix_free`).
        estimate_error: For a matrix-free curve, the largest change of log10 c(k) in its last
            refinement round, decades; 0 for an exact one.
        sequences: The batch rows of the model's input that this record's rows are, in
            order, where a PackedSequence of sequences of different lengths was traced one
            length at a time (each length its own recurrence of its own T steps); None: the
            whole batch.
    """

    KIND = "gradient_flow"

    cell: str
    activation: str | None
    metric: str
    mode: str
    dtype: str
    hidden_size: int
    proj_size: int
    state_size: int
    log10_norm: Tensor
    theory: Theory
    rate_per_step: float
    verdict: str
    horizon: int
    lyapunov_max: float
    note: str
    cell_path_log10: Tensor | None = None
    loss_grad_log10: Tensor | None = None
    lyapunov: LyapunovSpectrum | None = None
    module: str = ""
    layer: int = 0
    direction: str = "forward"
    calls: int = 1
    untraced_calls: int = 0
    output_error: float | None = None
    dropout: float = 0.0
    estimate: str = "exact"
    estimate_error: float = 0.0
    sequences: tuple[int, ...] | None = None

    @property
    def steps(self) -> int:
        """T."""
        return int(self.log10_norm.shape[-1])

    @property
    def batch(self) -> int:
        """B."""
        return int(self.log10_norm.shape[0])

    @property
    def label(self) -> str:
        """A short name such as "encoder.lstm layer 1 reverse" (a traced layer; with ", sequences
        0, 3" for one length of a packed batch) or "rnn tanh"."""
        if self.module or self.output_error is not None:
            label = f"{self.module or self.cell} layer {self.layer} {self.direction}"
            if self.sequences is not None:
                shown = ", ".join(map(str, self.sequences[:6]))
                more = f", ... ({len(self.sequences)} in all)" if len(self.sequences) > 6 else ""
                label += f", sequence{'s' if len(self.sequences) > 1 else ''} {shown}{more}"
            return label
        return self.cell + (f" {self.activation}" if self.activation else "")

    def __repr__(self) -> str:
        return (
            f"GradientFlow({self.label}, H={self.hidden_size}, T={self.steps}, B={self.batch}, "
            f"{self.mode}, {self.metric}: {self.verdict}, {self.rate_per_step:+.3g} decades/step, "
            f"horizon {self.horizon}, lyapunov_max {self.lyapunov_max:+.3g})"
        )
