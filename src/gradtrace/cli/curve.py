"""`gradtrace curve` and `gradtrace mlp`: contribution curves and depth profiles.

The library names its arguments `hidden_size` (both commands) where the options say `--hidden`
and `--width`; `FLAGS` tells the error messages which option the user typed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gradtrace.cli.output import Json, Plot, check_plot, finish

FLAGS = {"curve": {"hidden_size": "--hidden"}, "mlp": {"hidden_size": "--width"}}


def curve(
    cell: Annotated[str, typer.Option(help="rnn, lstm or gru.")] = "rnn",
    activation: Annotated[
        str, typer.Option(help="sigmoid, tanh, relu, linear or leaky_relu (rnn only).")
    ] = "tanh",
    hidden: Annotated[int, typer.Option(help="Hidden units H.")] = 32,
    input_size: Annotated[int, typer.Option(help="Input features I.")] = 8,
    steps: Annotated[int, typer.Option(help="Sequence length T.")] = 100,
    batch: Annotated[int, typer.Option(help="Sequences B measured at once.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed for weights and inputs.")] = 0,
    spectrum: Annotated[
        str | None,
        typer.Option(
            help="W_hh: eig-uniform:LO:HI, radius:R, orthogonal[:S], identity[:S] or "
            "gaussian:G (each gate's block for lstm/gru). Default: PyTorch's init."
        ),
    ] = None,
    mode: Annotated[str, typer.Option(help="trajectory or checkpoint (rnn).")] = "trajectory",
    weights: Annotated[
        Path | None,
        typer.Option(help=".npz with W_hh, W_hx, b, x and h0 (trajectory) or h (checkpoint)."),
    ] = None,
    metric: Annotated[str, typer.Option(help="spectral, frobenius or maxabs.")] = "spectral",
    dtype: Annotated[str, typer.Option(help="float64 or float32.")] = "float64",
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
    estimate: Annotated[
        str,
        typer.Option(
            help="auto (exact unless over the work budget), exact, or matrix-free: the "
            "spectral norm from a few vector-Jacobian products per step, O(T r H^2)."
        ),
    ] = "auto",
    as_json: Json = False,
    plot: Plot = None,
) -> None:
    """Measure c(k) = ||dh_T/dh_k|| for every k, with the theory beside it.

    Example: gradtrace curve --activation sigmoid --hidden 5 --steps 20
    --spectrum eig-uniform:0:4 --mode checkpoint --plot curve.png
    """
    check_plot(plot)
    from gradtrace.analysis.curve import CurveConfig, run_curve

    config = CurveConfig(
        cell=cell,
        activation=activation,
        hidden_size=hidden,
        input_size=input_size,
        steps=steps,
        batch=batch,
        seed=seed,
        spectrum=spectrum,
        mode=mode,
        weights=weights,
        metric=metric,
        dtype=dtype,
        device=device,
        estimate=estimate,
    )
    flow = run_curve(config)
    th = flow.theory
    finish(
        flow,
        as_json=as_json,
        plot=plot,
        summary=lambda: (
            f"{flow.label} H={flow.hidden_size} T={flow.steps} {flow.mode} ({flow.metric})\n"
            f"verdict: {flow.verdict}, {flow.rate_per_step:+.4g} decades/step, memory horizon "
            f"{flow.horizon} steps, top Lyapunov exponent {flow.lyapunov_max:+.4g}/step\n"
            f"theory: gamma={th.gamma}, sigma_max={th.sigma_max:.4g}, "
            f"spectral radius={th.spectral_radius:.4g}\n{flow.note}"
            + (
                f"\nmatrix-free estimate, last refinement moved it {flow.estimate_error:.2g} "
                "decades"
                if flow.estimate == "matrix-free"
                else ""
            )
        ),
    )


def mlp(
    layers: Annotated[int, typer.Option(help="Depth L.")] = 20,
    width: Annotated[int, typer.Option(help="Units per layer H.")] = 64,
    activation: Annotated[
        str, typer.Option(help="sigmoid, tanh, relu, linear, leaky_relu.")
    ] = "sigmoid",
    init: Annotated[str, typer.Option(help="default (PyTorch), xavier or he.")] = "default",
    batch: Annotated[int, typer.Option(help="Batch size.")] = 32,
    seed: Annotated[int, typer.Option(help="Seed for weights and data.")] = 0,
    as_json: Json = False,
    plot: Plot = None,
) -> None:
    """Gradient norms ||dL/dy_l|| through the layers of a deep MLP.

    Example: gradtrace mlp --layers 30 --activation sigmoid --init xavier --plot mlp.png
    """
    check_plot(plot)
    from gradtrace.analysis.depth import depth_profile

    profile = depth_profile(layers, width, activation, init, batch=batch, seed=seed)
    g = profile.log10_grad_norm
    finish(
        profile,
        as_json=as_json,
        plot=plot,
        summary=lambda: (
            f"{layers}-layer {activation} MLP, {init} init, width {width}: {profile.verdict}\n"
            f"log10 ||dL/dy||: output {float(g[-1]):+.3f}, input {float(g[0]):+.3f} "
            f"({profile.rate_per_layer:+.3g} decades per layer)"
        ),
    )
