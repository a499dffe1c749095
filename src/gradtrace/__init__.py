"""gradtrace: make vanishing and exploding gradients visible, measurable and fixable.

The public API, layer by layer (each builds only on the ones before it):

- core: `contribution_curve`, `loss_gradient_profile` (the Jacobian-product engine),
  `lyapunov_spectrum`, `get_activation`, `parse_spectrum`, the closed forms
- cells: `CELLS`, `get_cell`, `run_trajectory`, `RNNWeights`, `LSTMWeights`, `GRUWeights`,
  `random_weights`
- analysis: `analyse_trajectory`, `analyse_checkpoint`, `run_curve`, `CurveConfig`,
  `init_mlp`, `depth_profile`
- tracing real models: `trace`, `input_sensitivity`, `trace_step`, `layer_fixed_points`

Example:
    >>> import torch, gradtrace
    >>> J = torch.randn(100, 8, 8, dtype=torch.float64) / 8**0.5
    >>> gradtrace.contribution_curve(J, metric="spectral").log10_norm.shape
    torch.Size([100])
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

# Public name -> module that defines it. Imported on first use, so that `import gradtrace`
# (and the CLI's --help) stays fast: torch and matplotlib load only when a name is used.
_EXPORTS = {
    "CurveConfig": "gradtrace.analysis.curve_job",
    "run_curve": "gradtrace.analysis.curve_job",
    "depth_profile": "gradtrace.analysis.depth",
    "init_mlp": "gradtrace.analysis.depth",
    "CurveReport": "gradtrace.analysis.recurrent",
    "analyse_checkpoint": "gradtrace.analysis.recurrent",
    "analyse_trajectory": "gradtrace.analysis.recurrent",
    "CELLS": "gradtrace.cells",
    "GRUWeights": "gradtrace.cells",
    "LSTMWeights": "gradtrace.cells",
    "RNNWeights": "gradtrace.cells",
    "get_cell": "gradtrace.cells",
    "run_trajectory": "gradtrace.cells",
    "random_weights": "gradtrace.cells.random_weights",
    "ACTIVATIONS": "gradtrace.core.activations",
    "get_activation": "gradtrace.core.activations",
    "log10_univariate_gradient": "gradtrace.core.closed_forms",
    "repeated_derivative": "gradtrace.core.closed_forms",
    "univariate_gradient": "gradtrace.core.closed_forms",
    "ContributionCurve": "gradtrace.core.engine",
    "GradientProfile": "gradtrace.core.gradient_profile",
    "contribution_curve": "gradtrace.core.engine",
    "loss_gradient_profile": "gradtrace.core.gradient_profile",
    "LyapunovSpectrum": "gradtrace.core.lyapunov",
    "lyapunov_spectrum": "gradtrace.core.lyapunov",
    "parse_spectrum": "gradtrace.core.weights",
    "GradtraceError": "gradtrace.errors",
    "trace": "gradtrace.tracing.api",
    "TraceResult": "gradtrace.tracing.records",
    "LayerTrace": "gradtrace.tracing.records",
    "SensitivityProfile": "gradtrace.tracing.records",
    "input_sensitivity": "gradtrace.tracing.sensitivity",
    "trace_step": "gradtrace.tracing.stepwise",
    "layer_fixed_points": "gradtrace.tracing.fixed_points",
}

if TYPE_CHECKING:
    from gradtrace.analysis.curve_job import CurveConfig, run_curve
    from gradtrace.analysis.depth import depth_profile, init_mlp
    from gradtrace.analysis.recurrent import CurveReport, analyse_checkpoint, analyse_trajectory
    from gradtrace.cells import CELLS, GRUWeights, LSTMWeights, RNNWeights, get_cell, run_trajectory
    from gradtrace.cells.random_weights import random_weights
    from gradtrace.core.activations import ACTIVATIONS, get_activation
    from gradtrace.core.closed_forms import (
        log10_univariate_gradient,
        repeated_derivative,
        univariate_gradient,
    )
    from gradtrace.core.engine import ContributionCurve, contribution_curve
    from gradtrace.core.gradient_profile import GradientProfile, loss_gradient_profile
    from gradtrace.core.lyapunov import LyapunovSpectrum, lyapunov_spectrum
    from gradtrace.core.weights import parse_spectrum
    from gradtrace.errors import GradtraceError
    from gradtrace.tracing.api import trace
    from gradtrace.tracing.fixed_points import layer_fixed_points
    from gradtrace.tracing.records import LayerTrace, SensitivityProfile, TraceResult
    from gradtrace.tracing.sensitivity import input_sensitivity
    from gradtrace.tracing.stepwise import trace_step

try:
    __version__ = version("gradtrace")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "ACTIVATIONS",
    "CELLS",
    "ContributionCurve",
    "CurveConfig",
    "CurveReport",
    "GRUWeights",
    "GradientProfile",
    "GradtraceError",
    "LSTMWeights",
    "LayerTrace",
    "LyapunovSpectrum",
    "RNNWeights",
    "SensitivityProfile",
    "TraceResult",
    "__version__",
    "analyse_checkpoint",
    "analyse_trajectory",
    "contribution_curve",
    "depth_profile",
    "get_activation",
    "get_cell",
    "init_mlp",
    "input_sensitivity",
    "layer_fixed_points",
    "log10_univariate_gradient",
    "loss_gradient_profile",
    "lyapunov_spectrum",
    "parse_spectrum",
    "random_weights",
    "repeated_derivative",
    "run_curve",
    "run_trajectory",
    "trace",
    "trace_step",
    "univariate_gradient",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gradtrace' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
