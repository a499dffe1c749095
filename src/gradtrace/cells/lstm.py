"""The LSTM step beside its analytic step Jacobian, in PyTorch's gate order (i, f, g, o).

Recurrence (sigma the logistic sigmoid, * elementwise), with the gate pre-activations
z_t = W_ih x_t + W_hh h_{t-1} + b split into four blocks of H rows:

    i_t = sigma(z_i),  f_t = sigma(z_f),  g_t = tanh(z_g),  o_t = sigma(z_o)
    c_t = f_t * c_{t-1} + i_t * g_t
    m_t = o_t * tanh(c_t)
    h_t = m_t,  or  h_t = W_proj m_t  with a projection (PyTorch's proj_size = P)

The state is one flat vector s = cat(h, c) of size S = P + H (P = H without projection), and
the step Jacobian ds_t/ds_{t-1} has the block layout

    [[dh_t/dh_{t-1}, dh_t/dc_{t-1}],     (P, P)  (P, H)
     [dc_t/dh_{t-1}, dc_t/dc_{t-1}]]     (H, P)  (H, H)

The partial dc_t/dc_{t-1} at fixed h_{t-1} is diag(f_t), the "constant error carousel" that
carries gradients across long spans (Long Short-Term Memory, Hochreiter and Schmidhuber 1997;
the forget gate: Learning to Forget, Gers, Schmidhuber and Cummins 2000). Shapes: B batch,
I input, H hidden (cell), P projection, S = P + H.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from gradtrace.cells._checks import check_step_inputs, check_tensor, check_weights, moved
from gradtrace.core.products import times_thin
from gradtrace.errors import check


@dataclass(frozen=True, eq=False)
class LSTMWeights:
    """Weights of an LSTM layer, optionally with a projection; checked on construction.

    Attributes:
        W_ih: Input weights of the gates (i, f, g, o) stacked, shape (4H, I).
        W_hh: Recurrent weights of the gates stacked, shape (4H, P).
        b: Gate bias, shape (4H,) (PyTorch's bias_ih + bias_hh).
        W_proj: Projection h_t = W_proj m_t, shape (P, H), or None for no projection (P = H).

    Raises:
        GradtraceError: if a shape disagrees, a weight is not finite, or the dtypes or devices
            differ.
    """

    W_ih: Tensor
    W_hh: Tensor
    b: Tensor
    W_proj: Tensor | None = None

    def __post_init__(self) -> None:
        W_ih = check_tensor("W_ih", self.W_ih, 2)
        rows = W_ih.shape[0]
        check(
            rows > 0 and rows % 4 == 0,
            f"`W_ih` must have 4H rows, one block per gate (i, f, g, o), "
            f"got shape {tuple(W_ih.shape)}",
        )
        H = P = rows // 4
        if self.W_proj is not None:
            W_proj = check_tensor("W_proj", self.W_proj, 2)
            check(
                W_proj.shape[1] == H,
                f"`W_proj` must have shape (P, H = {H}) to match `W_ih`, "
                f"got shape {tuple(W_proj.shape)}",
            )
            P = W_proj.shape[0]
        W_hh = check_tensor("W_hh", self.W_hh, 2)
        check(
            W_hh.shape == (4 * H, P),
            f"`W_hh` must have shape (4H, P) = ({4 * H}, {P}) to match `W_ih` and `W_proj`, "
            f"got shape {tuple(W_hh.shape)}",
        )
        b = check_tensor("b", self.b, 1)
        check(
            b.shape == (4 * H,),
            f"`b` must have shape (4H,) = ({4 * H},) to match `W_ih`, got {tuple(b.shape)}",
        )
        check_weights({"W_ih": W_ih, "W_hh": W_hh, "b": b, "W_proj": self.W_proj})

    @property
    def hidden_size(self) -> int:
        """H, the number of cell units."""
        return self.W_ih.shape[0] // 4

    @property
    def input_size(self) -> int:
        """I, the number of input features."""
        return self.W_ih.shape[1]

    @property
    def proj_size(self) -> int:
        """P, the size of h: the projection's rows, or H without projection."""
        return self.hidden_size if self.W_proj is None else self.W_proj.shape[0]

    @property
    def state_size(self) -> int:
        """S = P + H, the size of the flat state cat(h, c)."""
        return self.proj_size + self.hidden_size

    def recurrent_blocks(self) -> dict[str, Tensor]:
        """Each gate's square recurrent map (H, H) by name, for the theory numbers.

        Without a projection these are the blocks W_hi, W_hf, W_hg, W_ho (H, H). With one,
        h = W_proj m, and the gates see W_h{gate} W_proj m_{t-1}: the square (H, H) map of each
        gate is that product, named "W_h{gate} W_proj".
        """
        H = self.hidden_size
        blocks = {f"W_h{g}": self.W_hh[i * H : (i + 1) * H] for i, g in enumerate("ifgo")}
        if self.W_proj is None:
            return blocks
        return {f"{name} W_proj": W @ self.W_proj for name, W in blocks.items()}  # (H, H) each

    def to(
        self, dtype: torch.dtype | None = None, device: torch.device | str | None = None
    ) -> LSTMWeights:
        """Return a copy with every tensor moved to `dtype` and `device`."""
        return moved(self, dtype, device)


def split_state(w: LSTMWeights, s: Tensor) -> tuple[Tensor, Tensor]:
    """Split a flat state s = cat(h, c) of shape (..., P + H) into h (..., P) and c (..., H).

    Raises:
        GradtraceError: if the last dimension of `s` is not P + H.
    """
    P = w.proj_size
    check(
        s.ndim >= 1 and s.shape[-1] == w.state_size,
        f"`s` must have last dimension P + H = {w.state_size}, got shape {tuple(s.shape)}",
    )
    return s[..., :P], s[..., P:]


class _Forward(NamedTuple):
    """The quantities of one step that both the step and its Jacobian need, each (B, H)."""

    i: Tensor
    f: Tensor
    g: Tensor
    o: Tensor
    c_prev: Tensor
    c: Tensor


def _forward(w: LSTMWeights, x: Tensor, s: Tensor) -> _Forward:
    check_step_inputs(
        x, s, state_name="s", input_size=w.input_size, state_size=w.state_size, like=w.W_ih
    )
    return _gates(w, lstm_drive(w, x), s)


def lstm_drive(w: LSTMWeights, x: Tensor) -> Tensor:
    """The input's part of the gates' pre-activations, W_ih x_t + b, for any number of rows
    x (N, I): a replay computes it for all T steps in one product (unchecked)."""
    return torch.addmm(w.b, x, w.W_ih.T)  # (N, 4H)


def _gates(w: LSTMWeights, u: Tensor, s: Tensor) -> _Forward:
    h_prev, c_prev = split_state(w, s)  # (B, P), (B, H)
    z = torch.addmm(u, h_prev, w.W_hh.T)  # (B, 4H)
    z_i, z_f, z_g, z_o = z.chunk(4, dim=-1)  # 4 x (B, H)
    i, f, g, o = torch.sigmoid(z_i), torch.sigmoid(z_f), torch.tanh(z_g), torch.sigmoid(z_o)
    return _Forward(i, f, g, o, c_prev, f * c_prev + i * g)


def lstm_step(w: LSTMWeights, x: Tensor, s: Tensor) -> Tensor:
    """One LSTM step s_t = cat(h_t, c_t) from s_{t-1} = cat(h_{t-1}, c_{t-1}).

    Args:
        w: The LSTM's weights.
        x: Input x_t, shape (B, I).
        s: Previous state cat(h_{t-1}, c_{t-1}), shape (B, P + H).

    Returns:
        s_t, shape (B, P + H).

    Raises:
        GradtraceError: if `x` or `s` has the wrong shape, dtype or device.
    """
    return _state(w, _forward(w, x, s))


def lstm_advance(w: LSTMWeights, u: Tensor, s: Tensor) -> Tensor:
    """One step from its input drive u = `lstm_drive(w, x_t)` (B, 4H), unchecked."""
    return _state(w, _gates(w, u, s))


def _state(w: LSTMWeights, fw: _Forward) -> Tensor:
    m = fw.o * torch.tanh(fw.c)  # (B, H)
    h = m if w.W_proj is None else m @ w.W_proj.T  # (B, P)
    return torch.cat([h, fw.c], dim=-1)  # (B, P + H)


class LSTMBlocks(NamedTuple):
    """The parts of one step Jacobian ds_t/ds_{t-1} of an LSTM, for B rows at once.

    J = [[hh, hc], [ch, diag(f)]] with hc = diag(e) without a projection and W_proj diag(e)
    with one. The h block is kept factored, hh = diag(a) W_o + diag(b) ch (times W_proj
    with a projection), where W_o is the output gate's recurrent weight (H, P) shared by
    every step: the cell path ch (B, H, P) is the only per-step matrix; a, b, e, f are (B, H).
    """

    ch: Tensor
    a: Tensor
    b: Tensor
    e: Tensor
    f: Tensor


def lstm_blocks(w: LSTMWeights, x: Tensor, s: Tensor) -> LSTMBlocks:
    """The blocks of the step Jacobian at (x_t, s_{t-1}); shapes as in `lstm_jacobian`.

    Raises:
        GradtraceError: if `x` or `s` has the wrong shape, dtype or device.
    """
    fw = _forward(w, x, s)
    H, P = w.hidden_size, w.proj_size
    W_gates = w.W_hh.reshape(4, H, P)  # (4, H, P): rows of i, f, g, o
    # dc_t/dh_{t-1} through the gates i, f, g (the output gate does not reach c_t).
    dc_dh = (fw.g * fw.i * (1 - fw.i)).unsqueeze(-1) * W_gates[0]  # (B, H, P)
    dc_dh.addcmul_((fw.c_prev * fw.f * (1 - fw.f)).unsqueeze(-1), W_gates[1])
    dc_dh.addcmul_((fw.i * (1 - fw.g**2)).unsqueeze(-1), W_gates[2])
    tanh_c = torch.tanh(fw.c)  # (B, H)
    dm_dc = fw.o * (1 - tanh_c**2)  # (B, H): dm_t/dc_t is diagonal
    dm_dz_o = tanh_c * fw.o * (1 - fw.o)  # (B, H)
    # dm_t/dh_{t-1} = diag(dm_dz_o) W_o + diag(dm_dc) dc_dh, kept as its two diagonals
    return LSTMBlocks(dc_dh, dm_dz_o, dm_dc, dm_dc * fw.f, fw.f)


def _h_block(blocks: LSTMBlocks, W_o: Tensor, W_proj: Tensor | None) -> Tensor:
    """dh_t/dh_{t-1} (..., P, P) from its factors."""
    dm_dh = blocks.a.unsqueeze(-1) * W_o + blocks.b.unsqueeze(-1) * blocks.ch  # (..., H, P)
    return dm_dh if W_proj is None else W_proj @ dm_dh


def _assemble(blocks: LSTMBlocks, W_o: Tensor, W_proj: Tensor | None) -> Tensor:
    """The dense Jacobian (..., P + H, P + H) from its blocks."""
    # dh_t/dc_{t-1}: diag(e) (H, H), or W_proj diag(e) (P, H) with a projection.
    dh_dc = torch.diag_embed(blocks.e) if W_proj is None else W_proj * blocks.e.unsqueeze(-2)
    top = torch.cat([_h_block(blocks, W_o, W_proj), dh_dc], dim=-1)  # (..., P, P + H)
    bottom = torch.cat([blocks.ch, torch.diag_embed(blocks.f)], dim=-1)  # (..., H, P + H)
    return torch.cat([top, bottom], dim=-2)


def _output_weight(w: LSTMWeights) -> Tensor:
    """W_o, the output gate's rows of W_hh, (H, P)."""
    return w.W_hh[3 * w.hidden_size :]


def lstm_jacobian(w: LSTMWeights, x: Tensor, s: Tensor) -> Tensor:
    """The full step Jacobian ds_t/ds_{t-1}, evaluated at (x_t, s_{t-1}).

    Args:
        w: The LSTM's weights.
        x: Input x_t, shape (B, I).
        s: Previous state cat(h_{t-1}, c_{t-1}), shape (B, P + H).

    Returns:
        The Jacobian with blocks [[dh/dh, dh/dc], [dc/dh, dc/dc]], shape (B, P + H, P + H);
        exact up to the dtype's rounding.

    Raises:
        GradtraceError: if `x` or `s` has the wrong shape, dtype or device.
    """
    return _assemble(lstm_blocks(w, x, s), _output_weight(w), w.W_proj)


@dataclass(frozen=True, eq=False)
class LSTMFactors:
    """The step Jacobians of n steps applied from their blocks (`gradtrace.core.factors`):
    P J costs one (R, H) x (H, P) product per sequence, one product with the shared W_o for
    all sequences at once, and elementwise work, instead of one (R, S) x (S, S) product; no
    (B, S, S) tensor is formed, and of the (B, P, P) blocks only the cell path's. Blocks are
    (n, B, ...)."""

    blocks: LSTMBlocks
    W_o: Tensor
    W_proj: Tensor | None

    @property
    def steps(self) -> int:
        return int(self.blocks.f.shape[0])

    def left(self, i: int, P: Tensor, out: Tensor | None = None) -> Tensor:
        ch, a, b, e, f = (block[i] for block in self.blocks)
        p = ch.shape[-1]
        Ph, Pc = P[..., :p], P[..., p:]  # (B, R, P), (B, R, H)
        Q = Ph if self.W_proj is None else Ph @ self.W_proj  # (B, R, H): P's view of dh/dm
        out = torch.empty_like(P) if out is None else out
        # P_h hh + P_c ch = (Q diag(a)) W_o + (Q diag(b) + P_c) ch, written in place
        torch.matmul(Q * a.unsqueeze(1), self.W_o, out=out[..., :p])
        out[..., :p].baddbmm_(torch.addcmul(Pc, Q, b.unsqueeze(1)), ch)
        torch.addcmul(Pc * f.unsqueeze(1), Q, e.unsqueeze(1), out=out[..., p:])
        return out

    def right(self, i: int, V: Tensor) -> Tensor:
        ch, a, b, e, f = (block[i] for block in self.blocks)
        p = ch.shape[-1]
        Vh, Vc = V[:, :p], V[:, p:]  # (B, P, K), (B, H, K)
        chV = times_thin(ch, Vh)  # (B, H, K)
        dm = a.unsqueeze(-1) * times_thin(self.W_o, Vh) + b.unsqueeze(-1) * chV
        dm = dm + e.unsqueeze(-1) * Vc
        top = dm if self.W_proj is None else times_thin(self.W_proj, dm)
        return torch.cat([top, chV + f.unsqueeze(-1) * Vc], dim=1)

    def dense(self) -> Tensor:
        return _assemble(self.blocks, self.W_o, self.W_proj)

    def norm_bound(self) -> Tensor:
        """||J_t||_F >= ||J_t||_2 from the blocks, (n, B).

        Row h of the h block is a_h w_h + b_h c_h (w_h, c_h rows of W_o and ch), so its
        squared norm is a_h^2 |w_h|^2 + 2 a_h b_h <w_h, c_h> + b_h^2 |c_h|^2: two passes over
        ch for the whole Jacobian. With a projection the h block is formed a step at a time.
        """
        blocks = self.blocks

        def sq(t: Tensor, dims: tuple[int, ...]) -> Tensor:  # accumulated in float64
            return torch.linalg.vector_norm(t, dim=dims, dtype=torch.float64).pow(2)

        # row sums in the blocks' dtype, only the (n, B, H) results in float64: a float64 copy
        # of ch would cost more than the sums
        rows_ch = torch.linalg.vector_norm(blocks.ch, dim=-1).to(torch.float64).pow(2)
        if self.W_proj is None:
            a, b = blocks.a.to(torch.float64), blocks.b.to(torch.float64)
            w = sq(self.W_o, (-1,))  # (H,)
            cross = torch.linalg.vecdot(blocks.ch, self.W_o).to(torch.float64)  # <w_h, c_h>
            hh = (a.pow(2) * w + 2 * a * b * cross + b.pow(2) * rows_ch).clamp_min(0).sum(-1)
        else:
            steps = [LSTMBlocks(*(x[i] for x in blocks)) for i in range(self.steps)]
            hh = torch.stack([sq(_h_block(one, self.W_o, self.W_proj), (-2, -1)) for one in steps])
        squares = hh + rows_ch.sum(-1) + sq(blocks.f, (-1,))
        if self.W_proj is None:
            squares = squares + sq(blocks.e, (-1,))
        else:  # ||W_proj diag(e)||_F^2 = sum_j e_j^2 ||column j of W_proj||^2
            e64 = blocks.e.to(torch.float64)
            squares = squares + e64.pow(2) @ self.W_proj.to(torch.float64).pow(2).sum(0)
        return squares.sqrt()

    norm_label = "||J_t||_F"

    def window(self, start: int, stop: int) -> LSTMFactors:
        blocks = LSTMBlocks(*(x[start:stop] for x in self.blocks))
        return LSTMFactors(blocks, self.W_o, self.W_proj)

    @property
    def nbytes(self) -> int:
        return sum(int(x.numel() * x.element_size()) for x in self.blocks)


def lstm_factors(w: LSTMWeights, x: Tensor, s: Tensor, steps: int) -> LSTMFactors:
    """The factors of `steps` steps from their rows x (steps B, I) and s (steps B, S)."""
    blocks = lstm_blocks(w, x, s)
    n, B = steps, x.shape[0] // steps
    shaped = LSTMBlocks(*(b.reshape(n, B, *b.shape[1:]) for b in blocks))
    return LSTMFactors(shaped, _output_weight(w), w.W_proj)


def lstm_forget_gate(w: LSTMWeights, x: Tensor, s: Tensor) -> Tensor:
    """f_t, the diagonal of the cell path dc_t/dc_{t-1} = diag(f_t) at fixed h_{t-1}.

    That partial is the "constant error carousel": with f_t = 1 a gradient passes the cell
    state unchanged.

    Args:
        w: The LSTM's weights.
        x: Input x_t, shape (B, I).
        s: Previous state cat(h_{t-1}, c_{t-1}), shape (B, P + H).

    Returns:
        f_t, shape (B, H).

    Raises:
        GradtraceError: if `x` or `s` has the wrong shape, dtype or device.
    """
    return _forward(w, x, s).f  # (B, H)
