"""`gradtrace trace`: gradient flow through time in a real model's recurrent layers."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gradtrace.cli.output import Json, Plot, check_plot, finish
from gradtrace.errors import GradtraceError, check, check_seed

if TYPE_CHECKING:
    import torch
    from torch import nn

MODEL_HELP = (
    "A TorchScript file (a bare nn.RNN/LSTM/GRU), a torch.save'd module (loaded by "
    "torch.load with weights_only=False, which runs code from the file: load only files you "
    "trust), or package.module:factory, a callable that returns the model."
)
FLAGS = {
    "trace": {
        "inputs": "--input",
        "input": "--input",
        "args": "--input",
        "path": "--input",
        "input_sensitivity": "--sensitivity",
        "loss_fn": "--loss",
        "target": "--target",
        "mode": "--mode",
        "units": "--units",
    }
}


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


def _parse_units(value: str | None) -> list[int] | None:
    if value is None:
        return None
    parts = [p.strip() for p in value.split(",")]
    check(
        all(p.lstrip("-").isdigit() for p in parts),
        f"`--units` must be output units as integers, e.g. 0,5,17, got {value!r}",
    )
    return [int(p) for p in parts]


def _on(value: Any, like: torch.Tensor) -> Any:
    """A loaded argument on the model's device, floats in its dtype (tuples item by item)."""
    if isinstance(value, tuple):
        return tuple(_on(v, like) for v in value)
    return value.to(like.device, like.dtype if value.is_floating_point() else value.dtype)


def _init_hidden(net: nn.Module, first: torch.Tensor, batch_first: bool) -> Any:
    """model.init_hidden(B) (or initHidden()), as the pytorch/examples models provide."""
    import inspect

    method = getattr(net, "init_hidden", None) or getattr(net, "initHidden", None)
    check(
        callable(method),
        f"`--init-hidden` needs a model with an init_hidden method, and "
        f"{type(net).__name__} has none; pass the state with a second `--input` instead",
    )
    assert callable(method)  # for the type checker
    takes_batch = bool(inspect.signature(method).parameters)
    batch = int(first.shape[0 if batch_first else 1]) if first.ndim >= 2 else 1
    return method(batch) if takes_batch else method()


def _loss(spec: str | None) -> Any:
    if spec is None:
        return None
    if ":" in spec:
        from gradtrace.io.models import import_callable

        return import_callable(spec, "loss")
    from gradtrace.tracing.losses import named_loss

    return named_loss(spec)


def trace_command(
    model: Annotated[str, typer.Option("--model", help=MODEL_HELP)],
    input_files: Annotated[
        list[Path] | None,
        typer.Option(
            "--input",
            help="An argument of the model's forward, in order, as a .npy or .pt file (a .pt "
            "may hold a tuple, such as an LSTM's (h, c)); repeat for forward(input, hidden).",
        ),
    ] = None,
    shape: Annotated[
        str | None,
        typer.Option(
            help="Random standard-normal input of T steps, B sequences and I features "
            "instead of --input, laid out (T, B, I) or, batch first, (B, T, I)."
        ),
    ] = None,
    init_hidden: Annotated[
        bool,
        typer.Option(
            "--init-hidden",
            help="Pass model.init_hidden(B) as the last argument (pytorch/examples models).",
        ),
    ] = False,
    batch_first: Annotated[
        bool | None,
        typer.Option(
            "--batch-first/--time-first",
            help="The input is (B, T, ...) or (T, B, ...); by default as the model's "
            "nn.RNN/LSTM/GRU declare it (batch_first=True in all of them: B, T), else T, B.",
            show_default=False,
        ),
    ] = None,
    loss: Annotated[
        str | None,
        typer.Option(
            help="Also measure ||dL/dh_k||: mean-square, sum, cross-entropy (of the output's "
            "first tensor) or package.module:function, called with the whole output.",
        ),
    ] = None,
    target: Annotated[
        Path | None,
        typer.Option(help="The loss's target, a .npy or .pt file."),
    ] = None,
    mode: Annotated[
        str,
        typer.Option(
            help="model: trace in the mode the model is in; train (dropout as in training, "
            "seeded masks) or eval: switch it for the trace only.",
        ),
    ] = "model",
    module: Annotated[
        str | None,
        typer.Option(help="Trace only this recurrent submodule (dotted path)."),
    ] = None,
    metric: Annotated[str, typer.Option(help="spectral, frobenius or maxabs.")] = "spectral",
    lyapunov: Annotated[
        str | None,
        typer.Option(help="Also the top K Lyapunov exponents per layer (K or 'full')."),
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed of the random input, dropout masks and Lyapunov start.")
    ] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
    estimate: Annotated[
        str,
        typer.Option(
            help="auto (exact unless over the work budget), exact, or matrix-free "
            "(spectral norm from a few vector-Jacobian products per step)."
        ),
    ] = "auto",
    sensitivity: Annotated[
        bool,
        typer.Option(
            "--sensitivity",
            help="Measure the input-sensitivity profile ||dy_T/dx_k|| instead: works for any "
            "sequence model, recurrent or not (a Transformer, a temporal convolution).",
        ),
    ] = False,
    units: Annotated[
        str | None,
        typer.Option(help="With --sensitivity: only these output units, e.g. 0,5,17."),
    ] = None,
    as_json: Json = False,
    plot: Plot = None,
) -> None:
    """Trace gradient flow through time in every recurrent layer of a model, called as its
    forward takes it.

    Each nn.RNN/LSTM/GRU and each loop over an nn.RNNCell/LSTMCell/GRUCell is re-executed from
    its own weights: c(k) = ||dh_T/dh_k|| per layer, exactly, and ||dL/dh_k|| with a loss.
    With --sensitivity, any sequence model's ||dy_T/dx_k|| for every input step k instead.

    Example: gradtrace trace --model mypkg.models:build --input tokens.pt --init-hidden
    --loss cross-entropy --target next.pt --mode train --plot trace.png
    """
    check_plot(plot)
    files = list(input_files or [])
    check(
        bool(files) != (shape is not None),
        "give `--input FILE` (once per argument) or `--shape T,B,I`, got "
        + ("both" if files else "neither"),
    )
    import torch

    from gradtrace.io.arrays import load_argument, load_tensor
    from gradtrace.io.devices import choose_device
    from gradtrace.io.models import load_model
    from gradtrace.tracing import input_sensitivity, trace
    from gradtrace.tracing.modules import own_batch_first

    loss_fn = _loss(loss)
    check(target is None or loss_fn is not None, "`--target` needs a `--loss` to be the target of")
    net = load_model(model).to(choose_device(device))
    batch_first = own_batch_first(net) if batch_first is None else batch_first
    first = next((p for p in net.parameters() if p.is_floating_point()), None)
    like = (first if first is not None else torch.empty(0)).detach()
    if files:
        args = [_on(load_argument(path, "input"), like) for path in files]
    else:
        assert shape is not None  # exactly one source was checked above
        args = [_random_input(shape, batch_first, like, seed)]
    check(
        isinstance(args[0], torch.Tensor),
        "`--input` must hold a tensor for the first argument, got a tuple",
    )
    if init_hidden:
        args.append(_init_hidden(net, args[0], batch_first))
    y = None if target is None else load_tensor(target, "target").to(like.device)
    if y is not None and y.is_floating_point():
        y = y.to(like.dtype)
    if sensitivity:
        profile = input_sensitivity(
            net,
            *args,
            loss_fn=loss_fn,
            target=y,
            batch_first=batch_first,
            units=_parse_units(units),
            metric=metric,
        )
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
    check(units is None, "`--units` applies to `--sensitivity` only")
    k = _parse_lyapunov(lyapunov)
    result = trace(
        net, *args, module=module, loss_fn=loss_fn, target=y, metric=metric, lyapunov=k,
        seed=seed, mode=mode, estimate=estimate,
    )  # fmt: skip
    finish(result, as_json=as_json, plot=plot, summary=lambda: _summary(result))


def _summary(result: Any) -> str:
    """One line per traced layer, then the mode, the dropout seed and the loss."""
    lines = [
        f"{rec.label}: {rec.verdict}, {rec.rate_per_step:+.4g} decades/step, "
        f"memory horizon {rec.horizon} of {rec.steps} steps, "
        f"top Lyapunov exponent {rec.lyapunov_max:+.4g}/step"
        for rec in result.layers
    ]
    tail = f"{result.mode} mode"
    if result.dropout_seed is not None:
        tail += f", dropout masks seeded {result.dropout_seed}"
    if result.loss is not None:
        tail += f", loss {result.loss:.6g}"
    return "\n".join([*lines, tail])
