"""One long-term-dependency task: how it draws a batch, and how a model's output is scored.

A `Task` holds data, not behaviour that varies by subclass: each task module builds one with the
callables that draw its batches, and the loss and the metric follow from two fields, `kind` and
`readout`. Shapes: B batch, T' the steps of a drawn sequence (T for most tasks, T + 20 for copy,
a drawn L for adding-mean), I input channels, O outputs. Models return per-step outputs
(B, T', O), batch first, like `torch.nn.RNN(batch_first=True)` followed by a linear readout.

    readout "last", regression       loss = MSE of output[:, -1, 0] against y (B,)
    readout "last", classification   loss = cross-entropy of output[:, -1] against y (B,) int64
    readout "all",  classification   loss = cross-entropy of every step's output against
                                     y (B, T') int64, averaged over B * T' steps

`reverse_inputs` is the one place input reversal (Sutskever, Vinyals, Le 2014, "Sequence to
sequence learning with neural networks") happens: it flips x in time, leaves y alone and swaps
the task's two dependencies.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from gradtrace.budgets import Work, require
from gradtrace.errors import GradtraceError, check, described

Draw = Callable[[int, torch.Generator], tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class TaskOptions:
    """What some task builders need besides the length.

    Attributes:
        mnist_path: The MNIST files of the mnist tasks: a folder of IDX files or one .npz.
        permutation_seed: Seeds the one fixed pixel permutation of the permuted tasks.
    """

    mnist_path: Path | None = None
    permutation_seed: int = 0


@dataclass(frozen=True)
class Task:
    """A task at one length: its sizes, its scoring, its trivial baseline and its batches.

    Attributes:
        name: The name in `TASKS` ("adding", "copy", ...).
        length: T as requested (a drawn sequence has `steps` steps, or about T for adding-mean).
        input_size: Input channels I.
        output_size: Outputs O the model must produce per step (1 for regression, classes else).
        readout: "last": only the output at the last step is scored; "all": every step's.
        kind: "regression" (MSE) or "classification" (cross-entropy).
        dependency: The largest lag, in steps, from an input the target needs to the step whose
            output is scored: the answer at step t can depend on x at step t - dependency.
        baseline: The exact loss of the trivial predictor (the targets' mean, or chance), in
            closed form.
        metric_name: "mse" (regression) or "accuracy" (classification).
        reversed_dependency: `dependency` of the same task with its inputs reversed in time;
            None where reversal is refused (a task scored at every step).
        reversed: Whether the inputs are reversed in time.
        scored_steps: Readout "all" only: the metric (not the loss) reads the last
            `scored_steps` steps (copy: the 10 recalled symbols); None reads every step.
        draw: (batch_size, generator) -> (x, y), a fresh batch (the training split for data
            sets).
        draw_test: (size, generator) -> (x, y), the fixed test set.
        steps: T', the steps of a drawn sequence; None when it is drawn (adding-mean).
    """

    name: str
    length: int
    input_size: int
    output_size: int
    readout: Literal["last", "all"]
    kind: Literal["regression", "classification"]
    dependency: int
    baseline: float
    metric_name: Literal["mse", "accuracy"]
    reversed_dependency: int | None
    draw: Draw = dataclasses.field(repr=False)
    draw_test: Draw = dataclasses.field(repr=False)
    steps: int | None = None
    reversed: bool = False
    scored_steps: int | None = None

    @property
    def max_steps(self) -> int:
        """The most steps a drawn sequence has: `steps`, or under 1.1 T for adding-mean."""
        return self.steps or (11 * self.length + 9) // 10

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """A batch: x (B, T', I) float32 and y ((B,) float32, (B,) or (B, T') int64).

        The same generator state gives the same batch, bit for bit.

        Raises:
            GradtraceError: if `batch_size` is not a whole number >= 1 or `generator` is not a
                `torch.Generator`, or the batch would exceed the memory budget.
        """
        _check_draw("batch_size", batch_size, generator, self)
        x, y = self.draw(batch_size, generator)
        return (x.flip(1), y) if self.reversed else (x, y)

    def test_set(self, size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """The fixed test set, shaped as `sample`'s batches.

        Generated tasks draw `size` sequences from `generator`: seed it with a fixed seed of its
        own, apart from the training batches', for the same test set every run. Data-set tasks
        return the first `size` sequences of their test split in its stored order (the whole
        split when it is smaller) and leave `generator` unused.

        Raises:
            GradtraceError: as `sample`, naming `size`.
        """
        _check_draw("size", size, generator, self)
        x, y = self.draw_test(size, generator)
        return (x.flip(1), y) if self.reversed else (x, y)

    def loss(self, output: Tensor, y: Tensor) -> Tensor:
        """The mean loss of per-step outputs (B, T', O) against targets y, a scalar tensor.

        Raises:
            GradtraceError: if `output`'s shape does not fit `y` and the task.
        """
        out = self._scored(output, y)
        if self.kind == "regression":
            return F.mse_loss(out, y.to(out.dtype))
        if self.readout == "all":
            return F.cross_entropy(out.reshape(-1, self.output_size), y.reshape(-1))
        return F.cross_entropy(out, y)

    def metric(self, output: Tensor, y: Tensor) -> float:
        """MSE (regression) or the fraction of scored steps classified right (classification)."""
        with torch.no_grad():
            out = self._scored(output, y)
            if self.kind == "regression":
                return float(F.mse_loss(out, y.to(out.dtype)))
            if self.scored_steps is not None:
                out, y = out[:, -self.scored_steps :], y[:, -self.scored_steps :]
            return float((out.argmax(-1) == y).to(torch.float64).mean())

    def _scored(self, output: Tensor, y: Tensor) -> Tensor:
        """The outputs the loss reads: (B,) regression, (B, O) or (B, T', O) classification."""
        check(
            isinstance(output, Tensor) and output.ndim == 3,
            f"`output` must be a tensor of shape (batch, steps, {self.output_size}), got "
            f"{described(output)}",
        )
        batch, steps, outputs = output.shape
        check(
            outputs == self.output_size and batch == y.shape[0],
            f"`output` must have shape ({y.shape[0]}, steps, {self.output_size}) for the "
            f"{self.name} task's targets, got {tuple(output.shape)}",
        )
        if self.readout == "all":
            check(
                steps == y.shape[1],
                f"`output` must have one step per target step ({y.shape[1]}) for the "
                f"{self.name} task, got {steps}",
            )
            return output
        last = output[:, -1]  # (B, O)
        return last[:, 0] if self.kind == "regression" else last


def reverse_inputs(task: Task) -> Task:
    """The same task with every input sequence reversed in time and the targets unchanged.

    Reversing twice gives the task back. The dependency becomes the reversed one: in
    adding-mean, the markers in the first half of x come within half a sequence of the readout.

    Raises:
        GradtraceError: for a task scored at every step (copy), where a reversed input would put
            the symbols after the steps that must recall them.
    """
    if task.reversed_dependency is None:
        raise GradtraceError(
            f"`reverse` is refused for the {task.name} task, which is scored at every step: "
            "reversed inputs would come after the outputs that need them; use a task scored "
            "at its last step"
        )
    return dataclasses.replace(
        task,
        dependency=task.reversed_dependency,
        reversed_dependency=task.dependency,
        reversed=not task.reversed,
    )


def _check_draw(name: str, size: object, generator: object, task: Task) -> None:
    check(
        isinstance(size, int) and not isinstance(size, bool) and size >= 1,
        f"`{name}` must be a whole number >= 1, got {size!r}",
    )
    check(
        isinstance(generator, torch.Generator),
        f"`generator` must be a torch.Generator, got {type(generator).__name__}",
    )
    assert isinstance(size, int)  # for the type checker
    memory = 4.0 * size * task.max_steps * (task.input_size + 2)
    require(Work(memory=memory), f"`{name}` or `length`")


def ceil_div(n: int, d: int) -> int:
    """ceil(n / d) in exact integers: the first step p with p >= n / d."""
    return -(-n // d)
