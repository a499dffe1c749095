"""Benchmark of `gradtrace.trace` against torch autograd, as a ratio measured in one run.

Model: a 2-layer nn.LSTM, H = 128, inputs T = 500, B = 8, I = 32, float32 (PyTorch's default).
Both sides compute dh^l_T/dh^l_k for every k, every layer l and every sequence, and its
spectral norm:

    gradtrace   trace(lstm, x): re-executes the layers step by step, analytic step Jacobians,
                one backward sweep of Jacobian products per layer (it also computes the cell
                path, the theory's bound and the top Lyapunov exponent, all counted)
    autograd    the module's own forward unrolled one step at a time (lstm(x[t:t+1], (h, c))),
                keeping every h_k; one backward pass per hidden unit i of h^l_T gives row i of
                dh^l_T/dh^l_k for every k at once, then torch.linalg.matrix_norm(ord=2)

The autograd side needs 2 H = 256 backward passes through 500 steps. Only `--units` of them per
layer are timed and the time is scaled by H / units (the passes are identical in cost); the
spectral norms are timed on a tensor of the full (T, B, H, H) shape. A small case first checks
that both sides give the same curves. Absolute times vary several-fold on shared machines; only
the ratio is meaningful.

    python benchmarks/bench_trace.py [--units 8] [--steps 500]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import Tensor, nn

from gradtrace.tracing import trace


def unrolled_states(lstm: nn.LSTM, x: Tensor) -> list[Tensor]:
    """h_0..h_T as (L, B, H) tensors of the module's forward run one step at a time."""
    L, B, H = lstm.num_layers, x.shape[1], lstm.hidden_size
    h = torch.zeros(L, B, H, dtype=x.dtype, requires_grad=True)
    c = torch.zeros(L, B, H, dtype=x.dtype)
    states = [h]
    for t in range(x.shape[0]):
        _, (h, c) = lstm(x[t : t + 1], (h, c))
        states.append(h)
    return states


def autograd_rows(states: list[Tensor], layer: int, units: range) -> Tensor:
    """Rows `units` of dh^layer_T/dh^layer_k for every k: one backward pass per unit."""
    rows = []
    for i in units:
        grads = torch.autograd.grad(states[-1][layer, :, i].sum(), states[:-1], retain_graph=True)
        rows.append(torch.stack([g[layer] for g in grads]))  # (T, B, H): row i for every k
    return torch.stack(rows, dim=2)  # (T, B, len(units), H)


def autograd_curves(lstm: nn.LSTM, x: Tensor) -> list[Tensor]:
    """The full autograd reference, log10 ||dh^l_T/dh^l_k||_2 per layer, each (B, T)."""
    states = unrolled_states(lstm, x)
    H = lstm.hidden_size
    return [
        torch.log10(torch.linalg.matrix_norm(autograd_rows(states, layer, range(H)), ord=2)).T
        for layer in range(lstm.num_layers)
    ]


def check_agreement() -> float:
    """Largest |difference| of log10 c(k) between the two sides on a small float64 case."""
    torch.manual_seed(0)
    lstm = nn.LSTM(4, 12, num_layers=2, dtype=torch.float64)
    x = torch.randn(30, 3, 4, dtype=torch.float64)
    result = trace(lstm, x)
    reference = autograd_curves(lstm, x)
    return max(
        float((result.find(layer=layer).log10_norm - reference[layer]).abs().max())
        for layer in range(2)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--units", type=int, default=8)
    args = parser.parse_args()
    T, B, I, H, L = args.steps, 8, 32, 128, 2
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(
        f"agreement on a small float64 case (H = 12, T = 30): max |diff log10 c(k)| = "
        f"{check_agreement():.2e}"
    )

    torch.manual_seed(0)
    lstm = nn.LSTM(I, H, num_layers=L)
    x = torch.randn(T, B, I)
    print(f"2-layer nn.LSTM, H = {H}, T = {T}, B = {B}, I = {I}, float32")

    start = time.perf_counter()
    result = trace(lstm, x)
    t_trace = time.perf_counter() - start
    verdicts = ", ".join(f"layer {r.layer} {r.verdict}" for r in result.layers)
    print(f"gradtrace trace: {t_trace:.2f} s ({verdicts})")

    start = time.perf_counter()
    states = unrolled_states(lstm, x)
    t_forward = time.perf_counter() - start
    start = time.perf_counter()
    for layer in range(L):
        autograd_rows(states, layer, range(args.units))
    t_subset = time.perf_counter() - start
    t_backward = t_subset * H / args.units
    products = torch.randn(T, B, H, H)
    start = time.perf_counter()
    for _ in range(L):
        torch.linalg.matrix_norm(products, ord=2)
    t_norms = time.perf_counter() - start
    t_autograd = t_forward + t_backward + t_norms
    print(
        f"autograd: unrolled forward {t_forward:.2f} s + {L * H} backward passes "
        f"{t_backward:.1f} s (timed {L * args.units}, scaled by {H / args.units:g}) + "
        f"spectral norms {t_norms:.2f} s = {t_autograd:.1f} s (extrapolated)"
    )
    print(f"ratio autograd / gradtrace: {t_autograd / t_trace:.1f}x")


if __name__ == "__main__":
    main()
