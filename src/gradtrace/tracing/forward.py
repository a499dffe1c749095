"""Calling a user's model: checked inputs, its output tensor, its loss, errors as one sentence.

Shared by `trace` and `input_sensitivity`. A forward that returns a tuple (nn.LSTM returns
(output, (h_n, c_n))) counts by its first tensor; a PackedSequence is refused, since its rows
are sequences of different lengths whose last steps are not one time step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from gradtrace.errors import GradtraceError, check

LossFn = Callable[..., Tensor]


def check_inputs(inputs: Any) -> Tensor:
    """Check that `inputs` is a tensor with at least one entry and no NaN/Inf; return it.

    Raises:
        GradtraceError: if it is a PackedSequence, not a tensor, empty, or not finite.
    """
    check(
        not isinstance(inputs, PackedSequence),
        "`inputs` must be a padded tensor, got a PackedSequence; pad it with "
        "torch.nn.utils.rnn.pad_packed_sequence and trace equal-length sequences",
    )
    check(
        isinstance(inputs, Tensor),
        f"`inputs` must be a torch.Tensor, got {type(inputs).__name__}",
    )
    assert isinstance(inputs, Tensor)  # for the type checker
    check(inputs.numel() > 0, f"`inputs` must not be empty, got shape {tuple(inputs.shape)}")
    if inputs.is_floating_point() or inputs.is_complex():
        bad = int((~torch.isfinite(inputs)).sum())
        check(bad == 0, f"`inputs` must be finite, got {bad} NaN/Inf entries")
    return inputs


def call_model(model: nn.Module, inputs: Tensor) -> Any:
    """model(inputs), with a failure inside torch turned into one sentence.

    Raises:
        GradtraceError: if the forward raises on these inputs: mismatched shapes or dtypes
            (RuntimeError), token ids out of an embedding's range (IndexError), and the like.
    """
    try:
        return model(inputs)
    except (RuntimeError, IndexError, TypeError, ValueError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise GradtraceError(
            f"`model` failed on `inputs` of shape {tuple(inputs.shape)} and dtype "
            f"{inputs.dtype}: {first_line}"
        ) from err


def first_tensor(output: Any) -> Tensor:
    """The tensor a forward's output stands for: itself, or the first item of a tuple or list.

    Raises:
        GradtraceError: for a PackedSequence or an output that holds no tensor first.
    """
    check(
        not isinstance(output, PackedSequence),
        "`model` returned a PackedSequence, whose sequences end at different steps; return "
        "a padded tensor (torch.nn.utils.rnn.pad_packed_sequence) to trace it",
    )
    if isinstance(output, tuple | list) and output:
        return first_tensor(output[0])
    check(
        isinstance(output, Tensor),
        f"`model` must return a tensor or a tuple whose first item is one, "
        f"got {type(output).__name__}",
    )
    return output


def call_loss(loss_fn: LossFn, output: Tensor, target: Any) -> Tensor:
    """loss_fn(output, target), or loss_fn(output) without a target, checked to be a scalar.

    Raises:
        GradtraceError: if the loss is not a finite scalar tensor.
    """
    loss = loss_fn(output) if target is None else loss_fn(output, target)
    check(
        isinstance(loss, Tensor) and loss.numel() == 1,
        f"`loss_fn` must return a scalar tensor, got "
        f"{tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__}",
    )
    check(bool(torch.isfinite(loss).all()), f"`loss_fn` must return a finite loss, got {loss}")
    check(
        loss.requires_grad,
        "`loss_fn` must return a loss that depends on the model's output, got one without gradient",
    )
    return loss.reshape(())
