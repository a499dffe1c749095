"""The published claims the reproduction checks, each with its runs and its pass criterion.

A `Claim` names the runs it needs (configs of `gradtrace.training.TrainConfig`) and a judge
that reads their `TrainRun` records and says what was measured and whether the criterion
holds. Criteria leave slack over what was observed on a 2-core CPU, so that a pass means the
effect, not a lucky seed. Runs shared by several claims (the LSTM on adding T = 100) are run
once: the store keys them by config.

Papers:
    Hochreiter & Schmidhuber 1997, "Long short-term memory"
    Cho et al. 2014, "Learning phrase representations using RNN encoder-decoder" (GRU)
    Le, Jaitly, Hinton 2015, "A simple way to initialize recurrent networks of rectified
        linear units" (IRNN)
    Pascanu, Mikolov, Bengio 2013, "On the difficulty of training recurrent neural networks"
        (clipping)
    Arjovsky, Shah, Bengio 2016, "Unitary evolution recurrent neural networks" (copy task)
    Sutskever, Vinyals, Le 2014, "Sequence to sequence learning with neural networks"
        (reversed inputs)
    Bengio, Simard, Frasconi 1994, "Learning long-term dependencies with gradient descent is
        difficult" (the memory horizon)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gradtrace.records.training import TrainRun

Judge = Callable[[Sequence[TrainRun]], tuple[str, bool]]


@dataclass(frozen=True)
class Claim:
    """One published claim: the runs it needs, and how they are judged."""

    name: str
    claim: str
    paper: str
    criterion: str
    runs: tuple[dict[str, Any], ...]
    judge: Judge
    quick: bool = False  # part of the subset `make test` runs


def _adding(model: str, length: int, seed: int, **extra: Any) -> dict[str, Any]:
    base = {
        "task": "adding",
        "model": model,
        "length": length,
        "hidden_size": 64,
        "batch_size": 64,
        "optimizer": "adam",
        "lr": 1e-2,
        "clip": "norm",
        "max_norm": 1.0,
        "seed": seed,
        "eval_every": 100,
        "test_size": 1000,
    }
    return {**base, **extra}


def _best(run: TrainRun) -> float:
    return run.metrics["best_test_loss"]


def _fmt(values: Sequence[float]) -> str:
    return ", ".join(f"{v:.3g}" for v in values)


def _all_below(threshold: float) -> Judge:
    def judge(runs: Sequence[TrainRun]) -> tuple[str, bool]:
        best = [_best(r) for r in runs]
        return f"best test MSE {_fmt(best)}", all(b < threshold for b in best)

    return judge


def _stays_at_baseline(runs: Sequence[TrainRun]) -> tuple[str, bool]:
    """Runs[:-1] are the failing model's, runs[-1] a learner's at the same length."""
    *fail, learner = runs
    ratios = [_best(r) / r.metrics["test_variance"] for r in fail]
    learned = _best(learner) / learner.metrics["test_variance"]
    text = f"best MSE / variance {_fmt(ratios)}; the LSTM's {learned:.3g}"
    return text, all(q > 0.9 for q in ratios) and learned < 0.1


def _irnn_learns(runs: Sequence[TrainRun]) -> tuple[str, bool]:
    best = [_best(r) for r in runs]
    norms = [r.metrics["max_grad_norm"] for r in runs]
    ok = any(b < 0.02 and n > 10 for b, n in zip(best, norms, strict=True))
    return f"best MSE {_fmt(best)}, largest raw gradient norm {_fmt(norms)}", ok


def _clipping_tames(runs: Sequence[TrainRun]) -> tuple[str, bool]:
    clipped, unclipped = runs
    peak_c, peak_u = clipped.metrics["max_train_loss"], unclipped.metrics["max_train_loss"]
    above_c = sum(v > 1.0 for v in clipped.curves["train_loss"])
    above_u = sum((v > 1.0 or not math.isfinite(v)) for v in unclipped.curves["train_loss"])
    text = (
        f"largest training loss {peak_u:.3g} unclipped ({unclipped.status}) vs {peak_c:.3g} "
        f"clipped; steps above 1.0: {above_u} vs {above_c}"
    )
    spiky = not math.isfinite(peak_u) or peak_u > 10 * peak_c or above_u >= 5 * max(1, above_c)
    return text, spiky


def _copy(runs: Sequence[TrainRun]) -> tuple[str, bool]:
    tanh, lstm = runs
    base = tanh.metrics["baseline"]
    text = f"best loss / baseline: tanh {_best(tanh) / base:.3g}, LSTM {_best(lstm) / base:.3g}"
    return text, _best(tanh) > 0.9 * base and _best(lstm) < 0.9 * base


def _reversal(runs: Sequence[TrainRun]) -> tuple[str, bool]:
    forward, backward = runs
    text = f"best test loss forward {_best(forward):.3g}, reversed {_best(backward):.3g}"
    return text, _best(backward) < 0.5 * _best(forward)


def _accuracy(threshold: float) -> Judge:
    def judge(runs: Sequence[TrainRun]) -> tuple[str, bool]:
        acc = [r.metrics["best_metric"] for r in runs]
        return f"best test accuracy {_fmt(acc)}", all(a > threshold for a in acc)

    return judge


def _horizons(runs: Sequence[TrainRun]) -> tuple[str, bool]:
    """Every learner's final memory horizon reaches the task's dependency; no failure's does
    (the tanh RNN's runs are the failures, every other model's the learners)."""
    learners = [r for r in runs if r.config["model"] != "tanh"]
    failures = [r for r in runs if r.config["model"] == "tanh"]

    def row(r: TrainRun) -> str:
        h, d = r.metrics["horizon_after"], r.metrics["dependency"]
        return f"{r.config['model']} T={r.config['length']}: {h:.0f}/{d:.0f}"

    ok = all(r.metrics["horizon_after"] >= r.metrics["dependency"] for r in learners) and all(
        not r.metrics["horizon_after"] >= r.metrics["dependency"] for r in failures
    )
    text = "learned: " + "; ".join(map(row, learners)) + " | failed: "
    return text + "; ".join(map(row, failures)), ok


def cpu_claims() -> list[Claim]:
    """The CPU protocol (`make reproduce`): about ten claims, each on this machine's budget."""
    lstm100 = tuple(_adding("lstm", 100, s, steps=2000, target_loss=0.005) for s in (0, 1, 2))
    gru100 = tuple(_adding("gru", 100, s, steps=1000, target_loss=0.005) for s in (0, 1, 2))
    tanh = tuple(_adding("tanh", t, 0, steps=1500, lr=1e-3) for t in (100, 50))
    lstm50 = _adding("lstm", 50, 0, steps=1500, target_loss=0.005)
    irnn = tuple(_adding("irnn", 100, s, steps=4000, lr=1e-3, target_loss=0.01) for s in (0, 1, 2))
    clip = tuple(
        _adding("irnn", 100, 0, steps=600, optimizer="sgd", lr=1e-2, momentum=0.9, clip=c)
        for c in ("norm", "none")
    )
    copy = tuple(
        {
            "task": "copy", "model": m, "length": 20, "hidden_size": 64, "batch_size": 64,
            "steps": 3000 if m == "lstm" else 1500, "lr": 1e-2 if m == "lstm" else 1e-3,
            "eval_every": 100,
            "test_size": 500,
        }
        for m in ("tanh", "lstm")
    )  # fmt: skip
    reverse = tuple(
        {
            "task": "adding-mean", "model": "lstm", "length": 100, "hidden_size": 32,
            "batch_size": 64, "steps": 400, "lr": 1e-2, "eval_every": 50, "reverse": r,
            "test_size": 500,
        }
        for r in (False, True)
    )  # fmt: skip
    digits = (
        {
            "task": "digits", "model": "lstm", "length": 64, "hidden_size": 64,
            "batch_size": 64, "steps": 1500, "lr": 1e-2, "eval_every": 100,
        },
    )  # fmt: skip
    claims = [
        Claim(
            "lstm-adding", "the LSTM solves the adding problem at T = 100",
            "Hochreiter & Schmidhuber 1997", "test MSE < 0.01 within 2,000 steps, seeds 0-2",
            lstm100, _all_below(0.01),
        ),
        Claim(
            "gru-adding", "the GRU solves the adding problem at T = 100",
            "Cho et al. 2014", "test MSE < 0.01 within 1,000 steps, seeds 0-2",
            gru100, _all_below(0.01),
        ),
        Claim(
            "tanh-adding", "a tanh RNN stays at the baseline while the LSTM learns (T = 100, 50)",
            "Hochreiter & Schmidhuber 1997", "tanh best MSE > 0.9 variance; LSTM < 0.1",
            (tanh[0], lstm100[0]), _stays_at_baseline,
        ),
        Claim(
            "tanh-adding-50", "the same at T = 50", "Hochreiter & Schmidhuber 1997",
            "tanh best MSE > 0.9 variance; LSTM < 0.1", (tanh[1], lstm50), _stays_at_baseline,
        ),
        Claim(
            "irnn-adding", "the IRNN learns the adding problem at T = 100 with clipping",
            "Le, Jaitly, Hinton 2015", "best MSE < 0.02 in 4,000 steps on a seed, raw norm > 10",
            irnn, _irnn_learns,
        ),
        Claim(
            "clipping", "clipping removes the loss spikes of an exploding gradient",
            "Pascanu, Mikolov, Bengio 2013",
            "unclipped peak loss > 10x clipped, or >= 5x as many steps above 1.0",
            clip, _clipping_tames,
        ),
        Claim(
            "copy", "on the copy task (T = 20) the tanh RNN stays at the memoryless baseline "
            "and the LSTM beats it", "Arjovsky, Shah, Bengio 2016",
            "tanh > 0.9 baseline, LSTM < 0.9 baseline", copy, _copy, quick=True,
        ),
        Claim(
            "reversal", "reversing the input shortens the dependency and speeds learning",
            "Sutskever, Vinyals, Le 2014", "reversed best loss < half the forward one in 400 "
            "steps", reverse, _reversal, quick=True,
        ),
        Claim(
            "digits", "an LSTM reads 8x8 digits pixel by pixel", "Le, Jaitly, Hinton 2015 "
            "(sequential MNIST, here scikit-learn's digits)", "test accuracy > 80%", digits,
            _accuracy(0.8), quick=True,
        ),
        Claim(
            "horizons", "models that learn a long dependency keep gradients over it; models "
            "that fail do not", "Bengio, Simard, Frasconi 1994",
            "final memory horizon >= the task's dependency for every learner, < for every "
            "failure", (*lstm100, *gru100, lstm50, *tanh), _horizons,
        ),
    ]  # fmt: skip
    return claims


def full_claims() -> list[Claim]:
    """The papers' longer protocol (`--full`, for a GPU): longer sequences and more seeds."""
    claims = cpu_claims()
    longer = [
        Claim(
            "lstm-adding-200", "the LSTM solves the adding problem at T = 200",
            "Hochreiter & Schmidhuber 1997", "test MSE < 0.01 within 10,000 steps, seeds 0-4",
            tuple(_adding("lstm", 200, s, steps=10000, target_loss=0.005) for s in range(5)),
            _all_below(0.01),
        ),
        Claim(
            "irnn-adding-200", "the IRNN learns the adding problem at T = 200",
            "Le, Jaitly, Hinton 2015", "best MSE < 0.02 in 20,000 steps on a seed, raw norm > 10",
            tuple(
                _adding("irnn", 200, s, steps=20000, lr=1e-3, target_loss=0.01)
                for s in range(5)
            ),
            _irnn_learns,
        ),
    ]  # fmt: skip
    return claims + longer
