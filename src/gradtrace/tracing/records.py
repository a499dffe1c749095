"""Plain records of a trace, and their lossless JSON form.

`to_dict` gives a dict that `json.dumps(..., allow_nan=False)` accepts and `from_dict` turns back
into an equal record, with floats and tensors written by `gradtrace.tracing.codec` (an exactly
zero product has log10 c(k) = -inf, written "-Infinity").

Time in a record runs in the direction's own order: for a reverse direction, k = 0 is its
initial state and step t reads x_{T-t+1} (see `gradtrace.tracing.modules`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from torch import Tensor

from gradtrace.core.lyapunov import LyapunovSpectrum
from gradtrace.core.theory import MatrixSpectrum
from gradtrace.errors import GradtraceError, check
from gradtrace.tracing.codec import (
    decode_float,
    decode_number,
    decode_tensor,
    encode_float,
    encode_tensor,
)

FORMAT = "gradtrace.trace/1"


def _required_tensor(d: Any) -> Tensor:
    t = decode_tensor(d)
    if t is None:
        raise GradtraceError("a tensor in the record must not be null, got null")
    return t


def _require(data: Any, keys: tuple[str, ...], what: str) -> None:
    check(isinstance(data, dict), f"`data` of a {what} must be a dict, got {type(data).__name__}")
    missing = [k for k in keys if k not in data]
    check(not missing, f"`data` of a {what} is missing the keys {missing}")


@dataclass(frozen=True, eq=False)  # eq=False: comparing tensor fields with == is ambiguous
class LayerTrace:
    """Gradient flow through time in one layer and direction of a recurrent module.

    Attributes:
        module: The module's dotted path in the model ("" for the model itself).
        kind: "rnn", "lstm", "gru", or "step" for a user's step function.
        layer: The layer index.
        direction: "forward" or "reverse".
        calls: How many times the forward called the module (the first call is traced).
        activation: phi of a vanilla RNN ("tanh" or "relu"); None for gated cells.
        hidden_size: H.
        proj_size: P, the size of h (P = H without a projection).
        state_size: S (H, or P + H for an LSTM's (h, c)).
        metric: How c(k) measures a matrix: "spectral", "frobenius" or "maxabs".
        log10_norm: log10 c(k) = log10 metric(dh_T/dh_k) for k = 0..T-1, shape (B, T); for an
            LSTM the (h, h) block of d(h_T, c_T)/d(h_k, c_k).
        cell_path_log10: LSTM only: log10 metric of the cell-state path prod_t diag(f_t), (B, T).
        loss_grad_log10: log10 ||dL/dh_k||_2 for k = 0..T through every path of the model,
            shape (B, T + 1); None without a loss.
        bound_log10: log10 of the theory's bound on c(k), shape (T,).
        bound: Which bound: "(gamma*sigma_max)^(T-k)" for a vanilla RNN, else the product of
            step norms, exact or an upper bound (`gradtrace.core.theory.norm_product_bound_label`).
        gamma: sup |phi'| for a vanilla RNN, else None.
        sigma_max: Largest singular value over the recurrent blocks (NaN if none is square).
        spectral_radius: Largest spectral radius over the recurrent blocks (NaN likewise).
        blocks: sigma_max and spectral radius of each square recurrent block, by name.
        rate_per_step: Measured slope of log10 c(k) in decades per step (batch mean curve).
        verdict: "vanishing", "exploding" or "neutral".
        horizon: Memory horizon in steps.
        lyapunov_max: Top Lyapunov exponent along the trajectory, nats per step (batch mean).
        note: One paragraph that puts theory and measurement together.
        lyapunov: The top-K Lyapunov spectrum per sequence when asked for: exponents (B, K),
            local log factors (T, B, K).
        output_error: Largest |re-executed output - module's own output|.
    """

    module: str
    kind: str
    layer: int
    direction: str
    calls: int
    activation: str | None
    hidden_size: int
    proj_size: int
    state_size: int
    metric: str
    log10_norm: Tensor
    cell_path_log10: Tensor | None
    loss_grad_log10: Tensor | None
    bound_log10: Tensor
    bound: str
    gamma: float | None
    sigma_max: float
    spectral_radius: float
    blocks: dict[str, MatrixSpectrum]
    rate_per_step: float
    verdict: str
    horizon: int
    lyapunov_max: float
    note: str
    lyapunov: LyapunovSpectrum | None
    output_error: float

    @property
    def steps(self) -> int:
        """T."""
        return int(self.log10_norm.shape[-1])

    @property
    def batch(self) -> int:
        """B."""
        return int(self.log10_norm.shape[0])

    @property
    def label(self) -> str:
        """A short name such as "encoder.lstm layer 1 reverse"."""
        return f"{self.module or self.kind} layer {self.layer} {self.direction}"

    def __repr__(self) -> str:  # one line in a notebook, not pages of tensors
        return (
            f"LayerTrace({self.label}: {self.verdict}, {self.rate_per_step:+.3g} decades/step, "
            f"horizon {self.horizon} of {self.steps}, B={self.batch})"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (see the module docstring)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Tensor) or f.name in _LAYER_TENSORS:
                out[f.name] = encode_tensor(value)
            elif isinstance(value, float) or f.name in _LAYER_FLOATS:
                out[f.name] = encode_float(value)
            elif f.name == "blocks":
                out[f.name] = {
                    name: [encode_float(b.sigma_max), encode_float(b.spectral_radius)]
                    for name, b in value.items()
                }
            elif f.name == "lyapunov" and value is not None:
                out[f.name] = {
                    "exponents": encode_tensor(value.exponents),
                    "local_log_factors": encode_tensor(value.local_log_factors),
                }
            else:
                out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerTrace:
        """The inverse of `to_dict`.

        Raises:
            GradtraceError: if `data` lacks a field.
        """
        names = tuple(f.name for f in fields(cls))
        _require(data, names, "layer record")
        kwargs: dict[str, Any] = {}
        for name in names:
            value = data[name]
            if name in _LAYER_TENSORS:
                kwargs[name] = decode_tensor(value)
            elif name in _LAYER_FLOATS:
                kwargs[name] = decode_float(value)
            elif name == "blocks":
                kwargs[name] = {
                    k: MatrixSpectrum(decode_number(s), decode_number(r))
                    for k, (s, r) in value.items()
                }
            elif name == "lyapunov" and value is not None:
                exponents, factors = (
                    _required_tensor(value[key]) for key in ("exponents", "local_log_factors")
                )
                kwargs[name] = LyapunovSpectrum(exponents, factors)
            else:
                kwargs[name] = value
        return cls(**kwargs)


_LAYER_TENSORS = ("log10_norm", "cell_path_log10", "loss_grad_log10", "bound_log10")
_LAYER_FLOATS = (
    "gamma",
    "sigma_max",
    "spectral_radius",
    "rate_per_step",
    "lyapunov_max",
    "output_error",
)


@dataclass(frozen=True, eq=False)
class TraceResult:
    """Everything `gradtrace.trace` measured: one `LayerTrace` per module, layer and direction.

    Attributes:
        layers: By module in the model's order (`named_modules`), then in PyTorch's order
            l D + d of layers and directions.
        metric: The metric of every c(k).
        input_shape: The shape of the model's input.
        loss: The loss, when one was given.
    """

    layers: tuple[LayerTrace, ...]
    metric: str
    input_shape: tuple[int, ...]
    loss: float | None = None

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.input_shape))
        rows = "".join(f"\n  {layer!r}," for layer in self.layers)
        return f"TraceResult(inputs {shape}, {self.metric}:{rows}\n)"

    def find(
        self, layer: int = 0, direction: str = "forward", module: str | None = None
    ) -> LayerTrace:
        """The record of one layer and direction (of `module`, by path, when several were traced).

        Raises:
            GradtraceError: if no record matches.
        """
        for rec in self.layers:
            if (rec.layer, rec.direction) == (layer, direction) and module in (None, rec.module):
                return rec
        have = ", ".join(rec.label for rec in self.layers)
        raise GradtraceError(
            f"no traced layer matches layer={layer}, direction={direction!r}, module={module!r}; "
            f"traced: {have}"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (see the module docstring)."""
        return {
            "format": FORMAT,
            "metric": self.metric,
            "input_shape": list(self.input_shape),
            "loss": encode_float(self.loss),
            "layers": [rec.to_dict() for rec in self.layers],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TraceResult:
        """The inverse of `to_dict`.

        Raises:
            GradtraceError: if `data` is not a trace record of this format.
        """
        _require(data, ("format", "metric", "input_shape", "loss", "layers"), "trace record")
        check(
            data["format"] == FORMAT,
            f"`data` must be a {FORMAT} record, got format {data['format']!r}",
        )
        return cls(
            layers=tuple(LayerTrace.from_dict(d) for d in data["layers"]),
            metric=data["metric"],
            input_shape=tuple(data["input_shape"]),
            loss=decode_float(data["loss"]),
        )


@dataclass(frozen=True, eq=False)
class SensitivityProfile:
    """How much the output (or the loss) at the end depends on the input at each step.

    Attributes:
        log10_norm: log10 metric(dy_T/dx_k) or log10 ||dL/dx_k||_2 for k = 1..T, shape (B, T)
            (column k-1 is step k, in the input's time order).
        quantity: "dy_T/dx_k" or "dL/dx_k".
        metric: The matrix metric for dy_T/dx_k; "l2" for the loss's gradient vectors.
    """

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

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (see the module docstring)."""
        return {
            "quantity": self.quantity,
            "metric": self.metric,
            "log10_norm": encode_tensor(self.log10_norm),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SensitivityProfile:
        """The inverse of `to_dict`."""
        _require(data, ("quantity", "metric", "log10_norm"), "sensitivity record")
        return cls(_required_tensor(data["log10_norm"]), data["quantity"], data["metric"])
