"""Long-term-dependency tasks, drawn on the fly from a seeded `torch.Generator`.

Each task says what a model reads (x (B, T', I) float32, batch first), what it must answer,
where the answer is read ("last": the output at the last step; "all": every step's), how far
back the answer reaches (`dependency`) and the exact loss of the trivial predictor
(`baseline`):

    name              I   O   readout  kind            baseline          dependency
    adding            2   1   last     regression      1/6               T - 1
    adding-mean       2   1   last     regression      1/24              L_max - 1
    multiplication    2   1   last     regression      7/144             L_max - 1
    temporal-order    8   4   last     classification  ln 4              T - 1 - ceil(0.1 T)
    temporal-order-3  8   8   last     classification  ln 8              T - 1 - ceil(0.1 T)
    copy              10  9   all      classification  10 ln 8/(T + 20)  T + 10
    digits            1   10  last     classification  ln 10             63
    permuted-digits   1   10  last     classification  ln 10             63
    mnist             1   10  last     classification  ln 10             783
    permuted-mnist    1   10  last     classification  ln 10             783

    TASKS, make_task      the registry by name and the one builder (`tasks.registry`)
    default_length        a task's length when none is given (digits 64, mnist 784, else 100)
    Task, TaskOptions     a built task: sample, test_set, loss, metric (`tasks.task`)
    reverse_inputs        the one input reversal (`make_task(..., reverse=True)`)
    pixel_permutation     the fixed permutation of the permuted image tasks
    read_mnist, read_idx  MNIST from the user's IDX files or .npz (`tasks.mnist_files`)

Example:
    >>> task = make_task("copy", 20)
    >>> x, y = task.sample(16, torch.Generator().manual_seed(0))   # (16, 40, 10), (16, 40)
    >>> loss = task.loss(model(x), y)                                # model: (B, T', 9) out
"""

from __future__ import annotations

from gradtrace.tasks.images import pixel_permutation
from gradtrace.tasks.mnist_files import read_idx, read_mnist
from gradtrace.tasks.registry import TASKS, Builder, default_length, make_task
from gradtrace.tasks.task import Task, TaskOptions, reverse_inputs

__all__ = [
    "TASKS",
    "Builder",
    "Task",
    "TaskOptions",
    "default_length",
    "make_task",
    "pixel_permutation",
    "read_idx",
    "read_mnist",
    "reverse_inputs",
]
