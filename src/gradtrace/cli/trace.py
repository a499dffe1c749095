"""`gradtrace trace`: gradient flow through time in a real model's recurrent layers."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gradtrace.cli.output import Json, Plot, check_plot, finish
from gradtrace.errors import GradtraceError, check, check_seed

if TYPE_CHECKING:
    import torch

MODEL_HELP = (
    "A TorchScript file (a bare nn.RNN/LSTM/GRU), a torch.save'd module (loaded with "
    "torch.load(weights_only=False), which runs code from the file: load only files you "
    "trust), or package.module:factory, a callable that returns the model."
)
FLAGS = {"trace": {"inputs": "--input", "input": "--input", "path": "--input"}}


def _random_input(shape: str, batch_first: bool, like: torch.Tensor, seed: int) -> torch.Tensor:
    """Standard-normal input of shape T,B,I (or B,T,I with --batch-first)."""
    import torch

    try:
        T, B, I = (int(n) for n in shape.split(","))
    except ValueError:
        raise GradtraceError(
            f"`--shape` must be three positive integers T,B,I, got {shape!r}"
        ) from None
    check(min(T, B, I) >= 1, f"`--shape` must be three positive integers T,B,I, got {shape!r}")
    gen = torch.Generator().manual_seed(check_seed(seed))
    x = torch.randn(T, B, I, generator=gen, dtype=like.dtype)
    return (x.transpose(0, 1) if batch_first else x).to(like.device)


def _parse_lyapunov(value: str | None) -> int | str | None:
    if value is None or value == "full":
        return value
    check(
        value.isdigit() and int(value) >= 1,
        f"`--lyapunov` must be a positive integer or 'full', got {value!r}",
    )
    return int(value)


def trace_command(
    model: Annotated[str, typer.Option("--model", help=MODEL_HELP)],
    input_file: Annotated[
        Path | None,
        typer.Option("--input", help="The model's input as a .npy or .pt tensor."),
    ] = None,
    shape: Annotated[
        str | None,
        typer.Option(help="Random standard-normal input T,B,I instead of --input."),
    ] = None,
    batch_first: Annotated[
        bool, typer.Option("--batch-first", help="Draw the random input as (B, T, I).")
    ] = False,
    module: Annotated[
        str | None,
        typer.Option(help="Trace only this recurrent submodule (dotted path)."),
    ] = None,
    metric: Annotated[str, typer.Option(help="spectral, frobenius or maxabs.")] = "spectral",
    lyapunov: Annotated[
        str | None,
        typer.Option(help="Also the top K Lyapunov exponents per layer (K or 'full')."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the random input and Lyapunov start.")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
    sensitivity: Annotated[
        bool,
        typer.Option(
            "--sensitivity",
            help="Measure the input-sensitivity profile ||dy_T/dx_k|| instead: works for any "
            "sequence model, recurrent or not (a Transformer, a temporal convolution).",
        ),
    ] = False,
    as_json: Json = False,
    plot: Plot = None,
) -> None:
    """Trace gradient flow through time in every nn.RNN/LSTM/GRU of a model.

    Each layer is re-executed from its own weights: c(k) = ||dh_T/dh_k|| per layer, exactly.
    With --sensitivity, any sequence model's ||dy_T/dx_k|| for every input step k instead.

    Example: gradtrace trace --model mypkg.models:build --shape 200,8,32 --plot trace.png
    """
    check_plot(plot)
    check(
        (input_file is None) != (shape is None),
        "give exactly one of `--input FILE` and `--shape T,B,I`, got "
        + ("both" if input_file is not None else "neither"),
    )
    import torch

    from gradtrace.io.arrays import load_tensor
    from gradtrace.io.devices import choose_device
    from gradtrace.io.models import load_model
    from gradtrace.tracing import input_sensitivity, trace

    net = load_model(model).to(choose_device(device))
    first = next((p for p in net.parameters() if p.is_floating_point()), None)
    like = (first if first is not None else torch.empty(0)).detach()
    if input_file is not None:
        x = load_tensor(input_file, "input")
        x = x.to(like.device, like.dtype if x.is_floating_point() else x.dtype)
    else:
        assert shape is not None  # exactly one source was checked above
        x = _random_input(shape, batch_first, like, seed)
    if sensitivity:
        profile = input_sensitivity(net, x, batch_first=batch_first, metric=metric)
        mean = profile.log10_norm.mean(dim=0)
        finish(
            profile,
            as_json=as_json,
            plot=plot,
            summary=lambda: (
                f"log10 {profile.quantity} ({profile.metric}), batch mean: first step "
                f"{float(mean[0]):+.4g}, last step {float(mean[-1]):+.4g}, over T = {profile.steps}"
            ),
        )
        return
    k = _parse_lyapunov(lyapunov)
    result = trace(net, x, module=module, metric=metric, lyapunov=k, seed=seed)
    finish(
        result,
        as_json=as_json,
        plot=plot,
        summary=lambda: "\n".join(
            f"{rec.label}: {rec.verdict}, {rec.rate_per_step:+.4g} decades/step, "
            f"memory horizon {rec.horizon} of {rec.steps} steps, "
            f"top Lyapunov exponent {rec.lyapunov_max:+.4g}/step"
            for rec in result.layers
        ),
    )
