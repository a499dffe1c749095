"""Benchmark of `gradtrace.trace` on models at their real sizes, as ratios measured in one run.

1. The word language model of pytorch/examples at its default size (embedding and 2-layer
   LSTM of 200 units, dropout 0.5, tied decoder over the 33,278 words of WikiText-2, B = 20,
   bptt T = 35, float32) in train mode: `trace(model, tokens, hidden, loss_fn=..., target=...)`
   (both layers' exact curves, ||dL/dh_k||, theory, bound and Lyapunov exponent) against the
   model's own forward and backward of the same loss (target: at most 5x in exact mode); the
   matrix-free estimate is timed too.
2. gradtrace against autograd for the same curves, on a 2-layer nn.LSTM (H = 128, T = 200,
   B = 8): autograd needs one backward pass per hidden unit of each layer's h_T; a subset is
   timed and scaled (the passes cost the same), plus the spectral norms of (T, B, H, H).
3. Peak memory (maximum resident set) of a process tracing a 2-layer nn.LSTM (H = 650,
   B = 10, T = 35), beside a process that runs the same module's forward and backward, and the
   step Jacobians a materialising trace would hold.

Every timing is the best of a few repeats (5 by default; in 1 the three sides are timed in turn,
round by round, so a slow spell falls on all of them); absolute times vary several-fold on
shared machines, only the ratios mean anything. 1 and 2 run with torch's default thread count
and with one thread.

    python benchmarks/bench_trace.py [--repeats 5] [--threads default,1]
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common import best_time, best_times, peak_rss_mb, thread_settings
from gradtrace.tracing import trace


class WordModel(nn.Module):
    """Embedding, dropout, a multi-layer LSTM, dropout, a decoder tied to the embedding."""

    def __init__(self, vocab: int, size: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.vocab = vocab
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(vocab, size)
        self.rnn = nn.LSTM(size, size, layers, dropout=dropout)
        self.decoder = nn.Linear(size, vocab)
        self.decoder.weight = self.encoder.weight

    def forward(self, tokens: Tensor, hidden: tuple[Tensor, Tensor]) -> tuple[Tensor, Any]:
        output, hidden = self.rnn(self.drop(self.encoder(tokens)), hidden)
        logits = self.decoder(self.drop(output)).view(-1, self.vocab)
        return F.log_softmax(logits, dim=1), hidden


def language_model(repeats: int) -> None:
    V, H, L, B, T = 33278, 200, 2, 20, 35
    torch.manual_seed(0)
    model = WordModel(V, H, L, 0.5).train()
    tokens, targets = torch.randint(0, V, (T, B)), torch.randint(0, V, (T, B))
    hidden = (torch.zeros(L, B, H), torch.zeros(L, B, H))

    def nll(out: tuple[Tensor, Any], y: Tensor) -> Tensor:
        return F.nll_loss(out[0], y.reshape(-1))

    def own() -> None:
        model.zero_grad()
        nll(model(tokens, hidden), targets).backward()

    def traced(estimate: str) -> object:
        return trace(model, tokens, hidden, loss_fn=nll, target=targets, estimate=estimate)

    t_own, t_exact, t_free = best_times(
        [own, lambda: traced("exact"), lambda: traced("matrix-free")], repeats
    )
    print(
        f"[1] word language model (V={V}, H={H}, B={B}, T={T}, train mode): trace / its own "
        f"forward+backward = {t_exact / t_own:.2f}x exact (target <= 5), "
        f"{t_free / t_own:.2f}x matrix-free ({t_own * 1e3:.0f} ms for the model itself)"
    )


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


def check_agreement() -> float:
    """Largest |difference| of log10 c(k) between the two sides on a small float64 case."""
    torch.manual_seed(0)
    lstm = nn.LSTM(4, 12, num_layers=2, dtype=torch.float64)
    x = torch.randn(30, 3, 4, dtype=torch.float64)
    result = trace(lstm, x)
    states = unrolled_states(lstm, x)
    gaps = []
    for layer in range(2):
        rows = autograd_rows(states, layer, range(12))
        reference = torch.log10(torch.linalg.matrix_norm(rows, ord=2)).T
        gaps.append(float((result.find(layer=layer).log10_norm - reference).abs().max()))
    return max(gaps)


def against_autograd(repeats: int, units: int = 8) -> None:
    T, B, I, H, L = 200, 8, 32, 128, 2
    torch.manual_seed(0)
    lstm = nn.LSTM(I, H, num_layers=L)
    x = torch.randn(T, B, I)
    t_trace = best_time(lambda: trace(lstm, x), repeats)
    # the baseline's parts get the same repeats as the trace: a single timing of each swung
    # the ratio two- to three-fold between runs on a loaded machine
    t_forward = best_time(lambda: unrolled_states(lstm, x), repeats)
    states = unrolled_states(lstm, x)
    t_subset = best_time(
        lambda: [autograd_rows(states, layer, range(units)) for layer in range(L)], repeats
    )
    products = torch.randn(T, B, H, H)
    t_norms = best_time(lambda: torch.linalg.matrix_norm(products, ord=2), repeats) * L
    t_autograd = t_forward + t_subset * H / units + t_norms
    print(
        f"[2] 2-layer nn.LSTM H={H} T={T} B={B}: autograd ({L * H} backward passes, "
        f"{L * units} timed) / trace = {t_autograd / t_trace:.1f}x (curves agree to "
        f"{check_agreement():.1e} in log10 on a float64 case)"
    )


BIG_LSTM = """
import torch
from gradtrace.tracing import trace
torch.manual_seed(0)
lstm = torch.nn.LSTM(650, 650, num_layers=2)
x = torch.randn(35, 10, 650)
{work}
"""


def peak_code_mb(code: str) -> float:
    """The maximum resident set of a fresh Python process running `code`, in MB."""
    return peak_rss_mb([sys.executable, "-c", textwrap.dedent(code)])


def memory() -> None:
    own = peak_code_mb(BIG_LSTM.format(work="lstm(x)[0].pow(2).sum().backward()"))
    traced = peak_code_mb(
        BIG_LSTM.format(work="trace(lstm, x, loss_fn=lambda o: o[0].pow(2).sum())")
    )
    jacobians = 2 * 35 * 10 * 1300**2 * 4 / 1e9
    print(
        f"[3] peak memory, 2-layer nn.LSTM H=650 B=10 T=35 (float32): trace {traced:.0f} MB, "
        f"the module's own forward+backward {own:.0f} MB; materialised step Jacobians alone "
        f"would be {jacobians:.1f} GB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", default="default,1")
    args = parser.parse_args()
    for _ in thread_settings(args.threads):
        language_model(args.repeats)
        against_autograd(args.repeats)
    memory()


if __name__ == "__main__":
    main()
