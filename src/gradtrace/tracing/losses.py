"""Losses named on the command line, applied to the tensor a model's output stands for.

    mean-square     mean((y - target)^2), or mean(y^2) without a target
    sum             sum(y), no target
    cross-entropy   cross-entropy of y's last axis (classes) against integer targets; on
                    log-probabilities (a model that ends in log_softmax, such as the
                    pytorch/examples language model) it equals the negative log-likelihood

y is the output's first tensor (`forward.first_tensor`): the log-probabilities of an
RNNModel's (log_probs, hidden), an nn.LSTM's output sequence. A loss of several outputs is a
Python function, `--loss package.module:function`, called with the whole output.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from gradtrace.errors import GradtraceError, check
from gradtrace.tracing.forward import LossFn, describe_output, first_tensor

LOSSES = ("mean-square", "sum", "cross-entropy")


def _first(output: Any, loss: str) -> Tensor:
    """The tensor the output stands for, or one sentence naming the loss that needed it."""
    try:
        return first_tensor(output)
    except GradtraceError:
        if isinstance(output, PackedSequence):
            raise
        raise GradtraceError(
            f"`loss_fn` {loss!r} measures the output's first tensor, but the model returned "
            f"{describe_output(output)}; give a loss function of the whole output instead "
            "(on the command line, `--loss package.module:function`)"
        ) from None


def _mean_square(output: Any, target: Tensor | None = None) -> Tensor:
    y = _first(output, "mean-square")
    if target is None:
        return y.pow(2).mean()
    check(
        target.shape == y.shape,
        f"`target` must have the output's shape {tuple(y.shape)} for mean-square, "
        f"got {tuple(target.shape)}",
    )
    return F.mse_loss(y, target.to(y.dtype))


def _sum(output: Any, target: Tensor | None = None) -> Tensor:
    check(target is None, "`target` is not used by the sum loss; drop it or choose another loss")
    return _first(output, "sum").sum()


def _cross_entropy(output: Any, target: Tensor | None = None) -> Tensor:
    y = _first(output, "cross-entropy")
    check(target is not None, "`target` is needed for cross-entropy: the class of each row")
    assert target is not None  # for the type checker
    check(
        not target.is_floating_point() and not target.is_complex(),
        f"`target` must hold integer classes for cross-entropy, got {target.dtype}",
    )
    classes = y.shape[-1]
    rows = y.reshape(-1, classes)
    check(
        target.numel() == rows.shape[0],
        f"`target` must give one class per row of the output ({rows.shape[0]} rows of "
        f"{classes} classes), got shape {tuple(target.shape)}",
    )
    flat = target.reshape(-1).to(y.device, torch.long)
    bad = flat[(flat < 0) | (flat >= classes)]
    check(bad.numel() == 0, f"`target` classes must lie in [0, {classes}), got {bad[:3].tolist()}")
    return F.cross_entropy(rows, flat)


_NAMED = {"mean-square": _mean_square, "sum": _sum, "cross-entropy": _cross_entropy}


def named_loss(name: str) -> LossFn:
    """The loss called `name`, one of `LOSSES`, as loss_fn(output[, target]).

    Raises:
        GradtraceError: for any other name.
    """
    check(name in _NAMED, f"`loss` must be one of {', '.join(LOSSES)}, got {name!r}")
    return _NAMED[name]
