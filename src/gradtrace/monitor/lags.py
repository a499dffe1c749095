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
from gradtrace.core.factors import chunk_steps, chunks_backward
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
    None when the layer's input was not kept (not a lag step) or no backward reached it.

    One backward pass over the steps, a chunk of Jacobians at a time: G_s and every chain
    A_d(b) still open at step s are carried together as the rows of one product, so each step
    costs one vector-Jacobian product of 1 + (open chains) rows.
    """
    if rec.inputs is None or rec.s0 is None or not rec.outputs_grad:
        return None
    cell = get_cell(rec.cell)
    weights = weights_from_torch(module, rec.layer, rec.direction)
    x = rec.inputs.detach()
    with torch.no_grad():
        run = replay(cell, weights, x, rec.s0.to(x.dtype))
    T, B, S = run.steps, run.batch, run.size
    P = weights.proj_size
    direct = _direct(rec, B, P, x)  # (T + 1, B, P)
    G = x.new_zeros(B, S)
    G[:, :P] = direct[T]
    last, last_c = rec.recurrent.get(T), rec.cell_state.get(T)
    if last is not None:  # the final state's own use (a loss on h_n, say)
        G[:, :P] += last[0].to(x.dtype)
    if last_c is not None:
        G[:, P:] += last_c[0].to(x.dtype)
    # chains (b, d) with b + d <= T, started at s = b + d from G_{b+d}, ended at s = b
    pairs = [(j, i, b, d) for j, b in enumerate(rec.boundaries) for i, d in enumerate(lags)]
    pairs = [p for p in pairs if p[2] + p[3] <= T]
    chains: dict[tuple[int, int], Tensor] = {}
    wholes: dict[int, float] = {}
    shares = torch.full((len(lags), len(rec.boundaries)), math.nan, dtype=torch.float64)

    def settle(s: int, G_s: Tensor) -> None:
        for j, i, b, d in pairs:
            if b + d == s:
                chains[(j, i)] = G_s.clone()
        if s in rec.boundaries:
            j = rec.boundaries.index(s)
            wholes[j] = float(torch.linalg.vector_norm(G_s[:, :P].to(torch.float64)))
        for (j, i), A in list(chains.items()):
            if rec.boundaries[j] == s:
                whole = wholes.get(j, 0.0)
                norm = float(torch.linalg.vector_norm(A[:, :P].to(torch.float64)))
                shares[i, j] = norm / whole if whole > 0 else math.nan
                del chains[(j, i)]

    settle(T, G)
    for begin, stop in chunks_backward(T, chunk_steps(run)):
        factors = run.factors(begin, stop)
        for k in range(stop - begin - 1, -1, -1):  # J_{s+1} with s = begin + k
            s = begin + k
            keys = list(chains)
            rows = torch.stack([G, *(chains[key] for key in keys)], dim=1)  # (B, 1 + n, S)
            rows = factors.left(k, rows)
            G = rows[:, 0].clone()
            G[:, :P] += direct[s]
            for n, key in enumerate(keys):
                chains[key] = rows[:, 1 + n]
            settle(s, G)
    return shares
