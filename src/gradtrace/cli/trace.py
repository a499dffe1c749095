"""`gradtrace trace`: gradient flow through time in a real model's recurrent layers."""

from __future__ import annotations

import importlib
import os
import sys
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gradtrace.cli.output import Json, Plot, check_plot, finish
from gradtrace.errors import GradtraceError, check

if TYPE_CHECKING:
    import torch

MODEL_HELP = (
    "A TorchScript file (a bare nn.RNN/LSTM/GRU), a torch.save'd module (loaded with "
    "torch.load(weights_only=False), which runs code from the file: load only files you "
    "trust), or package.module:factory, a callable that returns the model."
)


def _import_factory(spec: str) -> Any:
    """The module built by `package.module:factory`, importable from the current folder too."""
    name, _, attr = spec.partition(":")
    check(
        bool(name) and attr.isidentifier(),
        f"`--model` must be a file or package.module:factory, got {spec!r}",
    )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(name)
    except ImportError as err:
        raise GradtraceError(
            f"`--model` factory module {name!r} could not be imported: {err}"
        ) from None
    factory: Any = getattr(module, attr, None)
    check(
        callable(factory), f"`--model` names {attr!r}, which {name!r} does not define as callable"
    )
    try:
        return factory()
    except Exception as err:  # the user's code: report it in one line, not a traceback
        raise GradtraceError(
            f"`--model` factory {spec!r} raised {type(err).__name__}: {err}"
        ) from None


def load_model(spec: str) -> torch.nn.Module:
    """Load the model named by `--model` (see MODEL_HELP).

    Raises:
        GradtraceError: if the file is missing or unreadable, or the factory does not import
            or returns something other than a torch.nn.Module.
    """
    import torch

    path = Path(spec)
    if path.is_file():
        try:
            if _is_torchscript(path):
                model = _load_torchscript(path)
            else:
                model = torch.load(path, weights_only=False, map_location="cpu")
        except Exception as err:  # a pickle can raise anything: every failure is "unreadable"
            raise GradtraceError(
                f"`--model` file {spec!r} could not be loaded ({type(err).__name__}: "
                f"{_first_line(err)}); expected TorchScript or a torch.save'd module"
            ) from None
    elif ":" in spec:
        model = _import_factory(spec)
    else:
        raise GradtraceError(
            f"`--model` must be an existing file or package.module:factory, got {spec!r}"
        )
    check(
        isinstance(model, torch.nn.Module),
        f"`--model` must give a torch.nn.Module, got {type(model).__name__}",
    )
    return model


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else "no message"


def _is_torchscript(path: Path) -> bool:
    """Whether `path` is a TorchScript archive (it carries code) rather than a pickle."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in n or n.endswith("constants.pkl") for n in archive.namelist())


def _load_torchscript(path: Path) -> torch.nn.Module:
    import warnings

    import torch

    with warnings.catch_warnings():  # torch 2.13 marks torch.jit deprecated; it still loads
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path), map_location="cpu")


def load_inputs(
    path: Path | None, shape: str | None, batch_first: bool, like: torch.Tensor, seed: int
) -> torch.Tensor:
    """The model's input: from a .npy / .pt file, or standard normal of shape T,B,I.

    Floating inputs take the model's dtype; integer ones (token ids) stay as they are.

    Raises:
        GradtraceError: if neither or both sources are given, the file has another suffix or
            holds no tensor, or the shape is not three positive integers.
    """
    import numpy as np
    import torch

    check(
        (path is None) != (shape is None),
        "give exactly one of `--input FILE` and `--shape T,B,I`, got "
        + ("both" if path is not None else "neither"),
    )
    if path is not None:
        check(
            path.suffix in (".npy", ".pt"),
            f"`--input` must be a .npy or .pt file, got {str(path)!r}",
        )
        check(path.is_file(), f"`--input` file {str(path)!r} does not exist")
        try:
            if path.suffix == ".npy":
                data = torch.from_numpy(np.load(path, allow_pickle=False))
            else:
                data = torch.load(path, weights_only=True, map_location="cpu")
        except Exception as err:  # numpy and torch raise many types for a bad file
            raise GradtraceError(
                f"`--input` file {str(path)!r} could not be read ({type(err).__name__}: "
                f"{_first_line(err)}); expected one numeric array or tensor"
            ) from None
        check(
            isinstance(data, torch.Tensor),
            f"`--input` must hold one tensor, got {type(data).__name__}",
        )
        return data.to(like.device, like.dtype if data.is_floating_point() else data.dtype)
    assert shape is not None  # for the type checker: exactly one source is given
    try:
        T, B, I = (int(n) for n in shape.split(","))
    except ValueError:
        raise GradtraceError(
            f"`--shape` must be three positive integers T,B,I, got {shape!r}"
        ) from None
    check(min(T, B, I) >= 1, f"`--shape` must be three positive integers T,B,I, got {shape!r}")
    gen = torch.Generator().manual_seed(seed)
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
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "cpu",
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
    import torch

    from gradtrace.plots.trace import plot_sensitivity, plot_trace
    from gradtrace.tracing import input_sensitivity, trace

    check(
        device in ("cpu", "cuda", "auto"), f"`--device` must be cpu, cuda or auto, got {device!r}"
    )
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    check(
        device == "cpu" or torch.cuda.is_available(),
        "`--device cuda` needs a CUDA build of torch and a GPU, and none is available here",
    )
    net = load_model(model).to(device)
    first = next((p for p in net.parameters() if p.is_floating_point()), None)
    like = first if first is not None else torch.empty(0)
    x = load_inputs(input_file, shape, batch_first, like.detach(), seed)
    if sensitivity:
        profile = input_sensitivity(net, x, batch_first=batch_first, metric=metric)
        mean = profile.log10_norm.mean(dim=0)
        finish(
            profile,
            as_json=as_json,
            plot=plot,
            draw=plot_sensitivity,
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
        draw=plot_trace,
        summary=lambda: "\n".join(
            f"{rec.label}: {rec.verdict}, {rec.rate_per_step:+.4g} decades/step, "
            f"horizon {rec.horizon} of {rec.steps} steps, "
            f"top Lyapunov exponent {rec.lyapunov_max:+.4g}/step"
            for rec in result.layers
        ),
    )
