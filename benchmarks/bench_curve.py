"""Benchmark of the Jacobian-product engine, as ratios measured side by side in one run.

1. The engine against the straightforward autograd approach at H = 64, T = 1000: unroll a tanh
   RNN, keep every h_k, and run one backward pass per hidden unit of h_T, which yields every
   row of every dh_T/dh_k. Both start from weights and inputs; both give the same curve.
2. The engine's achieved fraction of this machine's float64 matmul peak at H = 256, T = 1000
   with `maxabs` (one H x H product per step, 2 H^3 flops), the peak measured on large square
   matmuls in the same run.
3. The cost of the `spectral` metric relative to `maxabs` (SVDs of every product vs none).

Absolute times vary several-fold on shared machines; only the ratios are meaningful. Every
timing is the best of a few repeats.

    python benchmarks/bench_curve.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from gradtrace.cells import RNNWeights, get_cell, random_weights, replay
from gradtrace.core.engine import contribution_curve


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Best wall time of `repeats` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def engine_curve(w: RNNWeights, x: torch.Tensor, metric: str) -> torch.Tensor:
    s0 = torch.zeros(1, w.hidden_size, dtype=x.dtype)
    with torch.no_grad():
        jac = replay(get_cell("rnn"), w, x, s0).jacobians()  # (T, 1, H, H)
    return contribution_curve(jac[:, 0], metric).log10_norm


def autograd_curve(w: RNNWeights, x: torch.Tensor) -> torch.Tensor:
    """One backward pass per hidden unit of h_T through the unrolled network."""
    T, H = x.shape[0], w.hidden_size
    h = torch.zeros(1, H, dtype=x.dtype, requires_grad=True)
    states = [h]
    for t in range(T):
        h = torch.tanh(h @ w.W_hh.T + x[t] @ w.W_hx.T + w.b)
        states.append(h)
    rows = []
    for i in range(H):
        grads = torch.autograd.grad(states[-1][0, i], states[:-1], retain_graph=i < H - 1)
        rows.append(torch.cat(grads))  # (T, H): row i of dh_T/dh_k for every k
    products = torch.stack(rows, dim=1)  # (T, H, H)
    return torch.log10(torch.linalg.matrix_norm(products, ord=2))


def matmul_peak(size: int, repeats: int) -> float:
    """float64 FLOP/s of one size x size matmul, best of `repeats`."""
    a = torch.randn(size, size, dtype=torch.float64)
    b = torch.randn(size, size, dtype=torch.float64)
    return 2 * size**3 / best_time(lambda: a @ b, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    T, reps = args.steps, args.repeats
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float64, T = {T}")

    w = random_weights("rnn", 64, 8, seed=0)
    assert isinstance(w, RNNWeights)
    x = torch.randn(T, 1, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ours = engine_curve(w, x, "spectral")
    reference = autograd_curve(w, x[:, 0])
    gap = float((ours - reference).abs().max())
    t_engine = best_time(lambda: engine_curve(w, x, "spectral"), reps)
    t_autograd = best_time(lambda: autograd_curve(w, x[:, 0]), max(1, reps - 2))
    print(
        f"[1] H=64: autograd (64 backward passes) / engine = {t_autograd / t_engine:.1f}x "
        f"(curves agree to {gap:.1e} in log10)"
    )

    H = 256
    J = torch.randn(T, H, H, dtype=torch.float64) / H**0.5
    t_max = best_time(lambda: contribution_curve(J, "maxabs"), reps)
    peak = max(matmul_peak(1024, reps), matmul_peak(H, reps * 20))
    achieved = 2 * H**3 * T / t_max
    print(
        f"[2] H=256 maxabs: {achieved / 1e9:.2f} GFLOP/s of a {peak / 1e9:.2f} GFLOP/s "
        f"float64 matmul peak = {achieved / peak:.0%} of peak"
    )

    t_spec = best_time(lambda: contribution_curve(J, "spectral"), reps)
    J64 = torch.randn(T, 64, 64, dtype=torch.float64) / 8
    ratio64 = best_time(lambda: contribution_curve(J64, "spectral"), reps) / best_time(
        lambda: contribution_curve(J64, "maxabs"), reps
    )
    print(f"[3] spectral / maxabs cost: {t_spec / t_max:.2f}x at H=256, {ratio64:.2f}x at H=64")


if __name__ == "__main__":
    main()
