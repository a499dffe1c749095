"""Train a small word-level LSTM language model with gradtrace's monitor on, then write its report.

The model and the loop are the usual ones for word-level language modelling (as in PyTorch's
word_language_model example): an embedding, a 2-layer LSTM with dropout, a decoder tied to the
embedding; the text is cut into B parallel streams, trained with truncated backpropagation
through time over windows of `--bptt` words, the hidden state carried from one window to the
next (detached), gradients clipped. The monitor records every `--every`-th step into OUT, with
the lag shares and a full trace now and then, and `gradtrace monitor` turns it into figures.

    python examples/monitor_word_lm.py --data tests/data/tiny.txt --steps 300 --out runs/wlm
    gradtrace monitor runs/wlm
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import gradtrace
from gradtrace.report import monitor_report


def tokenize(path: Path) -> tuple[Tensor, list[str]]:
    """Word ids of the whole text (an <eos> after every line) and the vocabulary."""
    vocab: dict[str, int] = {}
    ids = []
    for line in path.read_text(encoding="utf-8").splitlines():
        for word in [*line.split(), "<eos>"]:
            ids.append(vocab.setdefault(word, len(vocab)))
    return torch.tensor(ids, dtype=torch.long), list(vocab)


def batchify(data: Tensor, batch: int) -> Tensor:
    """(N,) ids as (N / B, B): B parallel streams, one per column."""
    n = data.shape[0] // batch
    return data[: n * batch].view(batch, n).t().contiguous()


class WordLM(nn.Module):
    def __init__(self, vocab: int, size: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(vocab, size)
        self.rnn = nn.LSTM(size, size, layers, dropout=dropout)
        self.decoder = nn.Linear(size, vocab)
        self.decoder.weight = self.encoder.weight  # tied
        self.vocab, self.size, self.layers = vocab, size, layers

    def forward(self, tokens: Tensor, hidden: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple]:
        output, hidden = self.rnn(self.drop(self.encoder(tokens)), hidden)
        logits = self.decoder(self.drop(output))
        return F.log_softmax(logits, dim=-1).view(-1, self.vocab), hidden

    def init_hidden(self, batch: int) -> tuple[Tensor, Tensor]:
        weight = next(self.parameters())
        shape = (self.layers, batch, self.size)
        return weight.new_zeros(shape), weight.new_zeros(shape)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("tests/data/tiny.txt"))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--bptt", type=int, default=35)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--lr", type=float, default=1.0)
    parser.add_argument("--clip", type=float, default=0.25)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--chunk", type=int, default=7, help="K: boundaries every K words")
    parser.add_argument("--lag-every", type=int, default=5)
    parser.add_argument("--trace-every", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/word_lm"))
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    ids, vocab = tokenize(args.data)
    streams = batchify(ids, args.batch)  # (N, B)
    model = WordLM(len(vocab), args.size, args.layers, args.dropout)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    monitor = gradtrace.Monitor(
        model, optimizer, every=args.every, log=args.out, lag_every=args.lag_every,
        trace_every=args.trace_every, chunk=args.chunk, lags=(1, 4, 16),
    )  # fmt: skip
    hidden = model.init_hidden(args.batch)
    position, losses = 0, []
    model.train()
    for step in range(args.steps):
        if position + args.bptt + 1 > streams.shape[0]:
            position, hidden = 0, model.init_hidden(args.batch)  # the next epoch
        tokens = streams[position : position + args.bptt]
        targets = streams[position + 1 : position + 1 + args.bptt].reshape(-1)
        position += args.bptt
        hidden = tuple(h.detach() for h in hidden)  # truncated BPTT: carried, not differentiated
        with monitor.step(step) as s:
            output, hidden = model(tokens, hidden)
            loss = s.loss(F.nll_loss(output, targets))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            optimizer.step()
            optimizer.zero_grad()
        losses.append(loss.item())
    monitor.close()
    report = monitor_report(args.out, args.out / "report")
    first = sum(losses[:10]) / min(10, len(losses))
    last = sum(losses[-10:]) / min(10, len(losses))
    print(
        f"trained {args.steps} steps on {len(ids)} words ({len(vocab)} in the vocabulary): "
        f"loss {first:.3f} -> {last:.3f} (perplexity {math.exp(last):.1f})"
    )
    for line in report.verdicts:
        print(f"- {line}")
    print(f"report: {args.out / 'report' / 'report.md'}")


if __name__ == "__main__":
    main()
