"""The spectral curve without S^3 work: a few vector products per step instead of a product.

The exact engine carries the whole product P_k = ds_T/ds_k (R x S) backwards at O(S^3) per
step. For a large state that is too much; this module carries r rows of it instead,

    Y_k = U^T P_k           (r x S, U an orthonormal R x r frame at time T)
    Y_{k-1} = Y_k J_k       r vector-Jacobian products per step, O(r S^2) (`Factors.left`)

and takes c(k) ~ sigma_1(Y_k[:, cols]) = sigma_1(U^T P_k[rows, cols]), a lower bound on
sigma_1(P_k[rows, cols]) for any orthonormal U, equal to it when U holds the top left singular
vector of P_k[rows, cols]. Those vectors settle as k falls (the products grow on the right, so
their images converge: the output-side directions that grow fastest), so U is refined by block
power iteration on the longest product M = P_0[rows, cols]:

    U <- orth(M M^T U)      one backward sweep (U^T M, which is also the curve's sweep) and one
                            forward sweep of r Jacobian-vector products (`Factors.right`)

Each round costs O(T B r S^2) and gives a curve; rounds stop when no log10 c(k) moves by more
than `TOLERANCE` decades, or after `ROUNDS`. The estimate's error is stated as that last change
(`estimate_error`, decades): an indicator of convergence, not a bound. The estimate is tight
where the top singular direction has settled, which is all but the last steps before T for a
recurrence that contracts or expands; for the few products nearest T it can be low.

Numerics as in the engine: each carried block is divided by its largest entry at every step
and the log of that factor kept in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from gradtrace import budgets
from gradtrace.core.engine import sweep_work
from gradtrace.core.factors import (
    CHUNK_BYTES,
    StepSource,
    chunk_steps,
    chunks_backward,
    chunks_forward,
)
from gradtrace.core.spectral import eigvalsh_psd
from gradtrace.errors import check

RANK = 8  # rows carried: the frame U's columns
ROUNDS = 4  # refinements of U at most
TOLERANCE = 1e-3  # decades: stop refining once no c(k) moves by more than this
ESTIMATES = ("auto", "exact", "matrix-free")


def check_estimate(estimate: str, metric: str) -> None:
    """Raise `GradtraceError` unless `estimate` is one of `ESTIMATES` and fits `metric`."""
    check(
        estimate in ESTIMATES,
        f"`estimate` must be one of {', '.join(ESTIMATES)}, got {estimate!r}",
    )
    check(
        estimate != "matrix-free" or metric == "spectral",
        f"`estimate` matrix-free measures the spectral norm only, got `metric` {metric!r}",
    )


def _frame_rank(T: int, rank: int) -> int:
    spans = 1
    while 4 ** (spans - 1) < T:
        spans += 1
    return rank + 2 * (spans - 1)


def matrix_free_work(steps: int, batch: int, size: int, itemsize: int = 8) -> budgets.Work:
    """The estimated cost of `matrix_free_curve`: per round one measured backward sweep of the
    whole frame and a backward and a forward sweep per span (about 8/3 T steps), O(r S^2) a
    step, plus the chunk of Jacobians a dense source forms."""
    T, B, S = steps, batch, size
    r = _frame_rank(T, RANK)
    per_round = 2.0 * B * r * S * S * (T + 8.0 * T / 3.0)
    chunk = min(T, max(1, CHUNK_BYTES // max(1, B * S * S * itemsize)))
    memory = itemsize * B * (S * S * chunk + r * S * (chunk + 4))
    return budgets.Work(memory=memory, flops=ROUNDS * per_round, steps=ROUNDS * 4.0 * T)


def resolve_estimate(
    estimate: str, metric: str, steps: int, batch: int, size: int, itemsize: int = 8
) -> str:
    """ "exact" or "matrix-free": "auto" is exact unless the exact sweep's estimated work is
    over the budget in force and the metric is spectral. (Whether the matrix-free estimate fits
    the budget is the caller's to check, naming what drives its cost: `matrix_free_work`.)"""
    check_estimate(estimate, metric)
    if estimate != "auto":
        return estimate
    if metric != "spectral":
        return "exact"
    exact = sweep_work(steps, batch, size, metric, itemsize)
    limit = budgets.current()
    over = exact.seconds > limit.seconds or exact.memory > limit.memory
    return "matrix-free" if over else "exact"


@dataclass(frozen=True)
class MatrixFreeCurve:
    """A matrix-free estimate of the spectral curve.

    Attributes:
        log10_norm: log10 of the estimate of sigma_1(ds_T/ds_k[rows, cols]), (B, T), a lower
            bound on the exact value.
        error: The largest change of any log10 c(k) in the last round, decades.
        rounds: How many rounds ran.
    """

    log10_norm: Tensor
    error: float
    rounds: int


def _peak(X: Tensor) -> Tensor:
    """Divide each (B, ., .) block by its largest |entry| in place; return log of it (B,)."""
    peak = X.abs().amax(dim=(1, 2), keepdim=True)
    X.div_(peak.clamp_min(torch.finfo(X.dtype).tiny))
    return torch.log(peak.view(-1).to(torch.float64))


def _backward(
    source: StepSource, U: Tensor, rows: slice, cols: slice, stop: int = 0, measure: bool = True
) -> tuple[Tensor | None, Tensor]:
    """Carry Y = U^T P_k from k = T down to `stop`: with `measure` the log of
    sigma_1(Y_k[:, cols]) for k = stop..T-1, (T - stop, B); and Y_stop (B, r, S), rescaled."""
    T, B, S = source.steps, source.batch, source.size
    r = U.shape[-1]
    Y = torch.zeros(B, r, S, dtype=source.dtype, device=source.device)
    Y[:, :, rows] = U.mT  # (B, r, S): U^T P_T with P_T the identity rows
    scale = torch.zeros(B, dtype=torch.float64, device=source.device)
    log_c = torch.empty(T - stop, B, dtype=torch.float64, device=source.device)
    for begin, end in chunks_backward(T - stop, chunk_steps(source)):
        factors = source.factors(stop + begin, stop + end)
        kept = torch.empty(factors.steps, B, r, S, dtype=Y.dtype, device=Y.device)
        logs = torch.empty(factors.steps, B, dtype=torch.float64, device=Y.device)
        for i in range(factors.steps - 1, -1, -1):
            Y = factors.left(i, Y)  # (B, r, S): Y_k = Y_{k+1} J_{k+1}
            scale = scale + _peak(Y)
            if measure:
                kept[i], logs[i] = Y, scale
        if measure:
            block = kept[..., cols]  # (n, B, r, C)
            gram = (block @ block.mT).to(torch.float64)  # (n, B, r, r)
            top = eigvalsh_psd(gram)[..., -1].clamp_min(0)
            log_c[begin:end] = logs + 0.5 * torch.log(top)
    return (log_c if measure else None), Y


def _forward(source: StepSource, V: Tensor, rows: slice, start: int = 0) -> Tensor:
    """P_start[rows, :] V for V (B, S, r): J_T ... J_{start+1} V by r Jacobian-vector
    products per step, orthonormalised, (B, R, r)."""
    for begin, end in chunks_forward(source.steps - start, chunk_steps(source)):
        factors = source.factors(start + begin, start + end)
        for i in range(factors.steps):
            V = factors.right(i, V)  # (B, S, r)
            _peak(V)
    Q, _ = torch.linalg.qr(V[:, rows].to(torch.float64))
    return Q.to(V.dtype)


def _refine(source: StepSource, U: Tensor, rows: slice, cols: slice, span: int) -> Tensor:
    """One round of block power iteration on M = P_{T-span}[rows, cols]: orth(M M^T U)."""
    T, B, S = source.steps, source.batch, source.size
    _, Y = _backward(source, U, rows, cols, stop=T - span, measure=False)  # U^T M (all cols)
    V = torch.zeros(B, S, U.shape[-1], dtype=source.dtype, device=source.device)
    V[:, cols] = Y[..., cols].mT  # M^T U, scaled
    return _forward(source, V, rows, start=T - span)


def _spans(T: int) -> list[int]:
    """The products whose top directions the frame follows: T steps (the longest), and 1, 4,
    16, ... steps back from T, where those directions are still settling."""
    spans, n = [T], 1
    while n < T:
        spans.append(n)
        n *= 4
    return spans


def matrix_free_curve(
    source: StepSource,
    *,
    rows: slice | None = None,
    cols: slice | None = None,
    rank: int = RANK,
    rounds: int = ROUNDS,
    tolerance: float = TOLERANCE,
    seed: int = 0,
) -> MatrixFreeCurve:
    """Estimate c(k) = sigma_1(ds_T/ds_k[rows, cols]) for every k in O(T B r S^2).

    The frame is the union of `rank` directions refined on the longest product and two on
    each shorter one of 1, 4, 16, ... steps (`_spans`), so that the products nearest T, whose
    top directions have not settled yet, are followed too.

    Args:
        source: J_1..J_T of B sequences, a chunk at a time (a cell's `Replay`).
        rows: The product's rows measured (e.g. an LSTM's h); all by default.
        cols: Its columns measured; all by default.
        rank: Directions refined on the longest product (capped at the rows measured).
        rounds: The most refinements of the frame (at least 2 give an error estimate).
        tolerance: Stop once no log10 c(k) moved by more than this many decades.
        seed: Seeds the first frame.

    Raises:
        GradtraceError: on a bad `rank` or `rounds`, or non-finite Jacobians.
    """
    for name, value in (("rank", rank), ("rounds", rounds)):
        check(
            isinstance(value, int) and not isinstance(value, bool) and value >= 1,
            f"`{name}` must be a whole number of at least 1, got {value!r}",
        )
    T, S, B = source.steps, source.size, source.batch
    rows, cols = rows or slice(0, S), cols or slice(0, S)
    R, C = len(range(S)[rows]), len(range(S)[cols])
    gen = torch.Generator().manual_seed(seed)
    frames = {}
    for span in _spans(T):
        r = min(rank if span == T else 2, R, C)
        start = torch.linalg.qr(torch.randn(R, r, generator=gen, dtype=torch.float64))[0]
        frames[span] = start.to(source.device, source.dtype).expand(B, R, r).contiguous()
    previous: Tensor | None = None
    error = math.inf
    done = 0
    while done < rounds:
        done += 1
        frames = {span: _refine(source, U, rows, cols, span) for span, U in frames.items()}
        union = torch.cat(list(frames.values()), dim=-1).to(torch.float64)  # (B, R, sum r)
        U = torch.linalg.qr(union)[0][..., : min(R, union.shape[-1])].to(source.dtype)
        log_c, _ = _backward(source, U, rows, cols)
        assert log_c is not None  # measured
        check(
            not bool(torch.isnan(log_c).any()),
            "`jacobians` must be finite; the matrix-free sweep met NaN",
        )
        if previous is not None:
            moved = (log_c - previous).abs()
            finite = moved[torch.isfinite(moved)]
            error = float(finite.max()) / math.log(10) if finite.numel() else 0.0
        previous = log_c
        if error <= tolerance:
            break
    assert previous is not None  # at least one round ran
    log10 = (previous / math.log(10)).T.to("cpu")  # (B, T)
    return MatrixFreeCurve(log10, error, done)
