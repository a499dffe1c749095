"""Gradient cliffs of a one-unit tanh RNN, and what norm clipping does on one.

The model ("On the difficulty of training recurrent neural networks", Pascanu, Mikolov, Bengio
2013, section 3) runs T steps from a fixed h_0 with a constant input x:

    a_t = w h_{t-1} + b + x,    h_t = tanh(a_t),    L = 1/2 (h_T - target)^2.

For w > 1 the map h -> tanh(w h + b + x) has two attractors; as b moves, the start h_0 crosses
the boundary between their basins and h_T jumps from one attractor to the other: the loss has a
cliff, and its gradient there is huge. The gradient comes from the core engine, which sweeps
dL/dh_{k-1} = J_k dL/dh_k back from dL/dh_T = h_T - target with J_t = w (1 - h_t^2); then

    dL/db = sum_{k=1..T} dL/dh_k (1 - h_k^2),    dL/dw = sum_{k=1..T} dL/dh_k (1 - h_k^2) h_{k-1}.

Gradient descent on b with norm clipping (Pascanu et al. 2013, algorithm 1) replaces
g by eta g / ||g|| when ||g|| > eta, so no step is longer than lr * eta. Without clipping the
first step taken on the cliff face throws b far away, onto a plateau where the gradient vanishes.

The defaults (w = 1.5, T = 20, h_0 = 0.5, target = -0.7, descent from b = 0.5 with lr = 1 and
eta = 0.1) put the cliff at b = -0.2039, where h_T changes sign.
Shapes: P parameter values swept side by side, T steps. Precision: float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from gradtrace import budgets
from gradtrace.core.gradient_profile import loss_gradient_profile
from gradtrace.errors import check
from gradtrace.records.cliff import CliffReport, CliffRNN, CliffSweep, DescentPath

DTYPE = torch.float64
PARAMS = ("b", "w")


@dataclass(frozen=True)
class CliffGradient:
    """h_T, L and the exact dL/db and dL/dw for P parameter pairs, each of shape (P,)."""

    h_final: Tensor
    loss: Tensor
    grad_b: Tensor
    grad_w: Tensor


def forward(model: CliffRNN, w: Tensor, b: Tensor) -> Tensor:
    """States h_0..h_T for P pairs (w, b) side by side: w, b of shape (P,), result (T + 1, P)."""
    h = [torch.full_like(b, model.h0)]
    for _ in range(model.steps):
        h.append(torch.tanh(w * h[-1] + b + model.x))
    return torch.stack(h)  # (T + 1, P)


def cliff_gradient(model: CliffRNN, w: Tensor, b: Tensor) -> CliffGradient:
    """Loss and exact gradient at P pairs (w, b) (shape (P,) each) through the core engine."""
    h = forward(model, w, b)  # (T + 1, P)
    slope = 1 - h[1:] ** 2  # (T, P): tanh'(a_t) = 1 - h_t^2
    jacobians = (w * slope).reshape(model.steps, -1, 1, 1)  # (T, P, 1, 1): J_t
    error = (h[-1] - model.target).unsqueeze(1)  # (P, 1): dL/dh_T
    profile = loss_gradient_profile(jacobians, error, return_vectors=True)
    assert profile.vectors is not None  # asked for with return_vectors
    dL_da = profile.vectors[1:, :, 0] * slope  # (T, P): dL/da_k = dL/dh_k tanh'(a_k)
    return CliffGradient(
        h_final=h[-1],
        loss=0.5 * (h[-1] - model.target) ** 2,
        grad_b=dL_da.sum(dim=0),
        grad_w=(dL_da * h[:-1]).sum(dim=0),
    )


def cliff_sweep(
    model: CliffRNN, lo: float = -1.5, hi: float = 1.0, points: int = 1001, param: str = "b"
) -> CliffSweep:
    """Sweep `param` ("b" or "w") over `points` values in [lo, hi], the other held at the model's.

    Raises:
        GradtraceError: on an unknown parameter, lo >= hi or fewer than 2 points.
    """
    check(param in PARAMS, f"`param` must be one of {', '.join(PARAMS)}, got {param!r}")
    check(lo < hi, f"the sweep range must have lo < hi, got lo={lo:g}, hi={hi:g}")
    check(points >= 2, f"`points` must be at least 2, got {points}")
    T = model.steps
    work = budgets.Work(memory=80.0 * points * T, flops=30.0 * points * T, steps=12.0 * T)
    budgets.require(work, "`points` or `steps`")
    values = torch.linspace(lo, hi, points, dtype=DTYPE)
    fixed = torch.full_like(values, model.b if param == "w" else model.w)
    w, b = (values, fixed) if param == "w" else (fixed, values)
    result = cliff_gradient(model, w, b)
    grad = result.grad_w if param == "w" else result.grad_b
    return CliffSweep(param, values, result.h_final, result.loss, grad)


def clip_norm(g: Tensor, eta: float) -> Tensor:
    """g <- eta g / ||g|| when ||g|| > eta (Pascanu, Mikolov, Bengio 2013); g itself otherwise."""
    norm = torch.linalg.vector_norm(g)
    return g * (eta / norm) if bool(norm > eta) else g


def descend(
    model: CliffRNN, start: float = 0.5, lr: float = 1.0, iterations: int = 40,
    clip: float | None = None,
) -> DescentPath:  # fmt: skip
    """Gradient descent b <- b - lr g on L(b) from `start`, with g norm-clipped at `clip`.

    Raises:
        GradtraceError: if lr <= 0, clip <= 0 or iterations < 1.
    """
    check(math.isfinite(lr) and lr > 0, f"`lr` must be a positive number, got {lr}")
    check(
        clip is None or (math.isfinite(clip) and clip > 0),
        f"`clip` must be a positive number, got {clip}",
    )
    check(math.isfinite(start), f"`start` must be a finite number, got {start}")
    check(iterations >= 1, f"`iterations` must be at least 1, got {iterations}")
    work = budgets.Work(memory=100.0 * iterations, steps=(12.0 * model.steps + 10) * iterations)
    budgets.require(work, "`iterations` or `steps`")
    w = torch.tensor([model.w], dtype=DTYPE)
    b = torch.tensor([float(start)], dtype=DTYPE)
    params, losses, grads = [b], [], []
    for _ in range(iterations):
        at = cliff_gradient(model, w, params[-1])
        losses.append(at.loss)
        grads.append(at.grad_b)
        g = at.grad_b if clip is None else clip_norm(at.grad_b, clip)
        params.append(params[-1] - lr * g)
    last = cliff_gradient(model, w, params[-1])
    path = torch.cat(params)  # (n + 1,)
    return DescentPath(
        path,
        torch.cat([*losses, last.loss]),
        torch.cat([*grads, last.grad_b]),
        path.diff().abs(),
        clip,
        lr,
    )


def cliff_report(
    model: CliffRNN | None = None,
    *,
    lo: float = -1.5,
    hi: float = 1.0,
    points: int = 1001,
    start: float = 0.5,
    lr: float = 1.0,
    clip: float = 0.1,
    iterations: int = 40,
) -> CliffReport:
    """Sweep b over [lo, hi] and run descent from `start` without and with clipping at `clip`."""
    model = model or CliffRNN()
    return CliffReport(
        model,
        cliff_sweep(model, lo, hi, points),
        descend(model, start, lr, iterations),
        descend(model, start, lr, iterations, clip),
    )
