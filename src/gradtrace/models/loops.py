"""Vanilla recurrences that nn.RNN cannot run, as a Python loop over one step.

    plain     h_t = phi(a_t)                          (the sigmoid RNN: phi = sigmoid)
    residual  h_t = h_{t-1} + eps * phi(a_t)          (the skip RNN: phi = tanh)
    a_t = W_hh h_{t-1} + W_hx x_t + b,                J_t = dh_t/dh_{t-1}
                                                        = diag(phi'(a_t)) W_hh          (plain)
                                                        = I + eps diag(phi'(a_t)) W_hh  (residual)

The step is a method (`LoopRNN.step`), so `gradtrace.trace_step` takes it as it is. Shapes:
B batch, T time, I input, H hidden.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gradtrace.errors import check

ACTIVATIONS = {"sigmoid": torch.sigmoid, "tanh": torch.tanh}


class LoopRNN(nn.Module):
    """h_t = phi(a_t), or h_t = h_{t-1} + eps * phi(a_t) with `eps`, over a batch-first input.

    Args:
        input_size: I.
        hidden_size: H.
        activation: phi, "sigmoid" or "tanh".
        eps: None for the plain recurrence; the step size of the residual one.
        dtype: The parameters' dtype.

    Attributes:
        weight_hh: W_hh (H, H).
        weight_ih: W_hx (H, I).
        bias: b (H,), the one bias.

    The parameters are left uninitialised (`torch.empty`): the registry draws them.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        activation: str,
        eps: float | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        check(
            activation in ACTIVATIONS,
            f"`activation` must be one of {', '.join(ACTIVATIONS)}, got {activation!r}",
        )
        self.input_size, self.hidden_size = input_size, hidden_size
        self.activation, self.eps = activation, eps
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size, dtype=dtype))
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(hidden_size, dtype=dtype))

    def step(self, x_t: Tensor, h: Tensor) -> Tensor:
        """One step: x_t (B, I), h_{t-1} (B, H) -> h_t (B, H)."""
        a = h @ self.weight_hh.T + x_t @ self.weight_ih.T + self.bias  # (B, H)
        update = ACTIVATIONS[self.activation](a)
        return update if self.eps is None else h + self.eps * update

    def initial_state(self, batch: int) -> Tensor:
        """h_0 = 0, (B, H)."""
        return self.weight_hh.new_zeros(batch, self.hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        """The states h_1..h_T (B, T, H) of inputs x (B, T, I) from h_0 = 0."""
        h = self.initial_state(x.shape[0])
        states = []
        for x_t in x.unbind(1):  # (B, I)
            h = self.step(x_t, h)
            states.append(h)
        return torch.stack(states, dim=1)  # (B, T, H)

    def extra_repr(self) -> str:
        rule = "plain" if self.eps is None else f"residual, eps={self.eps}"
        return f"{self.input_size}, {self.hidden_size}, {self.activation}, {rule}"
