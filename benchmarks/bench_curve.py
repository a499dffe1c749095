"""Benchmark of the Jacobian-product engine, as ratios against baselines measured in the same run.

1. Speed against the plain loop `P = P @ J[k]; P /= P.abs().max()` (k = T-1 .. 0) on the same
   Gaussian Jacobians J (T, H, H) with entries N(0, 1/H), metric maxabs, H in {16, 64, 256}
   (target: at least 1.0 everywhere).
2. The fraction of this machine's float64 matmul peak (the best of large square matmuls, timed
   in turn with the engine) that the engine reaches at H = 256, T = 1000, maxabs (target:
   0.75), beside the fraction that the sweep's 256 x 256 products reach alone.
3. The cost of the spectral metric over maxabs (target: 1.5), on the same Gaussian Jacobians
   and on a tanh RNN's (what `gradtrace curve` measures).
4. End to end at H = 64, T = 1000, from weights and inputs to the spectral curve (the replay
   and the streamed sweep) against one autograd backward pass per hidden unit of h_T through
   the unrolled RNN, which yields every row of every dh_T/dh_k (target: 30x); and the whole
   record (`analyse`: the curve with its theory, bound, verdict and Lyapunov exponent).
5. The matrix-free estimate against the exact sweep for a large state (H = 1024).
6. Peak memory (maximum resident set) of the whole `gradtrace curve --hidden 32 --steps 100000`
   process, beside a process that only imports gradtrace, and the 0.8 GB the step Jacobians
   alone would take if materialised (target: under 600 MB).

Every timing is the best of a few repeats (5 by default), and the sides of the ratios in 1-4 are
timed in turn, round by round, so a slow spell falls on all of them; absolute times vary
several-fold on shared machines, only the ratios mean anything. Small-matrix work on a few
shared cores can be slowed by thread oversubscription, so 1-5 run twice: with torch's default
thread count and with one thread.

    python benchmarks/bench_curve.py [--repeats 5] [--threads default,1]
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable

import torch

from common import best_time, best_times, peak_rss_mb, thread_settings
from gradtrace.analysis.curve import analyse
from gradtrace.cells import RNNWeights, get_cell, random_weights, replay
from gradtrace.core.engine import contribution_curve
from gradtrace.core.matrix_free import matrix_free_curve

DTYPE = torch.float64


def plain_loop(J: torch.Tensor) -> None:
    """The baseline: the product carried backwards, divided by its largest entry each step."""
    P = torch.eye(J.shape[-1], dtype=J.dtype)
    for k in range(J.shape[0] - 1, -1, -1):
        P = P @ J[k]
        P = P / P.abs().max()


def gaussian(T: int, H: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(T, H, H, generator=gen, dtype=DTYPE) / math.sqrt(H)


def rnn_jacobians(H: int, T: int, seed: int = 0) -> torch.Tensor:
    w = random_weights("rnn", H, 8, seed=seed)
    x = torch.randn(T, 1, 8, generator=torch.Generator().manual_seed(seed + 1), dtype=DTYPE)
    return replay(get_cell("rnn"), w, x, torch.zeros(1, H, dtype=DTYPE)).jacobians()[:, 0]


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


PEAK_SIZES = (512, 1024, 2048)  # the large square matmuls whose best rate is the peak


def square_matmul(size: int) -> Callable[[], object]:
    """One float64 (size x size) @ (size x size) product, on fresh random matrices."""
    a, b = torch.randn(size, size, dtype=DTYPE), torch.randn(size, size, dtype=DTYPE)
    return lambda: a @ b


def matmul_loop(J: torch.Tensor) -> None:
    """The sweep's products alone: P @ J[k] into a buffer, k = T-1 .. 0, nothing else."""
    P, Q = torch.eye(J.shape[-1], dtype=J.dtype), torch.empty(J.shape[1:], dtype=J.dtype)
    for k in range(J.shape[0] - 1, -1, -1):
        torch.matmul(P, J[k], out=Q)
        P, Q = Q, P


def speed(repeats: int) -> None:
    print("[1] speed against the plain loop, maxabs (plain time / engine time, target >= 1.0)")
    for H, T in ((16, 1000), (16, 10000), (64, 1000), (256, 1000)):
        J = gaussian(T, H)
        t_plain, t_engine = best_times(
            [lambda J=J: plain_loop(J), lambda J=J: contribution_curve(J, "maxabs")], repeats
        )
        print(f"    H={H:<4} T={T:<6} {t_plain / t_engine:6.2f}")
    H, T = 256, 1000
    J = gaussian(T, H)
    # the peak's matmuls are timed in turn with the engine, so a slow spell falls on both
    t_max, t_loop, *t_peak = best_times(
        [lambda: contribution_curve(J, "maxabs"), lambda: matmul_loop(J)]
        + [square_matmul(size) for size in PEAK_SIZES],
        repeats,
    )
    peak = max(2 * size**3 / t for size, t in zip(PEAK_SIZES, t_peak, strict=True))
    achieved, products = 2 * H**3 * T / t_max, 2 * H**3 * T / t_loop
    print(
        f"[2] fraction of float64 matmul peak, H=256 T=1000 maxabs: {achieved / peak:.2f} "
        f"({achieved / 1e9:.1f} of {peak / 1e9:.1f} GFLOP/s; target >= 0.75); the same "
        f"256x256 products alone reach {products / peak:.2f}"
    )
    print("[3] spectral / maxabs (target <= 1.5)")
    for H in (16, 64, 256):
        for name, J in (("gaussian", gaussian(1000, H)), ("tanh RNN", rnn_jacobians(H, 1000))):
            t_s, t_m = best_times(
                [
                    lambda J=J: contribution_curve(J, "spectral"),
                    lambda J=J: contribution_curve(J, "maxabs"),
                ],
                repeats,
            )
            print(f"    H={H:<4} {name:<9} {t_s / t_m:6.2f}")


def engine_curve(w: RNNWeights, x: torch.Tensor) -> torch.Tensor:
    """From weights and inputs to the curve: the replay and the streamed spectral sweep."""
    with torch.no_grad():
        run = replay(get_cell("rnn"), w, x, torch.zeros(1, w.hidden_size, dtype=x.dtype))
    return contribution_curve(run, "spectral").log10_norm[0]


def end_to_end(repeats: int) -> None:
    w = random_weights("rnn", 64, 8, seed=0)
    assert isinstance(w, RNNWeights)
    x = torch.randn(1000, 1, 8, dtype=DTYPE, generator=torch.Generator().manual_seed(1))
    gap = float((engine_curve(w, x) - autograd_curve(w, x[:, 0])).abs().max())
    t_curve, t_record, t_autograd = best_times(
        [
            lambda: engine_curve(w, x),
            lambda: analyse(w, x),
            lambda: autograd_curve(w, x[:, 0]),
        ],
        repeats,
    )
    print(
        f"[4] end to end, H=64 T=1000: autograd (64 backward passes) / gradtrace = "
        f"{t_autograd / t_curve:.1f}x for the curve (target >= 30; they agree to {gap:.1e} "
        f"in log10), {t_autograd / t_record:.1f}x for the whole record (`analyse`: the curve, "
        "theory, bound, verdict and Lyapunov exponent)"
    )


def matrix_free(repeats: int) -> None:
    H, T = 1024, 100
    w = random_weights("rnn", H, 8, spectrum="radius:1.0", seed=2)
    x = torch.randn(T, 1, 8, dtype=DTYPE, generator=torch.Generator().manual_seed(3))
    run = replay(get_cell("rnn"), w, x, torch.zeros(1, H, dtype=DTYPE))
    exact = contribution_curve(run, "spectral").log10_norm
    estimate = matrix_free_curve(run)
    far = float((exact - estimate.log10_norm)[:, : T - 16].abs().max())
    near = float((exact - estimate.log10_norm).abs().max())
    t_exact = best_time(lambda: contribution_curve(run, "spectral"), max(1, repeats - 2))
    t_free = best_time(lambda: matrix_free_curve(run), max(1, repeats - 2))
    print(
        f"[5] matrix-free, H={H} T={T}: exact / matrix-free time = {t_exact / t_free:.2f}x; "
        f"below the exact curve by at most {far:.1e} decades for k < T-16 and {near:.1e} "
        f"overall (last refinement moved it {estimate.error:.1e}; {estimate.rounds} rounds)"
    )


def memory() -> None:
    base = peak_rss_mb([sys.executable, "-c", "import gradtrace.analysis.curve"])
    argv = [sys.executable, "-m", "gradtrace", "curve", "--hidden", "32", "--steps", "100000"]
    curve = peak_rss_mb([*argv, "--device", "cpu"])
    jacobians = 100_000 * 32 * 32 * 8 / 1e6
    print(
        f"[6] peak memory of `gradtrace curve --hidden 32 --steps 100000`: {curve:.0f} MB "
        f"(target < 600; a process that only imports gradtrace: {base:.0f} MB; the "
        f"materialised step Jacobians alone would be {jacobians:.0f} MB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", default="default,1")
    args = parser.parse_args()
    for _ in thread_settings(args.threads, ", float64"):
        speed(args.repeats)
        end_to_end(args.repeats)
        matrix_free(args.repeats)
    memory()


if __name__ == "__main__":
    main()
