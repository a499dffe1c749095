"""Trace real PyTorch models: gradient flow through time, input sensitivity, fixed points.

    trace(model, inputs)               every nn.RNN / nn.LSTM / nn.GRU inside `model`, per layer
                                       and direction: c(k), ||dL/dh_k||, theory, Lyapunov
    input_sensitivity(model, inputs)   any sequence model: ||dy_T/dx_k|| or ||dL/dx_k||
    trace_step(step, inputs, h0)       a user's own recurrent step function, via autograd
    layer_fixed_points(model, x)       fixed points of one layer for a fixed input

This layer builds on the cells, the core engine and theory, the recurrent analysis and the
fixed-point finder; nothing below it imports it.

The package is named `tracing` so that the public function `gradtrace.trace` never collides
with it.
"""

from gradtrace.tracing.api import trace
from gradtrace.tracing.fixed_points import layer_fixed_points
from gradtrace.tracing.sensitivity import input_sensitivity
from gradtrace.tracing.stepwise import trace_step

__all__ = [
    "input_sensitivity",
    "layer_fixed_points",
    "trace",
    "trace_step",
]
