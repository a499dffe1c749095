"""The symbol tasks: temporal order (2 and 3 relevant symbols) and copy, one-hot in and out.

Temporal order follows Hochreiter & Schmidhuber 1997, "Long short-term memory", experiments 6a
and 6b; copy follows Arjovsky, Shah, Bengio 2016, "Unitary evolution recurrent neural
networks". A step p lies in [a T, b T) when ceil(a T) <= p < ceil(b T), in exact integers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from gradtrace.errors import check
from gradtrace.tasks.task import Task, TaskOptions, ceil_div

# Temporal order's alphabet, one input channel each: a-d distractors, the relevant X and Y, the
# start symbol E and the trigger B that ends every sequence.
ORDER_SYMBOLS = ("a", "b", "c", "d", "X", "Y", "E", "B")
X, E, B = 4, 6, 7  # channels; Y is X + 1
ORDER_WINDOWS = {  # percent of T: the window [a T, b T) of each relevant symbol (papers' 6a, 6b)
    "temporal-order": ((10, 20), (50, 60)),
    "temporal-order-3": ((10, 20), (33, 43), (66, 76)),
}
COPIED = 10  # symbols to copy
COPY_CATEGORIES = 8
BLANK, DELIMITER = 0, COPY_CATEGORIES + 1  # copy's channels: 0 blank, 1-8 symbols, 9 delimiter


def temporal_order(length: int, options: TaskOptions) -> Task:
    """Temporal order with two relevant symbols (experiment 6a): classify the order of X and Y.

    A sequence of T symbols starts with E (step 0) and ends with the trigger B (step T - 1);
    the first relevant symbol, X or Y, stands at a step drawn uniformly from [0.1 T, 0.2 T),
    the second at one from [0.5 T, 0.6 T), and every other step holds a distractor drawn
    uniformly from {a, b, c, d}. The paper draws the length from [100, 110] and the positions
    from [10, 20] and [50, 60]; here the length is T and the windows scale with it.

    x is (B, T, 8) one-hot over the channels a, b, c, d, X, Y, E, B (0-7). y is (B,) int64,
    the class of the relevant symbols read as bits, X = 0 and Y = 1, the first the most
    significant: XX = 0, XY = 1, YX = 2, YY = 3 (the paper's Q, R, S, U). Read at the last
    step; the dependency is T - 1 - ceil(0.1 T), reversed ceil(0.6 T) - 1.

    Baseline: chance, cross-entropy ln 4 (accuracy 1/4): the four classes are equally likely.

    Example, the sample of `make_task("temporal-order", 10)` drawn by
    `sample(1, torch.Generator().manual_seed(0))` (windows {1} and {5} at T = 10), as symbols
    and as its first rows::

        E X b a d Y d d b B     y[0] = 1 (XY)
        x[0, :3] = [[0, 0, 0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 1, 0, 0, 0], [0, 1, 0, 0, 0, 0, 0, 0]]

    Raises:
        GradtraceError: if `length` < 10, where a window would hold no step.
    """
    return _order("temporal-order", length)


def temporal_order_3(length: int, options: TaskOptions) -> Task:
    """Temporal order with three relevant symbols (experiment 6b): 8 classes.

    As `temporal_order`, with relevant symbols in [0.1 T, 0.2 T), [0.33 T, 0.43 T) and
    [0.66 T, 0.76 T) (the paper's [10, 20], [33, 43] and [66, 76] for lengths 100-110). y is
    the three symbols read as bits, X = 0, Y = 1, the first the most significant: XXX = 0,
    XXY = 1, ..., YYY = 7. The dependency is T - 1 - ceil(0.1 T), reversed ceil(0.76 T) - 1.

    Baseline: chance, cross-entropy ln 8 (accuracy 1/8).

    Example, the sample of seed 0 at T = 10 (windows {1}, {4}, {7}), as symbols::

        E X b a Y d d X b B     y[0] = 0b010 = 2 (XYX)

    Raises:
        GradtraceError: if `length` < 10, where a window would hold no step.
    """
    return _order("temporal-order-3", length)


def copy(length: int, options: TaskOptions) -> Task:
    """The copy task: read 10 symbols, wait T steps, reproduce them after the delimiter.

    A sequence has T + 20 steps: 10 symbols drawn uniformly from 8 categories (1-8), T - 1
    blanks, the delimiter, then 10 blanks during which the model must output the 10 symbols in
    order. x is (B, T + 20, 10) one-hot over the channels blank (0), symbols 1-8, delimiter
    (9). y is (B, T + 20) int64 over 9 classes, blank (0) and the symbols (1-8, the same
    numbers as their input channels): blank for the first T + 10 steps, the symbols for the last
    10. Every step is scored (readout "all"); the metric is the accuracy on the last 10 steps.
    Symbol i (step i) is recalled at step T + 10 + i: the dependency is T + 10. Reversal is
    refused: reversed inputs would bring the symbols after the steps that recall them.

    Baseline: the memoryless predictor, blank with certainty for T + 10 steps and uniform over
    the 8 symbols for the last 10, has cross-entropy 10 ln 8 / (T + 20) averaged over all steps
    (Arjovsky et al.'s baseline), and accuracy 1/8 on the recalled symbols.

    Example, the sample `make_task("copy", 3).sample(1, torch.Generator().manual_seed(0))` (23
    steps), as the hot channel of each x row and the target classes::

        x[0].argmax(-1): 5 8 6 1 4 4 4 8 2 4 | 0 0 | 9 | 0 0 0 0 0 0 0 0 0 0
        y[0]:            0 0 0 0 0 0 0 0 0 0 | 0 0 | 0 | 5 8 6 1 4 4 4 8 2 4
    """

    def draw(batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        shape = (batch_size, COPIED)
        symbols = torch.randint(1, COPY_CATEGORIES + 1, shape, generator=generator)
        steps = length + 2 * COPIED
        x = torch.full((batch_size, steps), BLANK, dtype=torch.int64)  # (B, T + 20)
        x[:, :COPIED] = symbols
        x[:, length + COPIED - 1] = DELIMITER
        y = torch.full((batch_size, steps), BLANK, dtype=torch.int64)  # (B, T + 20)
        y[:, -COPIED:] = symbols
        return F.one_hot(x, DELIMITER + 1).to(torch.float32), y  # (B, T + 20, 10)

    return Task(
        name="copy",
        length=length,
        input_size=DELIMITER + 1,
        output_size=COPY_CATEGORIES + 1,
        readout="all",
        kind="classification",
        dependency=length + COPIED,
        baseline=COPIED * math.log(COPY_CATEGORIES) / (length + 2 * COPIED),
        metric_name="accuracy",
        reversed_dependency=None,
        draw=draw,
        draw_test=draw,
        steps=length + 2 * COPIED,
        scored_steps=COPIED,
    )


def order_windows(name: str, length: int) -> list[tuple[int, int]]:
    """The integer steps [start, stop) of each relevant symbol of a temporal-order task."""
    return [(ceil_div(a * length, 100), ceil_div(b * length, 100)) for a, b in ORDER_WINDOWS[name]]


def _order(name: str, length: int) -> Task:
    check(
        length >= 10,
        f"`length` must be at least 10 for the {name} task, so that each window of a relevant "
        f"symbol holds a step, got {length}",
    )
    windows = order_windows(name, length)
    n = len(windows)

    def draw(batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        symbols = torch.randint(0, 4, (batch_size, length), generator=generator)  # (B, T)
        symbols[:, 0], symbols[:, -1] = E, B
        rows = torch.arange(batch_size)
        label = torch.zeros(batch_size, dtype=torch.int64)
        for start, stop in windows:
            step = torch.randint(start, stop, (batch_size,), generator=generator)
            bit = torch.randint(0, 2, (batch_size,), generator=generator)
            symbols[rows, step] = X + bit
            label = 2 * label + bit
        return F.one_hot(symbols, len(ORDER_SYMBOLS)).to(torch.float32), label  # (B, T, 8)

    return Task(
        name=name,
        length=length,
        input_size=len(ORDER_SYMBOLS),
        output_size=2**n,
        readout="last",
        kind="classification",
        dependency=length - 1 - windows[0][0],
        baseline=math.log(2**n),
        metric_name="accuracy",
        reversed_dependency=windows[-1][1] - 1,
        draw=draw,
        draw_test=draw,
        steps=length,
    )
