"""What tracing a real model gives: one `GradientFlow` per module, layer and direction, and the
input-sensitivity profile of any sequence model."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from gradtrace.errors import GradtraceError
from gradtrace.records.base import Record
from gradtrace.records.flow import GradientFlow


@dataclass(frozen=True, eq=False, repr=False)
class TraceResult(Record):
    """Everything `gradtrace.trace` measured.

    Attributes:
        layers: One `GradientFlow` per recurrent module, layer and direction, by module in
            the model's order (`named_modules`), then in PyTorch's order l D + d; for a
            PackedSequence of different lengths, one per length too, longest first
            (`GradientFlow.sequences`).
        metric: The metric of every c(k).
        input_shape: The shape of the model's first tensor argument.
        loss: The loss, when one was given.
        mode: "train" or "eval": the mode the model ran in, and so the recurrence traced (in
            train mode with dropout between the layers of a module).
        dropout_seed: The seed of the dropout masks, when any were drawn: the model's own
            dropout layers' (torch's global generator set to it) and gradtrace's between the
            layers of a module (a generator set to it + 1).
    """

    KIND = "trace"

    layers: tuple[GradientFlow, ...]
    metric: str
    input_shape: tuple[int, ...]
    loss: float | None = None
    mode: str = "eval"
    dropout_seed: int | None = None

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.input_shape))
        rows = "".join(f"\n  {layer!r}," for layer in self.layers)
        return f"TraceResult(inputs {shape}, {self.metric}:{rows}\n)"

    def find(
        self,
        layer: int = 0,
        direction: str = "forward",
        module: str | None = None,
        sequence: int | None = None,
    ) -> GradientFlow:
        """The record of one layer and direction (of `module`, by path, when several were
        traced; for a PackedSequence of different lengths, the one that holds batch row
        `sequence`, or the longest sequences' without it).

        Raises:
            GradtraceError: if no record matches.
        """
        for rec in self.layers:
            if (rec.layer, rec.direction) != (layer, direction) or module not in (None, rec.module):
                continue
            if sequence is None or rec.sequences is None or sequence in rec.sequences:
                return rec
        have = ", ".join(rec.label for rec in self.layers)
        raise GradtraceError(
            f"no traced layer matches layer={layer}, direction={direction!r}, module={module!r}"
            + ("" if sequence is None else f", sequence={sequence}")
            + f"; traced: {have}"
        )


@dataclass(frozen=True, eq=False, repr=False)
class SensitivityProfile(Record):
    """How much the output (or the loss) at the end depends on the input at each step.

    Attributes:
        log10_norm: log10 metric(dy_T/dx_k) or log10 ||dL/dx_k||_2 for k = 1..T, shape (B, T)
            (column k-1 is step k, in the input's time order).
        quantity: "dy_T/dx_k" or "dL/dx_k".
        metric: The matrix metric for dy_T/dx_k; "l2" for the loss's gradient vectors.
    """

    KIND = "sensitivity"

    log10_norm: Tensor
    quantity: str
    metric: str

    def __repr__(self) -> str:
        B, T = self.log10_norm.shape
        return f"SensitivityProfile({self.quantity}, {self.metric}, B={B}, T={T})"

    @property
    def steps(self) -> int:
        """T."""
        return int(self.log10_norm.shape[-1])
