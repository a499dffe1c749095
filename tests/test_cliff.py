"""Gradient cliffs: the engine's gradient against autograd and finite differences, the cliff's
position, and what norm clipping does to a descent that reaches it.

References: torch.autograd through a plain loop of the recurrence, central differences, the
forward pass in `math`, and ||eta g / ||g|| || = eta for norm clipping.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from gradtrace import records
from gradtrace.dynamics.cliff import (
    CliffRNN,
    cliff_gradient,
    cliff_report,
    cliff_sweep,
    clip_norm,
    descend,
    forward,
)
from gradtrace.errors import GradtraceError
from gradtrace.records import CliffReport

F64 = torch.float64
MODEL = CliffRNN()  # w = 1.5, T = 20, h_0 = 0.5, target = -0.7
CLIFF = -0.2039  # h_T = 0 there, located by bisection on the forward pass
AWAY = [-1.2, -0.6, 0.1, 0.8]  # biases at least 0.3 from the cliff


def loss_by_autograd(model: CliffRNN, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    h = torch.full_like(b, model.h0)
    for _ in range(model.steps):
        h = torch.tanh(w * h + b + model.x)
    return 0.5 * (h - model.target) ** 2


def test_forward_matches_plain_python() -> None:
    h = 0.5
    for _ in range(20):
        h = math.tanh(1.5 * h + 0.3)
    states = forward(MODEL, torch.tensor([1.5], dtype=F64), torch.tensor([0.3], dtype=F64))
    assert float(states[-1, 0]) == pytest.approx(h, abs=1e-15)


@pytest.mark.parametrize("model", [MODEL, CliffRNN(w=2.5, steps=12, h0=-0.3, x=0.2)])
def test_engine_gradient_equals_autograd(model: CliffRNN) -> None:
    b = torch.tensor(AWAY, dtype=F64, requires_grad=True)
    w = torch.full_like(b, model.w).requires_grad_(True)
    grad_w, grad_b = torch.autograd.grad(loss_by_autograd(model, w, b).sum(), (w, b))
    exact = cliff_gradient(model, w.detach(), b.detach())
    assert torch.allclose(exact.grad_b, grad_b, rtol=1e-12, atol=1e-15)
    assert torch.allclose(exact.grad_w, grad_w, rtol=1e-12, atol=1e-15)


def test_engine_gradient_equals_central_differences() -> None:
    # Away from the cliff L is smooth: central differences with step 1e-6 have truncation
    # error ~ 1e-12 L''' and rounding ~ 1e-16 / 1e-6, so 1e-7 relative is safe.
    step = 1e-6
    b = torch.tensor(AWAY, dtype=F64)
    w = torch.full_like(b, MODEL.w)
    exact = cliff_gradient(MODEL, w, b)
    loss = lambda w_, b_: cliff_gradient(MODEL, w_, b_).loss  # noqa: E731
    fd_b = (loss(w, b + step) - loss(w, b - step)) / (2 * step)
    fd_w = (loss(w + step, b) - loss(w - step, b)) / (2 * step)
    assert torch.allclose(exact.grad_b, fd_b, rtol=1e-7, atol=1e-10)
    assert torch.allclose(exact.grad_w, fd_w, rtol=1e-7, atol=1e-10)


def test_largest_gradient_sits_where_final_state_switches_sign() -> None:
    sweep = cliff_sweep(MODEL, -1.5, 1.0, 1001)
    sign = torch.sign(sweep.h_final)
    (switch,) = torch.nonzero(sign[1:] != sign[:-1]).flatten().tolist()  # exactly one cliff
    peak = int(sweep.grad.abs().argmax())
    assert peak in (switch, switch + 1)
    assert float(sweep.grad.abs()[peak]) > 100 * float(sweep.grad.abs().median())


def test_sweep_over_w_uses_the_w_gradient() -> None:
    sweep = cliff_sweep(CliffRNN(b=0.3), 0.5, 1.0, 5, param="w")
    exact = cliff_gradient(CliffRNN(b=0.3), sweep.values, torch.full((5,), 0.3, dtype=F64))
    assert torch.equal(sweep.grad, exact.grad_w)


def test_clipped_descent_never_steps_further_than_eta() -> None:
    report = cliff_report()  # lr = 1, eta = 0.1
    clipped = report.clipped
    assert clipped.lr == 1.0 and clipped.clip == 0.1
    assert float(clipped.step_lengths.max()) <= clipped.lr * clipped.clip + 1e-12
    # It reaches the cliff and stays there: every iterate after the tenth is within 0.2 of it.
    assert (clipped.params[10:] - CLIFF).abs().max() < 0.2


def test_plain_descent_overshoots_off_the_cliff() -> None:
    plain = cliff_report().plain
    i = int(plain.step_lengths.argmax())
    before, after = float(plain.params[i]), float(plain.params[i + 1])
    assert abs(before - CLIFF) < 0.05  # taken on the cliff face ...
    assert float(plain.step_lengths[i]) == pytest.approx(abs(float(plain.grads[i])), rel=1e-12)
    assert float(plain.step_lengths[i]) > 10  # ... it throws b far beyond the sweep
    assert abs(after) > 10
    assert abs(float(plain.grads[i + 1])) < 1e-6  # onto a plateau where the gradient vanishes
    assert float(plain.params[-1]) == pytest.approx(after, abs=1e-4)  # and b stays there


def test_report_round_trips_and_records_are_shared() -> None:
    report = cliff_report(points=51, iterations=5)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["format"] == "gradtrace.cliff_report/1"
    assert CliffReport.from_dict(data) == report
    assert records.CliffRNN is CliffRNN  # the model is the record, re-exported by dynamics
    assert data["model"]["w"] == MODEL.w and data["clipped"]["clip"] == 0.1
    assert data["plain"]["clip"] is None


def test_clip_norm() -> None:
    g = torch.tensor([3.0, 4.0], dtype=F64)
    assert torch.allclose(clip_norm(g, 1.0), torch.tensor([0.6, 0.8], dtype=F64), atol=1e-15)
    assert torch.equal(clip_norm(g, 10.0), g)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: CliffRNN(steps=0), "`steps` must be at least 1"),
        (lambda: CliffRNN(w=math.nan), "`w` must be a finite number"),
        (lambda: cliff_sweep(MODEL, 1.0, -1.0), "lo < hi"),
        (lambda: cliff_sweep(MODEL, points=1), "`points` must be at least 2"),
        (lambda: cliff_sweep(MODEL, param="h0"), "`param` must be one of b, w"),
        (lambda: descend(MODEL, lr=0.0), "`lr` must be a positive number"),
        (lambda: descend(MODEL, clip=-1.0), "`clip` must be a positive number"),
        # Regressions: these were accepted, or refused as "`grad_last` must be finite".
        (lambda: descend(MODEL, lr=math.inf), "`lr` must be a positive number"),
        (lambda: descend(MODEL, clip=math.inf), "`clip` must be a positive number"),
        (lambda: descend(MODEL, start=math.nan), "`start` must be a finite number"),
    ],
    ids=[
        "no-steps",
        "nan-w",
        "empty-range",
        "one-point",
        "unknown-param",
        "zero-lr",
        "neg-clip",
        "inf-lr",
        "inf-clip",
        "nan-start",
    ],
)
def test_bad_input_is_refused(call: object, match: str) -> None:
    with pytest.raises(GradtraceError, match=match):
        call()  # type: ignore[operator]
