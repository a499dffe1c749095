"""Benchmark of the training monitor: a monitored training step against the same step without
it, side by side in one run.

Models (float32, SGD, clip_grad_norm_ at 1.0, a linear head and a mean-square loss):
a 2-layer nn.LSTM (H = 128, T = 200, B = 32, I = 32), a 2-layer nn.GRU of the same size, two
nn.LSTMCell of that size stacked in a Python loop over the steps (`cells`, as pytorch/examples'
time_sequence_prediction writes it), and an 8-layer MLP (width 512, B = 256). For each, the time
of one training step

    plain      the step without the monitor
    every 1    monitored on every step: norms, clipping audit, through-time profile
               (targets: at most 1.10x plain)
    every 16   monitored on one step in 16: the average over 16 steps (target: 1.02x)
    + lags     every step, with the lag shares too (reported, no target; fused modules only)
    + trace    every step, with a full gradtrace.trace too (reported, no target)

A round runs 16 steps of each compared variant (one of them monitored for every 16) and single
steps of the extras, in a shuffled order; each variant's ratio to plain is taken within a round
(so slow spells of a shared machine cancel) and the median over the rounds is printed. Runs with
torch's default thread count and with one thread.

    python benchmarks/bench_monitor.py [--rounds 8] [--threads default,1]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

import gradtrace
from common import thread_settings

T, B, I, H = 200, 32, 32, 128


class Recurrent(nn.Module):
    def __init__(self, kind: type[nn.RNNBase]) -> None:
        super().__init__()
        self.rnn = kind(I, H, num_layers=2)
        self.head = nn.Linear(H, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.rnn(x)[0])


class CellLoop(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cell1, self.cell2 = nn.LSTMCell(I, H), nn.LSTMCell(H, H)
        self.head = nn.Linear(H, 1)

    def forward(self, x: Tensor) -> Tensor:
        zeros = x.new_zeros(x.shape[1], H)
        s1, s2 = (zeros, zeros), (zeros, zeros)
        outputs = []
        for x_t in x.unbind(0):
            s1 = self.cell1(x_t, s1)
            s2 = self.cell2(s1[0], s2)
            outputs.append(self.head(s2[0]))
        return torch.stack(outputs)


def mlp() -> nn.Module:
    layers: list[nn.Module] = [nn.Linear(I, 512), nn.Tanh()]
    for _ in range(6):
        layers += [nn.Linear(512, 512), nn.Tanh()]
    return nn.Sequential(*layers, nn.Linear(512, 1))


def make(name: str) -> tuple[nn.Module, Tensor, Tensor]:
    torch.manual_seed(0)
    if name == "mlp":
        x = torch.randn(256, I)
        return mlp(), x, torch.randn(256, 1)
    model = CellLoop() if name == "cells" else Recurrent(nn.LSTM if name == "lstm" else nn.GRU)
    return model, torch.randn(T, B, I), torch.randn(T, B, 1)


def stepper(
    model: nn.Module, x: Tensor, y: Tensor, monitor: gradtrace.Monitor | None
) -> Callable[[int], None]:
    optimizer = monitor.optimizer if monitor else torch.optim.SGD(model.parameters(), 1e-3)
    assert optimizer is not None

    def step(number: int) -> None:
        def body() -> None:
            loss = (model(x) - y).pow(2).mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()

        if monitor is None:
            body()
            return
        with monitor.step(number):
            body()

    return step


def measure(name: str, rounds: int) -> None:
    model, x, y = make(name)
    variants: dict[str, Any] = {}

    def monitored(**options: Any) -> Callable[[int], None]:
        opt = torch.optim.SGD(model.parameters(), 1e-3)
        return stepper(model, x, y, gradtrace.Monitor(model, opt, **options))

    # 16 steps a round for the three compared variants, so that every 16 has its one monitored
    # step and 15 plain ones; the costly extras are timed on single steps.
    variants["plain"] = (stepper(model, x, y, None), 16)
    variants["every 1"] = (monitored(every=1), 16)
    variants["every 16"] = (monitored(every=16), 16)
    if name in ("lstm", "gru"):
        variants["+ lags"] = (monitored(every=1, lag_every=1), 1)
    if name != "mlp":
        variants["+ trace"] = (monitored(every=1, trace_every=1), 1)
    for _key, (run, _) in variants.items():  # warm up every path once
        run(0)
    order = random.Random(0)
    ratios: dict[str, list[float]] = {key: [] for key in variants}
    plain_times = []
    for _ in range(rounds):
        keys = list(variants)
        order.shuffle(keys)  # no variant always runs first, or last, in a round
        times = {}
        for key in keys:
            run, n = variants[key]
            start = time.perf_counter()
            for i in range(n):
                run(16 + i)  # step numbers 16.. : on every 16, the first is scheduled
            times[key] = (time.perf_counter() - start) / n
        plain_times.append(times["plain"])
        for key in variants:  # against plain in the same round: slow spells cancel
            ratios[key].append(times[key] / times["plain"])
    parts = [f"{key} {statistics.median(ratios[key]):.3f}x" for key in variants if key != "plain"]
    plain = statistics.median(plain_times)
    print(f"    {name:<5} plain {plain * 1e3:7.1f} ms/step; " + ", ".join(parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--threads", default="default,1")
    args = parser.parse_args()
    for _ in thread_settings(args.threads, "; targets: every 1 <= 1.10x, every 16 <= 1.02x"):
        for name in ("lstm", "gru", "cells", "mlp"):
            measure(name, args.rounds)


if __name__ == "__main__":
    main()
