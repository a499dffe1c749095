"""Tests for gradtrace.core.matrix_free: the spectral curve from a few vector products a step.

References, float64: the exact engine (itself checked against torch.linalg.svdvals of explicit
products in test_engine and test_streaming); a closed form for scaled orthogonal steps,
||a_T Q_T ... a_{k+1} Q_{k+1}||_2 = prod_{t>k} a_t, which any orthonormal frame measures exactly
(1e-12 on log10). The estimate is a lower bound (to 1e-12) and, where the products' top
direction has settled (all but the last 16 steps here), within 1e-3 decades of the exact value.
"""

from __future__ import annotations

import math

import pytest
import torch

import gradtrace
from gradtrace.cells import get_cell, random_weights, replay
from gradtrace.core.engine import contribution_curve
from gradtrace.core.factors import TensorSource
from gradtrace.core.matrix_free import matrix_free_curve, resolve_estimate
from gradtrace.errors import GradtraceError
from gradtrace.records import GradientFlow

DTYPE = torch.float64


@pytest.mark.parametrize(
    ("cell", "H", "spectrum"),
    [("rnn", 48, "radius:1.0"), ("rnn", 40, None), ("lstm", 16, None), ("gru", 16, None)],
)
def test_the_estimate_is_a_tight_lower_bound_on_the_exact_curve(
    cell: str, H: int, spectrum: str | None
) -> None:
    T = 200
    w = random_weights(cell, H, 6, spectrum=spectrum, seed=3)
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(T, 2, 6, generator=gen, dtype=DTYPE)
    run = replay(get_cell(cell), w, x, torch.zeros(2, w.state_size, dtype=DTYPE))
    block = slice(0, H) if cell == "lstm" else None
    exact = contribution_curve(run, "spectral", rows=block, cols=block).log10_norm
    estimate = matrix_free_curve(run, rows=block, cols=block)
    gap = exact - estimate.log10_norm  # >= 0: a lower bound
    assert float(gap.min()) >= -1e-12
    assert float(gap[:, : T - 16].max()) <= 1e-3
    assert 0 <= estimate.error < 0.1 and 1 <= estimate.rounds <= 4


def test_scaled_orthogonal_steps_are_measured_exactly() -> None:
    T, B, S = 120, 2, 30
    gen = torch.Generator().manual_seed(1)
    Q, _ = torch.linalg.qr(torch.randn(T, B, S, S, generator=gen, dtype=DTYPE))
    a = torch.exp(0.1 * torch.randn(T, B, generator=gen, dtype=DTYPE))
    J = a[..., None, None] * Q
    expected = torch.flip(torch.cumsum(torch.flip(torch.log10(a), [0]), 0), [0]).T  # (B, T)
    estimate = matrix_free_curve(TensorSource(J))
    torch.testing.assert_close(estimate.log10_norm, expected, atol=1e-12, rtol=0)


def test_a_curve_job_and_a_trace_record_the_estimate() -> None:
    flow = gradtrace.curve(hidden_size=24, steps=80, estimate="matrix-free")
    exact = gradtrace.curve(hidden_size=24, steps=80, estimate="exact")
    assert (flow.estimate, exact.estimate, exact.estimate_error) == ("matrix-free", "exact", 0.0)
    assert math.isfinite(flow.estimate_error) and flow.estimate_error >= 0
    assert float((exact.log10_norm - flow.log10_norm).min()) >= -1e-12
    lstm = torch.nn.LSTM(3, 12, dtype=DTYPE)
    x = torch.randn(40, 2, 3, generator=torch.Generator().manual_seed(2), dtype=DTYPE)
    rec = gradtrace.trace(lstm, x, estimate="matrix-free").layers[0]
    want = gradtrace.trace(lstm, x).layers[0]
    assert rec.estimate == "matrix-free"
    assert float((want.log10_norm - rec.log10_norm).min()) >= -1e-12
    again = GradientFlow.from_dict(rec.to_dict())
    assert (again.estimate, again.estimate_error) == (rec.estimate, rec.estimate_error)


def test_auto_is_exact_within_the_budget_and_matrix_free_beyond_it() -> None:
    assert resolve_estimate("auto", "spectral", 1000, 1, 64) == "exact"
    with gradtrace.budget(max_seconds=300):  # at S = 2048: exact about 860 s, matrix-free 100 s
        assert resolve_estimate("auto", "spectral", 100, 1, 2048) == "matrix-free"
        assert resolve_estimate("auto", "maxabs", 100, 1, 2048) == "exact"
        assert resolve_estimate("exact", "spectral", 100, 1, 2048) == "exact"
    # a budget that neither fits is refused in one sentence, not run matrix-free regardless
    lstm = torch.nn.LSTM(8, 32)
    with gradtrace.budget(max_memory="1KB"), pytest.raises(GradtraceError) as err:
        gradtrace.trace(lstm, torch.randn(100, 4, 8))
    assert str(err.value).startswith("this request needs about")
    assert "over the budget of 1 kB; lower the sequence's length or batch" in str(err.value)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: gradtrace.curve(estimate="fast"), "`estimate` must be one of auto, exact"),
        (
            lambda: gradtrace.curve(estimate="matrix-free", metric="maxabs"),
            "measures the spectral norm only, got `metric` 'maxabs'",
        ),
    ],
)
def test_bad_estimates_are_refused_in_one_sentence(call: object, message: str) -> None:
    with pytest.raises(GradtraceError, match=message):
        call()  # type: ignore[operator]
