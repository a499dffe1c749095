"""The one assembler of theory beside measurement: step Jacobians in, a `GradientFlow` out.

`gradtrace curve`, `analyse`, every traced layer of `gradtrace.trace` and a user's step
function (`trace_step`) all end here. Given where the step Jacobians J_1..J_T come from (a cell's
`Replay`, or autograd on a step function) it measures

    c(k) = metric(ds_T/ds_k)        by the core's engine; for an LSTM the (h, h) block
    prod_t diag(f_t)                the LSTM cell path, in O(T H) from the forget gates
    lambda_1                        the top Lyapunov exponent (and the top-K spectrum on request)

and puts beside it the theory of the weights (gamma, sigma_max and rho of each recurrent block,
the bound on c(k), the eigenvalue criterion), then the judgement (rate, verdict, horizon) and
the note from `gradtrace.core.theory`. Shapes: T time, B batch, S state, H hidden, P = h size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from gradtrace.budgets import require
from gradtrace.cells import LSTMWeights, Replay, RNNWeights
from gradtrace.core import theory
from gradtrace.core.activations import get_activation
from gradtrace.core.engine import check_metric, contribution_curve, diagonal_curve
from gradtrace.core.factors import StepSource, as_source, hold
from gradtrace.core.lyapunov import backward_frame, source_spectrum, start_frame, top_exponent
from gradtrace.core.matrix_free import matrix_free_curve, matrix_free_work, resolve_estimate
from gradtrace.errors import check, check_seed
from gradtrace.io.devices import dtype_name
from gradtrace.records.flow import GradientFlow, LyapunovSpectrum, MatrixSpectrum, Theory

LyapunovOption = int | str | None


@dataclass(frozen=True)
class Steps:
    """Where the step Jacobians of one recurrence come from.

    Attributes:
        source: J_1..J_T: a (T, B, S, S) tensor, or a source that produces them a chunk at a
            time (a cell's `Replay`), which every measurement streams.
        weights: The cell's weights, for the theory; None for a step function.
        cell: "rnn", "lstm", "gru" or "step".
        mode: "trajectory" or "checkpoint".
        forget_gates: LSTM only: f_t, (T, B, H), the cell path's diagonals.
        block: The entries of the state that c(k) measures (rows and columns of ds_T/ds_k);
            None for the cell's own choice (an LSTM's h, any other cell's whole state).
    """

    source: Tensor | StepSource
    weights: Any
    cell: str
    mode: str
    forget_gates: Tensor | None = None
    block: slice | None = None

    @classmethod
    def of(cls, run: Replay) -> Steps:
        """The steps of a cell's replay, streamed from its states (a trajectory's are
        checked by `check_trajectory`; a checkpoint's were checked as they came in)."""
        mode = "trajectory" if run.final is not None else "checkpoint"
        if mode == "trajectory":
            check_trajectory(run.states)
        return cls(run, run.weights, run.cell.name, mode, run.cell_path())


def check_trajectory(states: Tensor) -> None:
    """Refuse a trajectory s_0..s_T (T + 1, B, S) whose states overflowed: from there its
    Jacobians are NaN or zero (phi'(NaN) = 0), which would read as a vanishing gradient where
    the recurrence explodes."""
    bad = ~torch.isfinite(states).flatten(1).all(dim=1)  # (T + 1,)
    if bool(bad.any()):
        t = int(torch.nonzero(bad).min())
        check(
            False,
            f"the recurrence's states overflow to Inf/NaN at step {t} of {states.shape[0] - 1}"
            " (its forward pass explodes), so no gradient through time is defined there; "
            "expected states that stay finite: fewer steps, or recurrent weights of a smaller "
            "spectral radius",
        )


def check_lyapunov_option(lyapunov: LyapunovOption) -> None:
    """Raise GradtraceError unless `lyapunov` is None, an integer K >= 1 or "full"."""
    ok = lyapunov is None or lyapunov == "full"
    ok = ok or (isinstance(lyapunov, int) and not isinstance(lyapunov, bool) and lyapunov >= 1)
    check(ok, f"`lyapunov` must be None, an integer K >= 1 or 'full', got {lyapunov!r}")


def lyapunov_of(
    jacobians: Tensor | StepSource,
    lyapunov: LyapunovOption,
    seed: int,
    first: Tensor | None = None,
) -> tuple[float, LyapunovSpectrum | None]:
    """The top exponent (batch mean) and, when asked, the top-K spectrum of each sequence
    (on the CPU in float64): the finite-time exponents (1/T) ln sigma_i(J_T ... J_1).

    Given the exact spectral c(0) of the full state (`first`, log10 per sequence), lambda_1
    is (1/T) ln c(0) itself. Otherwise it and the spectrum start from one `backward_frame` of
    the product (from a Q_0 drawn on the CPU in float64 from `seed`, so the same seed gives
    the same estimate on any device), so they measure the product itself, to within about
    (sigma_{i+1} / sigma_i)^2 / T of it, not a random direction's growth, which on a short or
    degenerate product falls well below it. K >= 1 asks for the top K exponents of the full
    state (capped at its size S), "full" for all S, None for none.

    Args:
        jacobians: J_1..J_T of B sequences, (T, B, S, S) or a step source.
    """
    source, _ = as_source(jacobians)
    S, T = source.size, source.steps
    K = 1 if lyapunov is None else S if lyapunov == "full" else min(int(lyapunov), S)
    exact = None if first is None else math.log(10) * float(first.mean()) / T
    if lyapunov is None and exact is not None:
        return exact, None
    frame = backward_frame(source, start_frame(S, K, seed))  # (B, S, K)
    top = top_exponent(source, start=frame[..., 0]) if exact is None else exact
    if lyapunov is None:
        return top, None
    spectrum = source_spectrum(source, K, frame)
    return top, LyapunovSpectrum(
        spectrum.exponents.to("cpu", torch.float64),
        spectrum.local_log_factors.to("cpu", torch.float64),
    )


def theory_of(weights: Any, jacobians: Tensor | StepSource, metric: str) -> Theory:
    """gamma, sigma_max and rho of each block, the eigenvalue criterion and the bound on c(k).

    A vanilla RNN's bound is (gamma sigma_max)^(T-k); any other cell's (and a step
    function's, `weights` None) is the product of the step norms, the worst over the batch.
    A step function has no weights: its sigma_max and rho are the largest over the steps of
    ||J_t||_2 and rho(J_t) (NaN where computing them exactly would cost more than the curve).

    Args:
        weights: The cell's weights, or None.
        jacobians: J_1..J_T, (T, B, S, S) or a step source.
        metric: The metric of the curve.
    """
    blocks: dict[str, MatrixSpectrum] = {}
    if weights is not None:
        blocks = {n: theory.matrix_spectrum(W) for n, W in weights.recurrent_blocks().items()}
    sigma = max((b.sigma_max for b in blocks.values()), default=math.nan)
    rho = max((b.spectral_radius for b in blocks.values()), default=math.nan)
    source, _ = as_source(jacobians)
    T, S = source.steps, source.size
    if isinstance(weights, RNNWeights):
        gamma = get_activation(weights.activation).gamma
        bound = theory.rnn_bound_log10(gamma, sigma, T, metric, S)
        prediction = theory.eigen_prediction(gamma, rho)
        return Theory(gamma, sigma, rho, prediction, "(gamma*sigma_max)^(T-k)", bound, blocks)
    if weights is None:  # a step function: the theory of its step Jacobians themselves
        steps = theory.step_spectra(source)
        if steps is not None:
            blocks = {"J_t": steps}
            sigma, rho = steps.sigma_max, steps.spectral_radius
    per_item = theory.norm_product_bound_log10(source, metric).amax(dim=0)  # (T,)
    label = theory.norm_product_bound_label(source)
    return Theory(None, sigma, rho, None, label, per_item.to("cpu", torch.float64), blocks)


def _cpu(t: Tensor) -> Tensor:
    return t.detach().to("cpu", torch.float64)


def _zeros_of(curve: Tensor) -> str:
    """A sentence for a batch in which some sequences, not all, reach an exactly zero product:
    the batch is judged by its mean of log10 c(k), which one zero makes -inf."""
    dead = int((curve == -math.inf).any(dim=1).sum())
    B = int(curve.shape[0])
    if dead in (0, B):
        return ""
    return (
        f" That holds for the batch's mean of log10 c(k), which an exact zero makes -inf: "
        f"{dead} of its {B} sequences reach one, while in the other {B - dead} c(k) stays "
        "nonzero at every step (each sequence's curve is in log10_norm)."
    )


def assemble(
    steps: Steps,
    *,
    metric: str = "spectral",
    loss_grad_log10: Tensor | None = None,
    lyapunov: LyapunovOption = None,
    seed: int = 0,
    estimate: str = "auto",
    **provenance: Any,
) -> GradientFlow:
    """Measure c(k) from the steps and put the theory, the judgement and the note beside it.

    Args:
        steps: The step Jacobians and what they came from.
        metric: "spectral", "frobenius" or "maxabs".
        loss_grad_log10: log10 ||dL/dh_k||, (B, T + 1), when a loss was given.
        lyapunov: K, "full" or None: the top-K Lyapunov spectrum besides lambda_1.
        seed: Seeds the Lyapunov start directions (and a matrix-free estimate's frame).
        estimate: "exact", "matrix-free" (`gradtrace.core.matrix_free`, spectral only) or
            "auto": exact unless its work is over the budget in force.
        **provenance: module, layer, direction, calls, output_error of a traced layer.

    Returns:
        The `GradientFlow`, every tensor on the CPU in float64.
    """
    check_metric(metric)
    check_lyapunov_option(lyapunov)
    check_seed(seed)
    J = hold(as_source(steps.source)[0])  # streamed, or held when small, by all below
    w = steps.weights
    S = J.size
    P = S if w is None else w.proj_size
    # For an LSTM the hidden-state path is the (h, h) block of d(h_T, c_T)/d(h_k, c_k).
    block = slice(0, P) if isinstance(w, LSTMWeights) else steps.block
    if steps.block is not None:
        P = len(range(S)[steps.block])
    item = torch.finfo(J.dtype).bits // 8
    how = resolve_estimate(estimate, metric, J.steps, J.batch, S, item)
    if how == "matrix-free":  # beyond the exact sweep's budget: the estimate must fit it
        require(matrix_free_work(J.steps, J.batch, S, item), "the sequence's length or batch")
    error = 0.0
    if how == "exact":
        curve = _cpu(contribution_curve(J, metric, rows=block, cols=block).log10_norm)  # (B, T)
    else:
        estimated = matrix_free_curve(J, rows=block, cols=block, seed=seed)
        curve, error = _cpu(estimated.log10_norm), estimated.error
    path = None
    if steps.forget_gates is not None:  # diag(f_t): the products stay diagonal, O(T H)
        path = _cpu(diagonal_curve(steps.forget_gates, metric).log10_norm)
    judgement = theory.judge(curve.mean(dim=0), metric, P)
    full = block is None and metric == "spectral" and how == "exact"  # c(0) = sigma_1(P)
    top, spectrum_of_lyapunov = lyapunov_of(J, lyapunov, seed, curve[:, 0] if full else None)
    th = theory_of(w, J, metric)
    known = th.gamma is not None or "J_t" in th.blocks
    spectrum = MatrixSpectrum(th.sigma_max, th.spectral_radius) if known else None
    return GradientFlow(
        cell=steps.cell,
        activation=w.activation if isinstance(w, RNNWeights) else None,
        metric=metric,
        mode=steps.mode,
        dtype=dtype_name(J.dtype),
        hidden_size=w.hidden_size if w is not None else P,
        proj_size=P,
        state_size=S,
        log10_norm=curve,
        theory=th,
        rate_per_step=judgement.rate_per_step,
        verdict=judgement.verdict,
        horizon=judgement.horizon,
        lyapunov_max=top,
        note=theory.write_note(judgement, th.gamma, spectrum, steps.cell) + _zeros_of(curve),
        cell_path_log10=path,
        loss_grad_log10=None if loss_grad_log10 is None else _cpu(loss_grad_log10),
        lyapunov=spectrum_of_lyapunov,
        estimate=how,
        estimate_error=error,
        **provenance,
    )
