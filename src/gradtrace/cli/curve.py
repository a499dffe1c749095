"""`gradtrace curve` and `gradtrace mlp`: the core's measurements from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gradtrace.cli.output import Json, Plot, check_plot, finish


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
    as_json: Json = False,
    plot: Plot = None,
) -> None:
    """Measure c(k) = ||dh_T/dh_k|| for every k, with the theory beside it.

    Example: gradtrace curve --activation sigmoid --hidden 5 --steps 20
    --spectrum eig-uniform:0:4 --mode checkpoint --plot curve.png
    """
    check_plot(plot)
    from gradtrace.analysis.curve_job import CurveConfig, run_curve
    from gradtrace.plots.curve import plot_curve

    config = CurveConfig(
        cell,
        activation,
        hidden,
        input_size,
        steps,
        batch,
        seed,
        spectrum,
        mode,
        weights,
        metric,
        dtype,
        device,
    )
    report = run_curve(config)
    th = report.theory
    finish(
        report,
        as_json=as_json,
        plot=plot,
        draw=plot_curve,
        summary=lambda: (
            f"{report.cell}{' ' + report.activation if report.activation else ''} "
            f"H={report.hidden} T={report.steps} {report.mode} ({report.metric})\n"
            f"verdict: {report.verdict}, {report.rate_per_step:+.4g} decades/step, horizon "
            f"{report.horizon} steps, top Lyapunov exponent {report.lyapunov_max:+.4g}/step\n"
            f"theory: gamma={th.gamma}, sigma_max={th.sigma_max:.4g}, "
            f"spectral radius={th.spectral_radius:.4g}\n{report.note}"
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
    from gradtrace.analysis.depth import depth_profile, init_mlp
    from gradtrace.plots.depth import plot_depth

    profile = depth_profile(
        init_mlp(layers, width, activation, init, seed=seed), init, batch=batch, seed=seed
    )
    g = profile.log10_grad_norm
    finish(
        profile,
        as_json=as_json,
        plot=plot,
        draw=plot_depth,
        summary=lambda: (
            f"{layers}-layer {activation} MLP, {init} init, width {width}\n"
            f"log10 ||dL/dy||: output {float(g[-1]):+.3f}, input {float(g[0]):+.3f} "
            f"({profile.rate_per_layer:+.3g} decades per layer)"
        ),
    )
