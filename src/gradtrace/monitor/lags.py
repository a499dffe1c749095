"""Gradient by time lag: how much of dL/dh_b comes from outputs at least d steps later.

With the direct gradient g_t = dL/dh_t|direct of every step's output (the chunked forward's
hooks keep them on the lag schedule) and the layer's step Jacobians J_t (gradtrace's replay of
the layer from its recorded input and initial state, applied as vector products), the whole
gradient at every state follows from the backward recursion

    G_T = [g_T; 0] + (the final state's own gradient),   G_{s} = J_{s+1}^T G_{s+1} + [g_s; 0]

and the part of G_b that comes from outputs at steps t >= b + d is

    A_d(b) = J_{b+1}^T ... J_{b+d}^T G_{b+d}        (d vector-Jacobian products)

so the lag share at boundary b is ||A_d(b)_h|| / ||G_b|_h|| (the h part, as dL/dh_b). A share
near 1 at a large d says the layer's gradient at b is dominated by what happens far later: it
is learning long-range dependencies; a share near 0 says it is not.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from gradtrace.cells import get_cell, replay, weights_from_torch
from gradtrace.core.factors import hold
from gradtrace.monitor.chunked import LayerRecord

LAGS = (1, 4, 16, 64)


def _direct(rec: LayerRecord, B: int, P: int, like: Tensor) -> Tensor:
    """g_1..g_T as (T + 1, B, P), row t the direct gradient at h_t (row 0 zero)."""
    g = like.new_zeros(rec.steps + 1, B, P)
    for start, grad in rec.outputs_grad.items():
        g[start + 1 : start + 1 + grad.shape[0]] = grad.to(like.dtype)
    return g


def lag_shares(module: nn.RNNBase, rec: LayerRecord, lags: tuple[int, ...] = LAGS) -> Tensor | None:
    """(len(lags), n boundaries) lag shares of one recorded layer and direction, float64;
    None when the layer's input was not kept (not a lag step) or no backward reached it."""
    if rec.inputs is None or rec.s0 is None or not rec.outputs_grad:
        return None
    cell = get_cell(rec.cell)
    weights = weights_from_torch(module, rec.layer, rec.direction)
    x = rec.inputs.detach().to(torch.float64)
    with torch.no_grad():
        run = replay(cell, weights.to(dtype=torch.float64), x, rec.s0.to(torch.float64))
    source = hold(run)
    T, B, S = run.steps, run.batch, run.size
    P = weights.proj_size
    direct = _direct(rec, B, P, x)  # (T + 1, B, P)
    G = x.new_zeros(T + 1, B, S)
    G[T, :, :P] = direct[T]
    last, last_c = rec.recurrent.get(T), rec.cell_state.get(T)
    if last is not None:  # the final state's own use (a loss on h_n, say)
        G[T, :, :P] += last[0].to(torch.float64)
    if last_c is not None:
        G[T, :, P:] += last_c[0].to(torch.float64)
    factors = source.factors(0, T)
    for s in range(T - 1, -1, -1):  # G_s = J_{s+1}^T G_{s+1} + g_s
        G[s] = factors.left(s, G[s + 1].unsqueeze(1))[:, 0]
        G[s, :, :P] += direct[s]
    shares = torch.full((len(lags), len(rec.boundaries)), math.nan, dtype=torch.float64)
    for j, b in enumerate(rec.boundaries):
        whole = float(torch.linalg.vector_norm(G[b, :, :P]))
        for i, d in enumerate(lags):
            if b + d > T or whole == 0:
                continue
            A = G[b + d].unsqueeze(1)  # (B, 1, S)
            for t in range(b + d - 1, b - 1, -1):  # apply J_{b+d}^T first, J_{b+1}^T last
                A = factors.left(t, A)
            shares[i, j] = float(torch.linalg.vector_norm(A[:, 0, :P])) / whole
    return shares
