"""The general fixed-point finder against fixed points known in closed form.

References: planted fixed points h* of tanh(W h + b) (b = atanh(h*) - W h*) with numpy's
eigenvalues of the closed-form Jacobian diag(1 - h*^2) W; the roots of h = tanh(2 h) by plain
iteration in `math`; the linear map A h + c with its fixed point from torch.linalg.solve; a map
with no zero of F(h) - h; the kinds sink, source, saddle, marginal from the eigenvalue moduli.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch

from gradtrace.core.fixed_points import box_starts, classify, find_fixed_points
from gradtrace.errors import GradtraceError
from gradtrace.records import FixedPoints

F64 = torch.float64


def tanh_step(W: torch.Tensor, b: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda h: torch.tanh(h @ W.T + b)


def solve_tanh_2x() -> float:
    """x* = tanh(2 x*) > 0 by plain iteration in math (the map contracts there, |f'| ~ 0.17)."""
    x = 1.0
    for _ in range(200):
        x = math.tanh(2 * x)
    return x


@pytest.mark.parametrize(
    ("W", "kind"),
    [
        ([[1.5, -0.8], [0.6, 1.2]], "source"),  # eigenvalues 1.13 +- 0.52 i at h*
        ([[0.5, -0.3], [0.2, 0.4]], "sink"),  # a contraction: h* is the only fixed point
        ([[2.0, 0.0], [0.0, 0.5]], "saddle"),
    ],
    ids=["source", "sink", "saddle"],
)
def test_two_unit_rnn_with_planted_fixed_point(W: list[list[float]], kind: str) -> None:
    # Choose h*, then b = atanh(h*) - W h* makes tanh(W h* + b) = h* exactly.
    W_hh = torch.tensor(W, dtype=F64)
    h_star = torch.tensor([0.3, -0.5], dtype=F64)
    b = torch.atanh(h_star) - W_hh @ h_star
    found = find_fixed_points(tanh_step(W_hh, b), box_starts(200, 2))
    distances = torch.linalg.vector_norm(found.states - h_star, dim=1)
    point = found.points[int(distances.argmin())]
    assert float(distances.min()) < 1e-10
    # Reference eigenvalues: numpy on the closed-form Jacobian diag(1 - h*^2) W.
    expected = np.linalg.eigvals(np.diag(1 - h_star.numpy() ** 2) @ W_hh.numpy())
    got = point.eigenvalues.numpy()
    assert np.sort_complex(got) == pytest.approx(np.sort_complex(expected), abs=1e-10)
    moduli = np.abs(expected)
    assert kind == ("sink" if moduli.max() < 1 else "source" if moduli.min() > 1 else "saddle")
    assert point.kind == kind
    for p in found.points:  # every reported point is a fixed point
        assert float(torch.linalg.vector_norm(torch.tanh(W_hh @ p.state + b) - p.state)) < 1e-10


def test_one_unit_rnn_w2_has_three_fixed_points() -> None:
    # h = tanh(2 h): 0 with eigenvalue 2 (a source) and +-x* with eigenvalue 2 (1 - x*^2).
    x_star = solve_tanh_2x()
    W, b = torch.tensor([[2.0]], dtype=F64), torch.zeros(1, dtype=F64)
    found = find_fixed_points(tanh_step(W, b), box_starts(64, 1))
    states = [float(p.state) for p in found.points]
    assert states == pytest.approx([-x_star, 0.0, x_star], abs=1e-12)
    assert [p.kind for p in found.points] == ["sink", "source", "sink"]
    slopes = [float(p.eigenvalues.real[0]) for p in found.points]
    slope = 2 * (1 - x_star**2)
    assert slopes == pytest.approx([slope, 2.0, slope], abs=1e-12)


def test_one_unit_rnn_w_half_has_only_the_origin() -> None:
    W, b = torch.tensor([[0.5]], dtype=F64), torch.zeros(1, dtype=F64)
    (point,) = find_fixed_points(tanh_step(W, b), box_starts(32, 1)).points
    assert float(point.state) == pytest.approx(0.0, abs=1e-12)
    assert float(point.eigenvalues.real[0]) == pytest.approx(0.5, abs=1e-12)
    assert point.kind == "sink"


def test_degenerate_fixed_point_is_reported_once() -> None:
    # tanh(h) = h only at 0, a triple root: Newton crawls, but the flat stretch is one point.
    W, b = torch.tensor([[1.0]], dtype=F64), torch.zeros(1, dtype=F64)
    (point,) = find_fixed_points(tanh_step(W, b), box_starts(64, 1)).points
    assert abs(float(point.state)) < 1e-3
    assert point.kind == "marginal"


def test_any_callable_any_size_linear_map() -> None:
    # F(h) = A h + c has the single fixed point (I - A)^-1 c and the eigenvalues of A.
    gen = torch.Generator().manual_seed(0)
    A = torch.diag(torch.tensor([1.7, 0.4, -0.3], dtype=F64))
    Q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=F64, generator=gen))
    A = Q @ A @ Q.T
    c = torch.tensor([0.2, -0.1, 0.4], dtype=F64)
    expected = torch.linalg.solve(torch.eye(3, dtype=F64) - A, c)
    (point,) = find_fixed_points(lambda h: h @ A.T + c, box_starts(16, 3)).points
    assert torch.allclose(point.state, expected, atol=1e-10)
    assert sorted(point.eigenvalues.real.tolist()) == pytest.approx([-0.3, 0.4, 1.7], abs=1e-10)
    assert point.kind == "saddle"


def test_passed_jacobian_matches_autograd() -> None:
    W = torch.tensor([[2.0, 0.5], [-0.3, 1.5]], dtype=F64)
    b = torch.tensor([0.1, -0.2], dtype=F64)
    step = tanh_step(W, b)

    def analytic(h: torch.Tensor) -> torch.Tensor:  # batched: (B, S) -> (B, S, S)
        return torch.diag_embed(1 - step(h) ** 2) @ W

    by_autograd = find_fixed_points(step, box_starts(100, 2))
    by_formula = find_fixed_points(step, box_starts(100, 2), jacobian=analytic)
    assert len(by_autograd.points) == len(by_formula.points) > 1
    for a, f in zip(by_autograd.points, by_formula.points, strict=True):
        assert torch.allclose(a.eigenvalues, f.eigenvalues, atol=1e-12)


def test_slow_points_are_not_fixed_points() -> None:
    # F(h) = h + 1 + 0.5 sin h never equals h (|F - h| >= 0.5); q has minima, no zeros.
    found = find_fixed_points(lambda h: h + 1 + 0.5 * torch.sin(h), box_starts(32, 1, -5, 5))
    assert found.points == () and found.converged == 0


@pytest.mark.parametrize(
    ("eigenvalues", "kind"),
    [
        ([0.5, -0.9], "sink"),
        ([1.5, -2.0], "source"),
        ([1.5, 0.2], "saddle"),
        ([1.0], "marginal"),
    ],
    ids=["sink", "source", "saddle", "marginal"],
)
def test_classify(eigenvalues: list[float], kind: str) -> None:
    assert classify(torch.tensor(eigenvalues, dtype=torch.complex128)) == kind


def test_classify_widens_the_unit_circle_by_the_residual() -> None:
    # A point found to residual r is known to about sqrt(r): |lambda| within 10 sqrt(r) of 1
    # is marginal (10 sqrt(1e-8) = 1e-3), while an exact point with |lambda| = 1.00001 is not.
    eigenvalues = torch.tensor([1.00001], dtype=torch.complex128)
    assert classify(eigenvalues) == "source"
    assert classify(eigenvalues, residual=1e-8) == "marginal"


def test_fixed_points_record_round_trips() -> None:
    W, b = torch.tensor([[2.0]], dtype=F64), torch.zeros(1, dtype=F64)
    found = find_fixed_points(tanh_step(W, b), box_starts(64, 1))
    data = json.loads(json.dumps(found.to_dict()))
    assert data["format"] == "gradtrace.fixed_points/1"
    assert [p["kind"] for p in data["points"]] == ["sink", "source", "sink"]
    again = FixedPoints.from_dict(data)
    assert again == found
    assert [p.kind for p in again.of_kind("sink")] == ["sink", "sink"]


@pytest.mark.parametrize(
    ("starts", "step", "match"),
    [
        (torch.zeros(4, dtype=F64), torch.tanh, "`starts` must be a non-empty"),
        (torch.zeros(4, 2, dtype=torch.int64), torch.tanh, "floating point"),
        (torch.zeros(4, 2, dtype=F64), lambda h: h[:, :1], "same shape"),
    ],
    ids=["1-d-starts", "integer-starts", "shape-changing-step"],
)
def test_bad_input_is_refused(starts: torch.Tensor, step: object, match: str) -> None:
    with pytest.raises(GradtraceError, match=match):
        find_fixed_points(step, starts)  # type: ignore[arg-type]
