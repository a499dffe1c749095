"""The RNN panel: the contribution curve c(k) of a drawn cell with its bound and its theory.

One update is one curve job of the library (`gradtrace.analysis.curve.run_curve`, what
`gradtrace curve` runs), on the CPU in float64, plus the spectrum of every recurrent block of
the same seeded weights (`gradtrace.analysis.curve.curve_weights`):

    c(k) = ||dh_T/dh_k||        the measured curve, log10, k = 0..T-1 (batch mean of log10)
    bound_log10                 (gamma sigma_max)^(T-k) for a vanilla RNN, the product of the
                                step norms for a gated cell
    eigenvalues, singular       of each block W_hh (each gate's block for LSTM and GRU), with
    values                      the circle |lambda| = 1/gamma of the eigenvalue criterion
    verdict, horizon, note      from the library's `GradientFlow` and its theory note
    Lyapunov spectrum           the top K exponents, nats per step (batch mean)

W_hh is drawn by the SPEC grammar of `gradtrace.core.spectra`: `init` names the constructor,
`lo`/`hi` the eigenvalue interval of eig-uniform, `scale` the radius, scale or gain.
"""

from __future__ import annotations

from typing import Any

import torch

from gradtrace.analysis.curve import MODES, CurveConfig, curve_weights, run_curve
from gradtrace.cells import CELLS
from gradtrace.core.activations import ACTIVATIONS
from gradtrace.core.engine import METRICS
from gradtrace.explorer.jsonable import complex_parts, floats, number
from gradtrace.explorer.params import Param, check_order, check_update, choice, integer, real
from gradtrace.records.flow import GradientFlow

INITS = ("default", "eig-uniform", "radius", "orthogonal", "identity", "gaussian")
SEED_MAX = 1_000_000

PARAMS: tuple[Param, ...] = (
    choice("cell", "rnn", CELLS, "cell"),
    choice("activation", "tanh", ACTIVATIONS, "activation phi (vanilla RNN)"),
    integer("hidden_size", 32, 1, 256, "hidden size H"),
    integer("steps", 100, 1, 2000, "steps T"),
    integer("batch", 1, 1, 8, "sequences B"),
    choice("init", "radius", INITS, "W_hh drawn as"),
    real("lo", 0.0, -5.0, 5.0, 0.01, "eigenvalues from (eig-uniform)"),
    real("hi", 1.2, -5.0, 5.0, 0.01, "eigenvalues to (eig-uniform)"),
    real("scale", 1.1, 0.0, 3.0, 0.01, "radius R, scale S or gain G"),
    choice("mode", "trajectory", MODES, "mode"),
    choice("metric", "spectral", METRICS, "metric"),
    integer("lyapunov", 8, 1, 32, "Lyapunov exponents K"),
    integer("seed", 0, 0, SEED_MAX, "seed"),
)


def spectrum_spec(init: str, lo: float, hi: float, scale: float) -> str | None:
    """The SPEC string of `gradtrace.core.spectra` for the panel's W_hh controls.

    Raises:
        GradtraceError: naming `hi` when an eig-uniform interval is empty.
    """
    if init == "default":
        return None
    if init == "eig-uniform":
        check_order("lo", lo, "hi", hi)
        return f"eig-uniform:{lo!r}:{hi!r}"
    return f"{init}:{scale!r}"


def curve_config(
    *, cell: str, activation: str, hidden_size: int, steps: int, batch: int, init: str,
    lo: float, hi: float, scale: float, mode: str, metric: str, lyapunov: int, seed: int,
) -> CurveConfig:  # fmt: skip
    """The curve job the panel runs for these parameters (CPU, float64), checked and costed.

    Raises:
        GradtraceError: on parameters the library refuses, or an update over the explorer's
            limit (`gradtrace.explorer.params.check_update`).
    """
    config = CurveConfig(
        cell=cell,
        activation=activation,
        hidden_size=hidden_size,
        steps=steps,
        batch=batch,
        seed=seed,
        spectrum=spectrum_spec(init, lo, hi, scale),
        mode=mode,
        metric=metric,
        dtype="float64",
        device="cpu",  # interactive sizes: the CPU's float64 is the reference and fast enough
        lyapunov=lyapunov,
        estimate="exact",
    )
    config.validate()
    check_update(config.work(), "`hidden_size`, `steps` or `batch`")
    return config


def command(config: CurveConfig) -> str:
    """The `gradtrace curve` command line that computes the same curve."""
    words = [
        "gradtrace curve", f"--cell {config.cell}", f"--hidden {config.hidden_size}",
        f"--steps {config.steps}", f"--batch {config.batch}", f"--seed {config.seed}",
        f"--mode {config.mode}", f"--metric {config.metric}", "--device cpu",
    ]  # fmt: skip
    if config.cell == "rnn":
        words.insert(2, f"--activation {config.activation}")
    if config.spectrum is not None:
        words.append(f"--spectrum {config.spectrum}")
    return " ".join(words)


def blocks_of(config: CurveConfig) -> list[dict[str, Any]]:
    """Eigenvalues (largest modulus first) and singular values of each recurrent block of the
    weights `run_curve` draws for `config` (the same seed gives the same weights)."""
    weights = curve_weights(config, torch.float64)
    out = []
    for name, W in weights.recurrent_blocks().items():
        eig = torch.linalg.eigvals(W)  # (H,) complex
        eig = eig[torch.argsort(eig.abs(), descending=True)]
        out.append({"name": name, "eigenvalues": complex_parts(eig), "singular_values": floats(
            torch.linalg.svdvals(W))})  # fmt: skip
    return out


def flow_summary(flow: GradientFlow) -> dict[str, Any]:
    """The curve, bound, judgement and theory of a `GradientFlow`, as JSON numbers."""
    th = flow.theory
    mean = flow.log10_norm.mean(dim=0)  # (T,): the batch mean the verdict judges
    lyapunov = None
    if flow.lyapunov is not None:
        exponents = flow.lyapunov.exponents  # (B, K)
        lyapunov = floats(exponents.mean(dim=0) if exponents.ndim == 2 else exponents)
    path = flow.cell_path_log10
    return {
        "k": list(range(flow.steps)),
        "log10_c": floats(mean),
        "log10_c_each": floats(flow.log10_norm) if flow.batch > 1 else None,
        "bound_log10": floats(th.bound_log10),
        "bound": th.bound,
        "log10_cell_path": None if path is None else floats(path.mean(dim=0)),
        "verdict": flow.verdict,
        "rate_per_step": number(flow.rate_per_step),
        "horizon": flow.horizon,
        "note": flow.note,
        "lyapunov_max": number(flow.lyapunov_max),
        "lyapunov": lyapunov,
        "gamma": number(th.gamma),
        "sigma_max": number(th.sigma_max),
        "spectral_radius": number(th.spectral_radius),
        "eigen_prediction": th.eigen_prediction,
        "circle": None if not th.gamma else 1.0 / th.gamma,
    }


def rnn_panel(**params: Any) -> dict[str, Any]:
    """c(k) with its bound, the blocks' spectra, the verdict and the Lyapunov spectrum.

    Args:
        **params: Every parameter of `PARAMS`, checked (`gradtrace.explorer.params.parse`).

    Returns:
        A JSON-able dict: the `flow_summary`, "blocks" (each block's spectra), "steps",
        "hidden_size", "cell", "spectrum" (the SPEC string, or None) and "command" (the same
        curve from the command line).

    Raises:
        GradtraceError: naming the parameter the library or the explorer's limits refuse.
    """
    config = curve_config(**params)
    flow = run_curve(config)
    return {
        "cell": config.cell,
        "steps": config.steps,
        "hidden_size": config.hidden_size,
        "spectrum": config.spectrum,
        "command": command(config),
        **flow_summary(flow),
        "blocks": blocks_of(config),
    }
