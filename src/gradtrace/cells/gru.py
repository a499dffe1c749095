"""The GRU step beside its analytic step Jacobian, in PyTorch's gate order (r, z, n).

Recurrence (sigma the logistic sigmoid, * elementwise), with the input part
u_t = W_ih x_t + b_ih and the recurrent part v_t = W_hh h_{t-1} + b_hh split into three blocks
of H rows each (r, z, n):

    r_t = sigma(u_r + v_r)
    z_t = sigma(u_z + v_z)
    n_t = tanh(u_n + r_t * v_n)
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}

The biases stay separate because b_hn sits inside r_t * (...). The step Jacobian is

    J_t = diag(z_t) + diag((h_{t-1} - n_t) * z_t (1 - z_t)) W_hz
          + diag((1 - z_t) (1 - n_t^2)) [diag(r_t) W_hn + diag(v_n * r_t (1 - r_t)) W_hr]

(Learning Phrase Representations using RNN Encoder-Decoder, Cho et al. 2014). The diag(z_t)
term is the gated shortcut that lets gradients pass when z_t is near 1. The state is h, so S = H.
Shapes: B batch, I input, H hidden.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gradtrace.cells._checks import check_step_inputs, check_tensor, check_weights, moved
from gradtrace.errors import check


@dataclass(frozen=True, eq=False)
class GRUWeights:
    """Weights of a GRU, PyTorch's layout; checked on construction.

    Attributes:
        W_ih: Input weights of the gates (r, z, n) stacked, shape (3H, I).
        W_hh: Recurrent weights of the gates stacked, shape (3H, H).
        b_ih: Input bias, shape (3H,).
        b_hh: Recurrent bias, shape (3H,).

    Raises:
        GradtraceError: if a shape disagrees, a weight is not finite, or the dtypes or devices
            differ.
    """

    W_ih: Tensor
    W_hh: Tensor
    b_ih: Tensor
    b_hh: Tensor

    def __post_init__(self) -> None:
        W_hh = check_tensor("W_hh", self.W_hh, 2)
        check(
            W_hh.shape[0] == 3 * W_hh.shape[1],
            f"`W_hh` must have shape (3H, H), one block per gate (r, z, n), "
            f"got shape {tuple(W_hh.shape)}",
        )
        rows = W_hh.shape[0]
        W_ih = check_tensor("W_ih", self.W_ih, 2)
        check(
            W_ih.shape[0] == rows,
            f"`W_ih` must have 3H = {rows} rows to match `W_hh`, got shape {tuple(W_ih.shape)}",
        )
        for name in ("b_ih", "b_hh"):
            b = check_tensor(name, getattr(self, name), 1)
            check(
                b.shape == (rows,),
                f"`{name}` must have shape (3H,) = ({rows},) to match `W_hh`, got {tuple(b.shape)}",
            )
        check_weights({"W_hh": W_hh, "W_ih": W_ih, "b_ih": self.b_ih, "b_hh": self.b_hh})

    @property
    def hidden_size(self) -> int:
        """H, the number of hidden units."""
        return self.W_hh.shape[1]

    @property
    def input_size(self) -> int:
        """I, the number of input features."""
        return self.W_ih.shape[1]

    @property
    def proj_size(self) -> int:
        """P, the size of h: H (only an LSTM can project h to another size)."""
        return self.hidden_size

    @property
    def state_size(self) -> int:
        """S = H: the state is the hidden vector."""
        return self.hidden_size

    def recurrent_blocks(self) -> dict[str, Tensor]:
        """Each gate's square recurrent block (H, H) by name: W_hr, W_hz, W_hn."""
        H = self.hidden_size
        return {f"W_h{g}": self.W_hh[i * H : (i + 1) * H] for i, g in enumerate("rzn")}

    def to(
        self, dtype: torch.dtype | None = None, device: torch.device | str | None = None
    ) -> GRUWeights:
        """Return a copy with every tensor moved to `dtype` and `device`."""
        return moved(self, dtype, device)


def _gates(w: GRUWeights, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Return r_t, z_t, n_t and v_n = W_hn h_{t-1} + b_hn, each (B, H)."""
    check_step_inputs(
        x, h, state_name="h", input_size=w.input_size, state_size=w.hidden_size, like=w.W_hh
    )
    return _gates_from(w, gru_drive(w, x), h)


def gru_drive(w: GRUWeights, x: Tensor) -> Tensor:
    """The input's part of the gates, W_ih x_t + b_ih, for any number of rows x (N, I): a
    replay computes it for all T steps in one product (unchecked)."""
    return torch.addmm(w.b_ih, x, w.W_ih.T)  # (N, 3H)


def gru_advance(w: GRUWeights, u: Tensor, h: Tensor) -> Tensor:
    """One step from its input drive u = `gru_drive(w, x_t)` (B, 3H), unchecked."""
    _, z, n, _ = _gates_from(w, u, h)
    return (1 - z) * n + z * h


def _gates_from(w: GRUWeights, u: Tensor, h: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    u_r, u_z, u_n = u.chunk(3, dim=-1)  # 3 x (B, H)
    v_r, v_z, v_n = torch.addmm(w.b_hh, h, w.W_hh.T).chunk(3, dim=-1)  # 3 x (B, H)
    r, z = torch.sigmoid(u_r + v_r), torch.sigmoid(u_z + v_z)
    return r, z, torch.tanh(u_n + r * v_n), v_n


def gru_step(w: GRUWeights, x: Tensor, h: Tensor) -> Tensor:
    """One GRU step h_t = (1 - z_t) * n_t + z_t * h_{t-1}.

    Args:
        w: The GRU's weights.
        x: Input x_t, shape (B, I).
        h: Previous hidden state h_{t-1}, shape (B, H).

    Returns:
        h_t, shape (B, H).

    Raises:
        GradtraceError: if `x` or `h` has the wrong shape, dtype or device.
    """
    check_step_inputs(
        x, h, state_name="h", input_size=w.input_size, state_size=w.hidden_size, like=w.W_hh
    )
    return gru_advance(w, gru_drive(w, x), h)


def gru_jacobian(w: GRUWeights, x: Tensor, h: Tensor) -> Tensor:
    """The step Jacobian J_t = dh_t/dh_{t-1} (formula in the module docstring) at (x_t, h_{t-1}).

    Args:
        w: The GRU's weights.
        x: Input x_t, shape (B, I).
        h: Previous hidden state h_{t-1}, shape (B, H).

    Returns:
        J_t for each batch element, shape (B, H, H); exact up to the dtype's rounding.

    Raises:
        GradtraceError: if `x` or `h` has the wrong shape, dtype or device.
    """
    r, z, n, v_n = _gates(w, x, h)
    H = w.hidden_size
    through_n = (1 - z) * (1 - n**2)  # (B, H): dh_t/d(pre-activation of n_t)
    # dh_t/dv for the gate blocks r, z, n; J_t = sum_k diag(coef_k) W_hk + diag(z_t).
    coef = torch.stack(
        [through_n * v_n * r * (1 - r), (h - n) * z * (1 - z), through_n * r], dim=1
    )  # (B, 3, H)
    W_gates = w.W_hh.reshape(3, H, H)  # (3, H, H): rows of r, z, n
    J = torch.einsum("bkh,khj->bhj", coef, W_gates)  # (B, H, H)
    return J + torch.diag_embed(z)  # (B, H, H)
