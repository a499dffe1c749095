"""`SequenceModel`: a recurrent core and a linear readout of its hidden state at every step.

    x (B, T, I) -> core -> h_1..h_T (B, T, H) -> readout -> y (B, T, O)

The core is an nn.RNN, nn.LSTM or nn.GRU (batch first, one layer: "fused") or a
`gradtrace.models.loops.LoopRNN`. Either way the model also exposes its recurrence one step at
a time, s_t = step(x_t, s_{t-1}) from s_0 = initial_state(B), with `output` turning the states
back into the forward's outputs, which is all `gradtrace.trace_step` needs:

    step, s0 = model.step, model.initial_state(B)
    flow = trace_step(step, x.transpose(0, 1), s0, loss_fn=lambda s: loss(model.output(s), y))

gives the same loss as loss(model(x), y) and so its ||dL/dh_k||. A fused model is also
traced by `gradtrace.trace(model, x, loss_fn=...)` and profiled through time by the monitor.
The state s is h (B, H), or the pair (h, c) for an LSTM.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from gradtrace.errors import check
from gradtrace.models.loops import LoopRNN


class SequenceModel(nn.Module):
    """A recurrent core, then one linear readout applied at every step: (B, T, I) -> (B, T, O).

    Args:
        name: The model's name in `gradtrace.models.MODELS`.
        core: A one-layer, batch-first nn.RNN / nn.LSTM / nn.GRU, or a `LoopRNN`.
        readout: nn.Linear(H, O).

    Attributes:
        name: As given.
        core: As given (the path "core" in `gradtrace.trace` results and monitor profiles).
        readout: As given.
    """

    def __init__(self, name: str, core: nn.Module, readout: nn.Linear) -> None:
        super().__init__()
        fused = isinstance(core, nn.RNNBase)
        check(
            (fused and core.batch_first and core.num_layers == 1 and not core.bidirectional)
            or isinstance(core, LoopRNN),
            "`core` must be a one-layer, unidirectional, batch-first nn.RNN, nn.LSTM or nn.GRU "
            f"or a LoopRNN, got {core!r}",
        )
        self.name = name
        self.core = core
        self.readout = readout

    @property
    def fused(self) -> bool:
        """Whether the core is an nn.RNN / nn.LSTM / nn.GRU (traced by `gradtrace.trace`,
        profiled by the monitor) rather than a loop (traced by `gradtrace.trace_step`)."""
        return isinstance(self.core, nn.RNNBase)

    @property
    def input_size(self) -> int:
        """I."""
        return int(self.core.input_size)  # type: ignore[arg-type]

    @property
    def hidden_size(self) -> int:
        """H."""
        return int(self.core.hidden_size)  # type: ignore[arg-type]

    def forward(self, x: Tensor) -> Tensor:
        """Outputs y (B, T, O) of inputs x (B, T, I), from the zero initial state."""
        check(
            isinstance(x, Tensor) and x.ndim == 3 and x.shape[-1] == self.input_size,
            f"`x` must have shape (B, T, I = {self.input_size}), got "
            f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}",
        )
        hidden = self.core(x)
        if isinstance(hidden, tuple):  # a fused module returns (outputs, final state)
            hidden = hidden[0]
        out: Tensor = self.readout(hidden)  # (B, T, O)
        return out

    def initial_state(self, batch: int) -> Any:
        """s_0 = 0: h (B, H), or (h, c) for an LSTM, on the model's device and dtype."""
        check(
            isinstance(batch, int) and not isinstance(batch, bool) and batch >= 1,
            f"`batch` must be a whole number of at least 1, got {batch!r}",
        )
        h = self.readout.weight.new_zeros(batch, self.hidden_size)  # (B, H)
        return (h, h.clone()) if isinstance(self.core, nn.LSTM) else h

    def step(self, x_t: Tensor, s: Any) -> Any:
        """One step of the recurrence, x_t (B, I) and s_{t-1} -> s_t, as the forward runs it
        (a fused core is called on one time step, with its own kernel)."""
        if isinstance(self.core, LoopRNN):
            return self.core.step(x_t, s)
        x1 = x_t.unsqueeze(1)  # (B, 1, I): the core is batch first
        if isinstance(self.core, nn.LSTM):
            h, c = s
            _, (h1, c1) = self.core(x1, (h.unsqueeze(0), c.unsqueeze(0)))  # (1, B, H) each
            return h1[0], c1[0]
        _, h1 = self.core(x1, s.unsqueeze(0))  # (1, B, H)
        return h1[0]

    def output(self, states: Any) -> Tensor:
        """The outputs y (B, T, O) of the states s_1..s_T stacked time first, (T, B, H) or a
        pair of them for an LSTM, as `gradtrace.trace_step` hands them to its loss."""
        h = states[0] if isinstance(states, tuple | list) else states  # (T, B, H)
        out: Tensor = self.readout(h).transpose(0, 1)  # (B, T, O)
        return out

    def extra_repr(self) -> str:
        return f"name={self.name!r}"
