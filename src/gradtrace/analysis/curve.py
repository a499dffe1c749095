"""One contribution-curve job from plain options: what `gradtrace curve` and the tour run.

A `CurveConfig` says which cell, how to draw or load its weights and inputs, and how to measure;
`run_curve` validates it, estimates the work against the budget, builds the tensors on the
chosen device and returns a `GradientFlow`. `analyse` does the same for weights and inputs the
caller already has. Two ways to get the step Jacobians J_1..J_T of a cell:

    trajectory mode   run s_t = step(x_t, s_{t-1}) from s_0 and take each J_t on the way
    checkpoint mode   the states are given (the lectures' way): row k-1 of the states is the
                      state step k starts from, and J_k is evaluated there

Weights files (`.npz`, vanilla RNN): `W_hh` (H, H), `W_hx` (H, I), `b` (H,), `x` (T, I), and
`h0` (H,) for trajectory mode or `h` (T, H) for checkpoint mode.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gradtrace import budgets
from gradtrace.analysis.flow import LyapunovOption, Steps, assemble, check_lyapunov_option
from gradtrace.cells import (
    CELLS,
    RNNWeights,
    Weights,
    cell_of,
    checkpoint,
    random_weights,
    replay,
)
from gradtrace.core.activations import ACTIVATIONS
from gradtrace.core.engine import METRICS, sweep_work
from gradtrace.core.matrix_free import check_estimate, matrix_free_work, resolve_estimate
from gradtrace.core.spectra import parse_spectrum
from gradtrace.errors import GradtraceError, check, check_seed
from gradtrace.io.arrays import array_tensor, load_arrays
from gradtrace.io.devices import DTYPES, choose_device, choose_dtype
from gradtrace.records.flow import GradientFlow

MODES = ("trajectory", "checkpoint")
_FROM_WEIGHTS = {  # what a weights file fixes, and where
    "hidden_size": "W_hh is H x H",
    "input_size": "W_hx is H x I",
    "steps": "x is T x I",
    "batch": "one sequence x",
    "spectrum": "W_hh is given",
    "seed": "nothing is drawn",
}


@dataclass(frozen=True)
class CurveConfig:
    """Options of one curve job; the defaults are the CLI's.

    Attributes:
        cell: "rnn", "lstm" or "gru".
        activation: phi of a vanilla RNN.
        hidden_size: H.
        input_size: I.
        steps: T.
        batch: B sequences measured at once.
        seed: Seeds the weights (seed) and the inputs and states (seed + 1).
        spectrum: A SPEC string for each recurrent block (`gradtrace.core.spectra`), or None
            for PyTorch's default initialisation.
        mode: "trajectory" or "checkpoint" (vanilla RNN; random N(0, 1) states).
        weights: An .npz file of a vanilla RNN (see the module docstring) instead of drawing.
        metric: "spectral", "frobenius" or "maxabs".
        dtype: "float64" or "float32".
        device: "auto", "cpu" or "cuda".
        lyapunov: K, "full" or None: the top-K Lyapunov spectrum besides lambda_1.
        estimate: "auto" (exact unless its work is over the budget), "exact" or
            "matrix-free" (spectral only; `gradtrace.core.matrix_free`).
    """

    cell: str = "rnn"
    activation: str = "tanh"
    hidden_size: int = 32
    input_size: int = 8
    steps: int = 100
    batch: int = 1
    seed: int = 0
    spectrum: str | None = None
    mode: str = "trajectory"
    weights: Path | None = None
    metric: str = "spectral"
    dtype: str = "float64"
    device: str = "auto"
    lyapunov: LyapunovOption = None
    estimate: str = "auto"

    def validate(self) -> None:
        """Raise `GradtraceError` on the first option that is out of range."""
        check(self.cell in CELLS, f"`cell` must be one of {', '.join(CELLS)}, got {self.cell!r}")
        check(
            self.activation in ACTIVATIONS,
            f"`activation` must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}",
        )
        check(
            self.metric in METRICS,
            f"`metric` must be one of {', '.join(METRICS)}, got {self.metric!r}",
        )
        check(
            self.dtype in DTYPES, f"`dtype` must be one of {', '.join(DTYPES)}, got {self.dtype!r}"
        )
        check(self.mode in MODES, f"`mode` must be one of {', '.join(MODES)}, got {self.mode!r}")
        for name in ("hidden_size", "input_size", "steps", "batch"):
            value = getattr(self, name)
            check(
                isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                f"`{name}` must be a whole number of at least 1, got {value!r}",
            )
        check_seed(self.seed)
        check_lyapunov_option(self.lyapunov)
        check_estimate(self.estimate, self.metric)
        if self.mode == "checkpoint":
            check(
                self.cell == "rnn",
                f"`mode` checkpoint draws the lectures' N(0, 1) states of a vanilla RNN, so it "
                f"needs `cell` rnn, got {self.cell!r}; give a gated cell's states to `analyse`",
            )
            check(self.batch == 1, f"`batch` must be 1 in checkpoint mode, got {self.batch}")
        check(
            self.cell == "rnn" or self.activation == "tanh",
            f"`activation` is a vanilla RNN's phi; the {self.cell} cell's are fixed (sigmoid "
            f"gates and tanh), got `activation` {self.activation!r} with `cell` {self.cell!r}",
        )
        if self.weights is not None:
            check(self.cell == "rnn", f"`weights` holds a vanilla RNN, got `cell` {self.cell!r}")
            defaults = {f.name: f.default for f in fields(self)}
            for name in _FROM_WEIGHTS:  # the file holds these: a value given would be ignored
                value = getattr(self, name)
                check(
                    value == defaults[name],
                    f"`{name}` comes from the `weights` file ({_FROM_WEIGHTS[name]}), so it "
                    f"cannot also be given, got {value!r}; leave it out",
                )
        if self.spectrum is not None:
            parse_spectrum(self.spectrum)

    def work(self) -> budgets.Work:
        """The estimated memory and time of this job, before anything is allocated."""
        T, B, H, I = self.steps, self.batch, self.hidden_size, self.input_size
        gates = CELLS[self.cell].gates
        S = 2 * H if self.cell == "lstm" else H
        item = torch.finfo(DTYPES[self.dtype]).bits // 8
        data = item * (gates * H * (H + I) + T * B * (I + 2 * S))
        replay_cost = budgets.Work(memory=data, flops=T * B * S * S * 20.0, steps=T * 10.0)
        if resolve_estimate(self.estimate, self.metric, T, B, S, item) == "matrix-free":
            return replay_cost + matrix_free_work(T, B, S, item)
        return replay_cost + sweep_work(T, B, S, self.metric, item)


def _weights_file(config: CurveConfig, dtype: torch.dtype, device: torch.device) -> GradientFlow:
    assert config.weights is not None
    arrays = load_arrays(config.weights, "weights")

    def get(key: str) -> Tensor:
        value = array_tensor(arrays, key, dtype, "weights")
        if key in ("x", "h", "h0"):  # the weights themselves are checked by RNNWeights
            bad = int((~torch.isfinite(value)).sum())
            check(bad == 0, f"`{key}` in `weights` must be finite, got {bad} NaN/Inf entries")
        return value.to(device)

    weights = RNNWeights(get("W_hh"), get("W_hx"), get("b"), config.activation)
    x = get("x")
    check(
        x.ndim == 2 and x.shape[1] == weights.input_size,
        f"`x` in `weights` must have shape (T, {weights.input_size}) to match `W_hx`, "
        f"got {tuple(x.shape)}",
    )
    check(x.shape[0] >= 1, "`x` in `weights` must hold at least one step (T >= 1), got T = 0")
    if config.mode == "checkpoint":
        check("h" in arrays, "`mode` checkpoint needs an array 'h' of shape (T, H) in `weights`")
        h = get("h")
        check(
            tuple(h.shape) == (x.shape[0], weights.hidden_size),
            f"`h` in `weights` must have shape {(x.shape[0], weights.hidden_size)} to match "
            f"`x` and `W_hh`, got {tuple(h.shape)}",
        )
        return analyse(
            weights, x, states=h, metric=config.metric, lyapunov=config.lyapunov,
            estimate=config.estimate,
        )  # fmt: skip
    h0 = get("h0") if "h0" in arrays else None
    if h0 is not None:
        check(
            tuple(h0.shape) == (weights.hidden_size,),
            f"`h0` in `weights` must have shape ({weights.hidden_size},), got {tuple(h0.shape)}",
        )
        h0 = h0.unsqueeze(0)
    return analyse(
        weights, x.unsqueeze(1), h0, metric=config.metric, lyapunov=config.lyapunov,
        estimate=config.estimate,
    )  # fmt: skip


def curve_weights(config: CurveConfig, dtype: torch.dtype) -> Weights:
    """The seeded random weights `run_curve` measures for `config` (no weights file)."""
    return random_weights(
        config.cell,
        config.hidden_size,
        config.input_size,
        spectrum=config.spectrum,
        activation=config.activation,
        seed=config.seed,
        dtype=dtype,
    )


def run_curve(config: CurveConfig) -> GradientFlow:
    """Validate `config`, check its cost, build weights and inputs, and measure.

    Random inputs are x_t ~ N(0, 1); random checkpoint states are N(0, 1) too, as in the
    lectures.

    Raises:
        GradtraceError: on any bad option or weights file, or a job over the budget.
    """
    config.validate()
    dtype, device = choose_dtype(config.dtype), choose_device(config.device)
    if config.weights is not None:
        return _weights_file(config, dtype, device)
    budgets.require(config.work(), "`hidden_size`, `steps` or `batch`")
    weights = curve_weights(config, dtype).to(device=device)
    gen = torch.Generator().manual_seed(config.seed + 1)
    T, B, H, I = config.steps, config.batch, config.hidden_size, config.input_size
    x = torch.randn(T, B, I, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
    if config.mode == "checkpoint":
        h = torch.randn(T, H, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
        x, states = x[:, 0], h
    else:
        states = None
    return analyse(
        weights, x, states=states, metric=config.metric, lyapunov=config.lyapunov,
        seed=config.seed, estimate=config.estimate,
    )  # fmt: skip


def curve(**options: Any) -> GradientFlow:
    """`run_curve(CurveConfig(**options))`: a contribution curve from keyword options.

    Example:
        >>> flow = curve(cell="lstm", hidden_size=16, steps=200, spectrum="orthogonal")
        >>> flow.verdict in ("vanishing", "exploding", "neutral", "transient growth")
        True

    Raises:
        GradtraceError: on an unknown option, or as `run_curve`.
    """
    known = [f.name for f in fields(CurveConfig)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise GradtraceError(
            f"`{unknown[0]}` is not an option of curve; expected one of {', '.join(known)}"
        )
    return run_curve(CurveConfig(**options))


def analyse(
    weights: Any,
    x: Tensor,
    s0: Tensor | None = None,
    *,
    states: Tensor | None = None,
    metric: str = "spectral",
    lyapunov: LyapunovOption = None,
    seed: int = 0,
    estimate: str = "auto",
) -> GradientFlow:
    """The contribution curve of a cell's weights on given inputs, with the theory beside it.

    Trajectory mode (no `states`): run the cell over x (T, B, I) from s0 (B, S; zeros if
    None). Checkpoint mode: the states are given, row k-1 of `states` the state step k starts
    from; x and states may be (T, I) and (T, S) for one sequence, or (T, B, I) and (T, B, S).

    Args:
        weights: RNNWeights, LSTMWeights or GRUWeights (`gradtrace.cells`).
        x: The inputs.
        s0: The initial state (trajectory mode).
        states: The checkpoint states.
        metric: "spectral", "frobenius" or "maxabs".
        lyapunov: K, "full" or None.
        seed: Seeds the Lyapunov start directions.
        estimate: "auto", "exact" or "matrix-free", as in `CurveConfig`.

    Raises:
        GradtraceError: on weights of another type, or inputs and states that do not fit.
    """
    cell = cell_of(weights)
    check(
        isinstance(x, Tensor),
        f"`x` must be a torch.Tensor of shape (T, B, I), got {type(x).__name__}",
    )
    if states is not None:
        check(s0 is None, "give `s0` (trajectory mode) or `states` (checkpoint mode), not both")
        check(isinstance(states, Tensor), f"`states` must be a tensor, got {type(states).__name__}")
        if x.ndim == 2 and states.ndim == 2:  # one sequence, the lectures' (T, I) and (T, H)
            x, states = x.unsqueeze(1), states.unsqueeze(1)
        check(
            x.ndim == 3 and states.ndim == 3 and x.shape[:2] == states.shape[:2],
            f"`x` and `states` must have shapes (T, B, I) and (T, B, S) with the same T and B, "
            f"got {tuple(x.shape)} and {tuple(states.shape)}",
        )
        run = checkpoint(cell, weights, x, states)
    else:
        check(x.ndim == 3, f"`x` must have shape (T, B, I), got {tuple(x.shape)}")
        if s0 is None:
            s0 = x.new_zeros(x.shape[1], cell.state_size(weights))
        with torch.no_grad():
            run = replay(cell, weights, x, s0)
    return assemble(Steps.of(run), metric=metric, lyapunov=lyapunov, seed=seed, estimate=estimate)
