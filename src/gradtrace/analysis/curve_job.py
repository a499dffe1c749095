"""One contribution-curve job from plain options: what `gradtrace curve` and the demo run.

A `CurveConfig` says which cell, how to draw or load its weights and inputs, and how to measure;
`run_curve` validates it, builds the tensors on the chosen device and returns a `CurveReport`.

Weights files (`.npz`, vanilla RNN): `W_hh` (H, H), `W_hx` (H, I), `b` (H,), `x` (T, I), and
`h0` (H,) for trajectory mode or `h` (T, H) for checkpoint mode.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from gradtrace.analysis.recurrent import CurveReport, analyse_checkpoint, analyse_trajectory
from gradtrace.cells import CELLS, RNNWeights
from gradtrace.cells.random_weights import random_weights
from gradtrace.core.activations import ACTIVATIONS
from gradtrace.core.engine import METRICS
from gradtrace.core.weights import parse_spectrum
from gradtrace.errors import GradtraceError, check

DTYPES = {"float64": torch.float64, "float32": torch.float32}
MODES = ("trajectory", "checkpoint")


@dataclass(frozen=True)
class CurveConfig:
    """Options of one curve job; the defaults are the CLI's."""

    cell: str = "rnn"
    activation: str = "tanh"
    hidden: int = 32
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

    def validate(self) -> None:
        """Raise `GradtraceError` on the first option that is out of range."""
        check(self.cell in CELLS, f"`--cell` must be one of {', '.join(CELLS)}, got {self.cell!r}")
        check(
            self.activation in ACTIVATIONS,
            f"`--activation` must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}",
        )
        check(
            self.metric in METRICS,
            f"`--metric` must be one of {', '.join(METRICS)}, got {self.metric!r}",
        )
        check(
            self.dtype in DTYPES,
            f"`--dtype` must be one of {', '.join(DTYPES)}, got {self.dtype!r}",
        )
        check(self.mode in MODES, f"`--mode` must be one of {', '.join(MODES)}, got {self.mode!r}")
        check(self.steps >= 1, f"`--steps` must be at least 1, got {self.steps}")
        check(self.hidden >= 1, f"`--hidden` must be at least 1, got {self.hidden}")
        check(self.input_size >= 1, f"`--input-size` must be at least 1, got {self.input_size}")
        check(self.batch >= 1, f"`--batch` must be at least 1, got {self.batch}")
        if self.mode == "checkpoint":
            check(
                self.cell == "rnn",
                f"`--mode checkpoint` is defined for `--cell rnn` only, got --cell {self.cell}",
            )
        if self.weights is not None:
            check(self.cell == "rnn", f"`--weights` holds a vanilla RNN, got --cell {self.cell}")
        if self.spectrum is not None:
            parse_spectrum(self.spectrum)

    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        check(
            not self.device.startswith("cuda") or torch.cuda.is_available(),
            f"`--device` {self.device!r} needs a CUDA GPU, and none is available; use cpu",
        )
        try:
            return torch.device(self.device)
        except RuntimeError:
            raise GradtraceError(
                f"`--device` must be cpu, cuda or auto, got {self.device!r}"
            ) from None


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Read every array of an .npz file.

    Raises:
        GradtraceError: if the file is missing or not a readable .npz archive.
    """
    check(path.is_file(), f"`--weights` must be an existing .npz file, got {str(path)!r}")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: np.asarray(data[name]) for name in data.files}
    except (OSError, ValueError, TypeError, zipfile.BadZipFile, EOFError) as err:
        raise GradtraceError(
            f"`--weights` must be a readable .npz archive, got {str(path)!r} ({err})"
        ) from None


def _array(
    arrays: dict[str, np.ndarray], name: str, dtype: torch.dtype, device: torch.device
) -> Tensor:
    check(name in arrays, f"`--weights` must contain an array {name!r}, found {sorted(arrays)}")
    value = arrays[name]
    check(
        np.issubdtype(value.dtype, np.number) and not np.iscomplexobj(value),
        f"`--weights` array {name!r} must be numeric, got dtype {value.dtype}",
    )
    return torch.as_tensor(value.astype(np.float64)).to(dtype=dtype, device=device)


def _from_file(config: CurveConfig, dtype: torch.dtype, device: torch.device) -> CurveReport:
    assert config.weights is not None
    arrays = load_npz(config.weights)
    weights = RNNWeights(
        _array(arrays, "W_hh", dtype, device),
        _array(arrays, "W_hx", dtype, device),
        _array(arrays, "b", dtype, device),
        config.activation,
    )
    x = _array(arrays, "x", dtype, device)
    check(
        x.ndim == 2 and x.shape[1] == weights.input_size,
        f"`x` in --weights must have shape (T, {weights.input_size}) to match `W_hx`, "
        f"got {tuple(x.shape)}",
    )
    check(x.shape[0] >= 1, "`x` in --weights must hold at least one step (T >= 1), got T = 0")
    check(bool(torch.isfinite(x).all()), "`x` in --weights must be finite, got NaN/Inf entries")
    if config.mode == "checkpoint":
        check("h" in arrays, "`--mode checkpoint` needs an array 'h' of shape (T, H) in --weights")
        h = _array(arrays, "h", dtype, device)
        check(
            tuple(h.shape) == (x.shape[0], weights.hidden_size),
            f"`h` in --weights must have shape {(x.shape[0], weights.hidden_size)} to match "
            f"`x` and `W_hh`, got {tuple(h.shape)}",
        )
        check(bool(torch.isfinite(h).all()), "`h` in --weights must be finite, got NaN/Inf entries")
        return analyse_checkpoint(weights, x, h, metric=config.metric)
    h0 = _array(arrays, "h0", dtype, device) if "h0" in arrays else None
    if h0 is not None:
        check(
            tuple(h0.shape) == (weights.hidden_size,),
            f"`h0` in --weights must have shape ({weights.hidden_size},), got {tuple(h0.shape)}",
        )
        check(bool(torch.isfinite(h0).all()), "`h0` in --weights must be finite, got NaN/Inf")
        h0 = h0.unsqueeze(0)
    return analyse_trajectory("rnn", weights, x.unsqueeze(1), h0, metric=config.metric)


def run_curve(config: CurveConfig) -> CurveReport:
    """Validate `config`, build weights and inputs, and measure the contribution curve.

    Random inputs are x_t ~ N(0, 1); random checkpoint states (checkpoint mode without a
    weights file) are N(0, 1) too, as in the lectures.

    Raises:
        GradtraceError: on any bad option or weights file.
    """
    config.validate()
    dtype, device = DTYPES[config.dtype], config.torch_device()
    if config.weights is not None:
        return _from_file(config, dtype, device)
    spectrum = parse_spectrum(config.spectrum) if config.spectrum else None
    weights = random_weights(
        config.cell,
        config.hidden,
        config.input_size,
        spectrum=spectrum,
        activation=config.activation,
        seed=config.seed,
        dtype=dtype,
    ).to(device=device)
    gen = torch.Generator().manual_seed(config.seed + 1)
    T, B, H, I = config.steps, config.batch, config.hidden, config.input_size
    x = torch.randn(T, B, I, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
    if config.mode == "checkpoint":
        check(B == 1, f"`--batch` must be 1 in checkpoint mode, got {B}")
        h = torch.randn(T, H, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
        assert isinstance(weights, RNNWeights)
        return analyse_checkpoint(weights, x[:, 0], h, metric=config.metric)
    return analyse_trajectory(config.cell, weights, x, metric=config.metric)
