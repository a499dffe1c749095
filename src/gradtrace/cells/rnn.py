"""The vanilla (Elman) RNN step beside its analytic step Jacobian.

Recurrence, with phi an elementwise activation from `gradtrace.core.activations`:

    a_t = W_hh h_{t-1} + W_hx x_t + b
    h_t = phi(a_t)
    J_t = dh_t / dh_{t-1} = diag(phi'(a_t)) W_hh

So ||J_t|| <= gamma * sigma_max(W_hh) with gamma = sup |phi'|: the bound behind vanishing and
exploding gradients (On the difficulty of training recurrent neural networks, Pascanu, Mikolov,
Bengio 2013). The state is h itself, so S = H. Shapes: B batch, I input, H hidden.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from gradtrace.cells._checks import check_step_inputs, check_tensor, check_weights, moved
from gradtrace.core.activations import get_activation
from gradtrace.core.products import times_thin
from gradtrace.errors import check

DENSE_WORK = 2**13  # B H^2 up to which a sweep forms a chunk's Jacobians (`RNNFactors`)


@dataclass(frozen=True, eq=False)
class RNNWeights:
    """Weights of a vanilla RNN; checked on construction.

    Attributes:
        W_hh: Recurrent weights, shape (H, H).
        W_hx: Input weights, shape (H, I).
        b: Bias, shape (H,) (PyTorch's bias_ih + bias_hh).
        activation: Name of phi, a key of `gradtrace.core.activations.ACTIVATIONS`.

    Raises:
        GradtraceError: if a shape disagrees, a weight is not finite, the dtypes or devices
            differ, or the activation is unknown.
    """

    W_hh: Tensor
    W_hx: Tensor
    b: Tensor
    activation: str = "tanh"

    def __post_init__(self) -> None:
        W_hh = check_tensor("W_hh", self.W_hh, 2)
        shape = tuple(W_hh.shape)
        check(shape[0] == shape[1], f"`W_hh` must be square, got shape {shape}")
        H = shape[0]
        W_hx = check_tensor("W_hx", self.W_hx, 2)
        check(
            W_hx.shape[0] == H,
            f"`W_hx` must have H = {H} rows to match `W_hh`, got shape {tuple(W_hx.shape)}",
        )
        b = check_tensor("b", self.b, 1)
        check(b.shape == (H,), f"`b` must have shape ({H},) to match `W_hh`, got {tuple(b.shape)}")
        check_weights({"W_hh": W_hh, "W_hx": W_hx, "b": b})
        get_activation(self.activation)

    @property
    def hidden_size(self) -> int:
        """H, the number of hidden units."""
        return self.W_hh.shape[0]

    @property
    def input_size(self) -> int:
        """I, the number of input features."""
        return self.W_hx.shape[1]

    @property
    def proj_size(self) -> int:
        """P, the size of h: H (only an LSTM can project h to another size)."""
        return self.hidden_size

    @property
    def state_size(self) -> int:
        """S = H: the state is the hidden vector."""
        return self.hidden_size

    def recurrent_blocks(self) -> dict[str, Tensor]:
        """The square recurrent block by name, for the theory numbers: {"W_hh": W_hh}."""
        return {"W_hh": self.W_hh}

    def to(
        self, dtype: torch.dtype | None = None, device: torch.device | str | None = None
    ) -> RNNWeights:
        """Return a copy with every tensor moved to `dtype` and `device`."""
        return moved(self, dtype, device)


def rnn_preactivation(w: RNNWeights, x: Tensor, h: Tensor) -> Tensor:
    """The pre-activation a_t = W_hh h_{t-1} + W_hx x_t + b.

    Args:
        w: The RNN's weights.
        x: Input x_t, shape (B, I).
        h: Previous hidden state h_{t-1}, shape (B, H).

    Returns:
        a_t, shape (B, H).

    Raises:
        GradtraceError: if `x` or `h` has the wrong shape, dtype or device.
    """
    check_step_inputs(
        x, h, state_name="h", input_size=w.input_size, state_size=w.hidden_size, like=w.W_hh
    )
    return torch.addmm(rnn_drive(w, x), h, w.W_hh.T)  # (B, H)


def rnn_drive(w: RNNWeights, x: Tensor) -> Tensor:
    """The input's part of the pre-activation, W_hx x_t + b, for any number of rows x (N, I):
    a replay computes it for all T steps in one product (unchecked: see `rnn_step`)."""
    return torch.addmm(w.b, x, w.W_hx.T)  # (N, H)


def rnn_advance(w: RNNWeights, u: Tensor, h: Tensor) -> Tensor:
    """One step from its input drive u = `rnn_drive(w, x_t)` (B, H), unchecked."""
    return get_activation(w.activation).fn(torch.addmm(u, h, w.W_hh.T))


def rnn_step(w: RNNWeights, x: Tensor, h: Tensor) -> Tensor:
    """One step h_t = phi(a_t); shapes as in `rnn_preactivation`, returns (B, H)."""
    return get_activation(w.activation).fn(rnn_preactivation(w, x, h))


def rnn_jacobian(w: RNNWeights, x: Tensor, h: Tensor) -> Tensor:
    """The step Jacobian J_t = dh_t/dh_{t-1} = diag(phi'(a_t)) W_hh, evaluated at (x_t, h_{t-1}).

    Args:
        w: The RNN's weights.
        x: Input x_t, shape (B, I).
        h: Previous hidden state h_{t-1}, shape (B, H).

    Returns:
        J_t for each batch element, shape (B, H, H); exact up to the dtype's rounding.

    Raises:
        GradtraceError: if `x` or `h` has the wrong shape, dtype or device.
    """
    slope = get_activation(w.activation).derivative(rnn_preactivation(w, x, h))  # (B, H)
    # diag(d) W scales row i of W by d_i.
    return slope.unsqueeze(-1) * w.W_hh  # (B, H, H)


@dataclass(frozen=True, eq=False)
class RNNFactors:
    """The step Jacobians diag(d_t) W_hh of n steps applied without forming them
    (`gradtrace.core.factors`): P J = (P diag(d)) W_hh is one product with the shared W_hh,
    no (B, H, H) tensor per step. d is (n, B, H).

    Small steps (B H^2 up to `DENSE_WORK` entries) are the exception: there the per-step call
    that scales P costs about as much as the product (11 us against 5 us a step at H = 32,
    one thread), so a sweep of many rows forms the chunk's n Jacobians once, in one call, and
    each step is one batched product."""

    d: Tensor
    W_hh: Tensor

    @property
    def steps(self) -> int:
        return int(self.d.shape[0])

    def left(self, i: int, P: Tensor, out: Tensor | None = None) -> Tensor:
        H = self.W_hh.shape[0]
        if P.ndim == 3 and 2 * P.shape[1] >= H and self.d.shape[1] * H * H <= DENSE_WORK:
            return torch.bmm(P, self._dense[i], out=out)  # (B, R, H)
        return torch.matmul(P * self.d[i].unsqueeze(1), self.W_hh, out=out)  # (B, R, H)

    @cached_property
    def _dense(self) -> Tensor:
        return self.dense()

    def right(self, i: int, V: Tensor) -> Tensor:
        return self.d[i].unsqueeze(-1) * times_thin(self.W_hh, V)  # (B, H, K)

    def dense(self) -> Tensor:
        return self.d.unsqueeze(-1) * self.W_hh  # (n, B, H, H)

    def norm_bound(self) -> Tensor:
        """||diag(d) W_hh||_F >= ||J_t||_2, from d and the row norms of W_hh, (n, B)."""
        rows = self.W_hh.to(torch.float64).pow(2).sum(-1)  # (H,)
        return (self.d.to(torch.float64).pow(2) @ rows).sqrt()

    norm_label = "||J_t||_F"

    def window(self, start: int, stop: int) -> RNNFactors:
        return RNNFactors(self.d[start:stop], self.W_hh)

    @property
    def nbytes(self) -> int:
        return int(self.d.numel() * self.d.element_size())


def rnn_factors(w: RNNWeights, x: Tensor, h: Tensor, steps: int) -> RNNFactors:
    """The factors of `steps` steps from their rows x (steps B, I) and h (steps B, H)."""
    slope = get_activation(w.activation).derivative(rnn_preactivation(w, x, h))  # (n B, H)
    return RNNFactors(slope.reshape(steps, -1, w.hidden_size), w.W_hh)
