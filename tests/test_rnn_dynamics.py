"""Small tanh RNNs as dynamical systems: fixed points, basins and the flow, by closed forms.

References: the roots 0 and +-x* of h = tanh(w h) (x* by plain iteration in `math`), the
quadrants of a decoupled pair of units, tanh(W h + b) - h evaluated directly, and the constant
input folded into the bias.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from gradtrace.cells.rnn import RNNWeights
from gradtrace.dynamics.rnn_dynamics import rnn_fixed_points, rnn_portrait, small_rnn
from gradtrace.errors import GradtraceError
from gradtrace.records import RNNPortrait

F64 = torch.float64


def x_star(w: float) -> float:
    """The positive root of x = tanh(w x) for w > 1, by iteration (a contraction there)."""
    x = 1.0
    for _ in range(500):
        x = math.tanh(w * x)
    return x


def test_one_unit_basins_split_at_the_source_origin() -> None:
    # h -> tanh(2 h): h_0 < 0 flows to -x*, h_0 > 0 to +x* (tanh is odd and increasing).
    portrait = rnn_portrait(small_rnn([[2.0]], [0.0]), points=41, steps=100)
    assert portrait.attractors[:, 0].tolist() == pytest.approx([-x_star(2), x_star(2)], abs=1e-12)
    axis, labels = portrait.axis, portrait.labels
    assert (labels[axis < -1e-12] == 0).all() and (labels[axis > 1e-12] == 1).all()
    assert labels[axis.abs() < 1e-12].tolist() == [-1]  # h_0 = 0 stays on the source


def test_two_unit_decoupled_basins_are_quadrants() -> None:
    # W = 2 I: each unit is h -> tanh(2 h) on its own, so 4 sinks (+-x*, +-x*), 4 saddles
    # (one coordinate 0) and the origin, a source; the basin of a point is its quadrant.
    portrait = rnn_portrait(small_rnn([[2.0, 0.0], [0.0, 2.0]], [0.0, 0.0]), points=20, steps=60)
    kinds = [p.kind for p in portrait.fixed_points.points]
    assert (kinds.count("sink"), kinds.count("saddle"), kinds.count("source")) == (4, 4, 1)
    x = x_star(2)
    signs = torch.sign(portrait.attractors)
    assert torch.allclose(portrait.attractors.abs(), torch.full((4, 2), x, dtype=F64), atol=1e-12)
    h2, h1 = torch.meshgrid(portrait.axis, portrait.axis, indexing="ij")
    quadrant = torch.stack([torch.sign(h1), torch.sign(h2)], dim=-1)  # (N, N, 2)
    assert (signs[portrait.labels] == quadrant).all()  # 20 points: none on an axis


def test_field_and_trajectories_follow_the_recurrence() -> None:
    W = torch.tensor([[1.8, -0.6], [0.4, 1.1]], dtype=F64)
    b = torch.tensor([0.1, -0.2], dtype=F64)
    portrait = rnn_portrait(small_rnn(W, b), points=11, steps=20, trajectories=3)
    assert torch.equal(portrait.W_hh, W) and torch.equal(portrait.b, b)
    assert portrait.state_size == 2
    axis = portrait.axis
    for i, j in [(0, 0), (3, 7), (10, 2)]:  # row i is h_2 = axis[i], column j is h_1 = axis[j]
        h = torch.stack([axis[j], axis[i]])
        expected = torch.tanh(W @ h + b) - h
        assert torch.allclose(portrait.field[:, i, j], expected, atol=1e-15)
    orbits = portrait.trajectories  # (M, T + 1, S)
    assert orbits.shape == (3, 6, 2)
    assert torch.allclose(orbits[:, 1:], torch.tanh(orbits[:, :-1] @ W.T + b), atol=1e-15)


def test_constant_input_is_a_bias_shift() -> None:
    # W_hx x with x held constant adds to b: tanh(w h + u x + b) = tanh(w h + (b + u x)).
    with_input = RNNWeights(
        torch.tensor([[2.0]], dtype=F64),
        torch.tensor([[0.5]], dtype=F64),
        torch.tensor([0.05], dtype=F64),
        "tanh",
    )
    folded = small_rnn([[2.0]], [0.05 + 0.5 * 0.2])
    a = rnn_fixed_points(with_input, torch.tensor([0.2], dtype=F64)).states
    b = rnn_fixed_points(folded).states
    assert a.shape == b.shape == (3, 1)
    assert torch.allclose(a, b, atol=1e-12)


def test_portrait_record_round_trips() -> None:
    portrait = rnn_portrait(small_rnn([[2.0, 0.0], [0.0, 2.0]], [0.0, 0.0]), points=8, steps=20)
    data = json.loads(json.dumps(portrait.to_dict()))
    assert data["format"] == "gradtrace.rnn_portrait/1"
    assert RNNPortrait.from_dict(data) == portrait


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lo": 1.0, "hi": -1.0}, "lo < hi"),
        ({"points": 0}, "`points` must be at least 2"),
        ({"steps": 0}, "`steps` must be at least 4"),
    ],
    ids=["reversed-range", "empty-grid", "no-steps"],
)
def test_bad_input_is_refused(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(GradtraceError, match=match):
        rnn_portrait(small_rnn([[2.0]], [0.0]), **kwargs)  # type: ignore[arg-type]


def test_three_units_refused_by_name() -> None:
    with pytest.raises(GradtraceError, match="1 or 2 hidden units"):
        rnn_portrait(small_rnn(torch.eye(3, dtype=F64), [0.0, 0.0, 0.0]))
