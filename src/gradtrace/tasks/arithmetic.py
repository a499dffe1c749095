"""The marked-pair regression tasks: adding, adding-mean and multiplication.

Every step carries two channels, a value drawn from U[0, 1) and a marker, 0 or 1; exactly two
steps are marked and the target is a function of their two values, read at the last step. The
distractor values are drawn too, so only the markers tell the model what to keep. The adding
problem is Hochreiter & Schmidhuber 1997, "Long short-term memory" (experiment 4), in the form
of Le, Jaitly, Hinton 2015 (IRNN); adding-mean and multiplication are the variants of Pascanu,
Mikolov, Bengio 2013, "On the difficulty of training recurrent neural networks".

Integer ranges: a step p lies in [a L, b L) when ceil(a L) <= p < ceil(b L), computed exactly
in integers.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from gradtrace.errors import check
from gradtrace.tasks.task import Task, TaskOptions, ceil_div


def adding(length: int, options: TaskOptions) -> Task:
    """The adding problem: the sum of two marked values, one in each half of the sequence.

    x is (B, T, 2): channel 0 the values, U[0, 1); channel 1 the markers, exactly one 1 at a
    step drawn uniformly from [0, T/2) and one from [T/2, T) (integers p < T/2 and p >= T/2),
    zero elsewhere. y is (B,) float32, the sum of the two marked values. Read at the last step:
    the first marker can be at step 0, so the dependency is T - 1 (reversed as well: the
    second marker can be at step T - 1).

    Baseline: predicting the targets' mean, 1, gives MSE Var(U1 + U2) = 1/12 + 1/12 = 1/6.

    Example, the sample `make_task("adding", 6).sample(1, torch.Generator().manual_seed(0))`
    (values rounded to two decimals; the markers at steps 2 and 3)::

        x[0] = [[0.09, 0], [0.13, 0], [0.31, 1], [0.63, 1], [0.49, 0], [0.90, 0]]  # (T, 2)
        y[0] = 0.31 + 0.63 = 0.94
    """
    split = ceil_div(length, 2)  # the first step >= T / 2

    def draw(batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        first = torch.randint(0, split, (batch_size,), generator=generator)
        second = torch.randint(split, length, (batch_size,), generator=generator)
        x = _marked(batch_size, length, first, second, generator)  # (B, T, 2)
        rows = torch.arange(batch_size)
        return x, x[rows, first, 0] + x[rows, second, 0]

    return Task(
        name="adding",
        length=length,
        input_size=2,
        output_size=1,
        readout="last",
        kind="regression",
        dependency=length - 1,
        baseline=1 / 6,
        metric_name="mse",
        reversed_dependency=length - 1,
        draw=draw,
        draw_test=draw,
        steps=length,
    )


def adding_mean(length: int, options: TaskOptions) -> Task:
    """Pascanu et al.'s adding problem: the mean of two values marked early in a longer sequence.

    One length L is drawn per batch, uniformly from the integers in [T, 1.1 T), so that a batch
    stays one rectangular tensor (the paper draws L per sequence; the fixed test set shares one
    L too). x is (B, L, 2): channel 0 the values, U[0, 1); channel 1 the markers, one 1 at a
    step drawn uniformly from [0, 0.1 L) and one from [0.1 L, 0.5 L). y is (B,) float32, the
    mean of the two marked values. The first marker can be at step 0 of the longest L, so the
    dependency is L_max - 1 (L_max the largest integer below 1.1 T); reversed, the marked steps
    come within ceil(L_max / 2) - 1 steps of the readout.

    Baseline: predicting the mean, 1/2, gives MSE Var((U1 + U2) / 2) = (1/6) / 4 = 1/24.

    Example, the sample `make_task("adding-mean", 10).sample(1, torch.Generator().manual_seed(0))`
    (L = 10, the only integer in [10, 11); markers at steps 0 and 2; two decimals shown)::

        x[0] = [[0.13, 1], [0.31, 0], [0.63, 1], [0.49, 0], [0.90, 0],
                [0.46, 0], [0.63, 0], [0.35, 0], [0.40, 0], [0.02, 0]]     # (L, 2)
        y[0] = (0.13 + 0.63) / 2 = 0.38

    Raises:
        GradtraceError: if `length` < 3, where [0.1 L, 0.5 L) holds no step.
    """
    return _pascanu("adding-mean", length, lambda a, b: (a + b) / 2, 1 / 24)


def multiplication(length: int, options: TaskOptions) -> Task:
    """Pascanu et al.'s multiplication problem: as adding-mean, the target the product.

    x is laid out as in `adding_mean` (one L per batch in [T, 1.1 T), markers in [0, 0.1 L)
    and [0.1 L, 0.5 L)); y is (B,) float32, the product of the two marked values.

    Baseline: predicting the mean, E[U1 U2] = 1/4, gives MSE Var(U1 U2) = E[U1^2] E[U2^2] -
    1/16 = 1/9 - 1/16 = 7/144.

    Example, the sample of seed 0 at T = 10, the same x as adding-mean's (the two tasks draw
    alike)::

        x[0] = [[0.13, 1], [0.31, 0], [0.63, 1], [0.49, 0], [0.90, 0],
                [0.46, 0], [0.63, 0], [0.35, 0], [0.40, 0], [0.02, 0]]     # (L, 2)
        y[0] = 0.133 * 0.630 = 0.084

    Raises:
        GradtraceError: if `length` < 3, where [0.1 L, 0.5 L) holds no step.
    """
    return _pascanu("multiplication", length, lambda a, b: a * b, 7 / 144)


def _pascanu(
    name: str, length: int, target: Callable[[Tensor, Tensor], Tensor], baseline: float
) -> Task:
    check(
        length >= 3,
        f"`length` must be at least 3 for the {name} task, so that [0.1 L, 0.5 L) holds a "
        f"step, got {length}",
    )
    longest = ceil_div(11 * length, 10) - 1  # the largest integer below 1.1 T

    def draw(batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        L = int(torch.randint(length, longest + 1, (), generator=generator))
        tenth, half = ceil_div(L, 10), ceil_div(L, 2)
        first = torch.randint(0, tenth, (batch_size,), generator=generator)
        second = torch.randint(tenth, half, (batch_size,), generator=generator)
        x = _marked(batch_size, L, first, second, generator)  # (B, L, 2)
        rows = torch.arange(batch_size)
        return x, target(x[rows, first, 0], x[rows, second, 0])

    return Task(
        name=name,
        length=length,
        input_size=2,
        output_size=1,
        readout="last",
        kind="regression",
        dependency=longest - 1,
        baseline=baseline,
        metric_name="mse",
        reversed_dependency=ceil_div(longest, 2) - 1,
        draw=draw,
        draw_test=draw,
        steps=None,
    )


def _marked(
    batch_size: int, steps: int, first: Tensor, second: Tensor, generator: torch.Generator
) -> Tensor:
    """Values U[0, 1) in channel 0, a 1 in channel 1 at steps `first` and `second`: (B, T, 2)."""
    x = torch.zeros(batch_size, steps, 2)
    x[:, :, 0] = torch.rand(batch_size, steps, generator=generator)
    rows = torch.arange(batch_size)
    x[rows, first, 1] = 1.0
    x[rows, second, 1] = 1.0
    return x
