"""The exact gradient flow of a training run's model on a few test sequences.

`gradtrace.trace` for models built on nn.RNN, nn.LSTM and nn.GRU (the loops of the sigmoid and
skip RNNs are not measured here yet: `gradtrace.trace_step` takes their `step`). The first
recurrent layer's `GradientFlow`: c(k) = ||dh_T/dh_k||_2, the memory horizon, the top Lyapunov
exponent and the theory beside them, with ||dL/dh_k|| of the task's loss.
"""

from __future__ import annotations

from torch import Tensor, nn

from gradtrace.records.flow import GradientFlow
from gradtrace.tasks import Task
from gradtrace.tracing import trace


def exact_flow(model: nn.Module, task: Task, x: Tensor, y: Tensor) -> GradientFlow | None:
    """The exact flow of `model`'s first recurrent layer on inputs `x` (B, T, I), in eval mode;
    None for a model with no fused recurrent module (a loop over its own step).

    The model is left as it was (mode, parameters, gradients and the global RNG state).
    """
    if not any(isinstance(m, nn.RNNBase) for m in model.modules()):
        return None
    training = model.training
    model.eval()
    try:
        result = trace(model, x, loss_fn=lambda out: task.loss(out, y))
    finally:
        model.train(training)
    return result.layers[0]


__all__ = ["exact_flow"]
