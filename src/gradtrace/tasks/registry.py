"""The registry of tasks by name, and `make_task`, the one way to build one.

The keys of `TASKS` are the names the CLI takes (`gradtrace train adding ...`); each value
builds the task at a length from `TaskOptions`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gradtrace.errors import check, check_seed
from gradtrace.tasks.arithmetic import adding, adding_mean, multiplication
from gradtrace.tasks.images import FIXED_LENGTHS, digits, mnist, permuted_digits, permuted_mnist
from gradtrace.tasks.symbols import copy, temporal_order, temporal_order_3
from gradtrace.tasks.task import Task, TaskOptions, reverse_inputs

Builder = Callable[[int, TaskOptions], Task]

TASKS: dict[str, Builder] = {
    "adding": adding,
    "adding-mean": adding_mean,
    "multiplication": multiplication,
    "temporal-order": temporal_order,
    "temporal-order-3": temporal_order_3,
    "copy": copy,
    "digits": digits,
    "permuted-digits": permuted_digits,
    "mnist": mnist,
    "permuted-mnist": permuted_mnist,
}
DEFAULT_LENGTH = 100


def default_length(name: str) -> int:
    """The length a task runs at when none is given: an image task's own number of pixels
    (digits 64, mnist 784), otherwise `DEFAULT_LENGTH`."""
    return FIXED_LENGTHS.get(name, DEFAULT_LENGTH)


def make_task(
    name: str,
    length: int,
    *,
    reverse: bool = False,
    mnist_path: str | Path | None = None,
    permutation_seed: int = 0,
) -> Task:
    """The task `name` at sequence length `length`.

    Args:
        name: A key of `TASKS`.
        length: T, at least 2 (some tasks need more, and the image tasks take exactly their
            pixel count: 64 for digits, 784 for MNIST).
        reverse: Feed every input sequence backwards in time, the targets unchanged.
        mnist_path: The MNIST files for "mnist" and "permuted-mnist": a folder of the four IDX
            files or one .npz; read only by those two tasks.
        permutation_seed: Seeds the fixed pixel permutation of the permuted tasks.

    Returns:
        The `Task`, whose `sample` draws batches and `test_set` the fixed test set.

    Raises:
        GradtraceError: naming the argument that does not fit, in one sentence.

    Example:
        >>> task = make_task("adding", 50)
        >>> x, y = task.sample(32, torch.Generator().manual_seed(0))
        >>> x.shape, y.shape, task.baseline
        (torch.Size([32, 50, 2]), torch.Size([32]), 0.16666666666666666)
    """
    check(
        isinstance(name, str) and name in TASKS,
        f"`name` must be one of the tasks {', '.join(TASKS)}, got {name!r}",
    )
    check(
        isinstance(length, int) and not isinstance(length, bool) and length >= 2,
        f"`length` must be a whole number >= 2, got {length!r}",
    )
    check(isinstance(reverse, bool), f"`reverse` must be True or False, got {reverse!r}")
    check(
        mnist_path is None or isinstance(mnist_path, str | Path),
        f"`mnist_path` must be a path or None, got {type(mnist_path).__name__}",
    )
    check_seed(permutation_seed, "permutation_seed")
    options = TaskOptions(None if mnist_path is None else Path(mnist_path), permutation_seed)
    task = TASKS[name](length, options)
    return reverse_inputs(task) if reverse else task
