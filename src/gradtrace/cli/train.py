"""`gradtrace train`: one seeded training run of a task and a model, with its gradient picture."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from gradtrace.cli.output import Json, Plot, check_plot, finish

FLAGS = {
    "train": {
        "hidden_size": "--hidden",
        "batch_size": "--batch",
        "mnist_path": "--mnist-path",
        "max_norm": "--max-norm",
        "task": "TASK",
    }
}


def train_command(
    task: Annotated[str, typer.Argument(help="The task: adding, adding-mean, copy, digits, ...")],
    model: Annotated[str, typer.Option(help="The model: tanh, irnn, lstm, gru, ...")] = "lstm",
    length: Annotated[
        int | None,
        typer.Option(help="Sequence length T \\[default: 100; digits 64, mnist 784]."),
    ] = None,
    hidden: Annotated[int, typer.Option(help="Hidden units H.")] = 64,
    batch: Annotated[int, typer.Option(help="Sequences per step B.")] = 64,
    steps: Annotated[int, typer.Option(help="Optimizer steps.")] = 1000,
    optimizer: Annotated[str, typer.Option(help="adam, sgd (with momentum) or rmsprop.")] = "adam",
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 1e-3,
    momentum: Annotated[float, typer.Option(help="Momentum of sgd and rmsprop.")] = 0.9,
    clip: Annotated[str, typer.Option(help="Clip the gradient by norm, value, or none.")] = "norm",
    max_norm: Annotated[float, typer.Option(help="The clipping threshold.")] = 1.0,
    reverse: Annotated[bool, typer.Option(help="Feed every sequence backwards.")] = False,
    seed: Annotated[int, typer.Option(help="Seeds the initialisation and every batch.")] = 0,
    eval_every: Annotated[int, typer.Option(help="Steps between test evaluations.")] = 100,
    test_size: Annotated[int, typer.Option(help="Sequences in the test set.")] = 1000,
    device: Annotated[
        str,
        typer.Option(
            help="cpu, cuda[:n] or auto; cpu by default, so a seeded run repeats on any machine."
        ),
    ] = "cpu",
    mnist_path: Annotated[
        Path | None, typer.Option(help="MNIST for the mnist tasks: IDX files' folder or .npz.")
    ] = None,
    log: Annotated[
        Path | None, typer.Option(help="Folder for the monitor's log (gradtrace monitor LOG).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write the run's record (.json).")] = None,
    plot: Plot = None,
    as_json: Json = False,
) -> None:
    """Train a model on a long-term-dependency task and record why it learns or not.

    Seeded and reproducible; the monitor records the gradient through time, and the exact
    contribution curve, memory horizon and Lyapunov exponent are measured before and after.
    A run whose loss becomes NaN or Inf is recorded as diverged, with where it began.

    Example: gradtrace train adding --model lstm --length 100 --steps 2000 --lr 1e-2 --plot run.png
    """
    from gradtrace.io.files import check_output_file
    from gradtrace.training import TrainConfig, train

    config = TrainConfig.from_dict(
        {
            "task": task, "model": model, "hidden_size": hidden,
            "batch_size": batch, "steps": steps, "optimizer": optimizer, "lr": lr,
            "momentum": momentum, "clip": clip, "max_norm": max_norm, "reverse": reverse,
            "seed": seed, "eval_every": eval_every, "test_size": test_size, "device": device,
            "mnist_path": None if mnist_path is None else str(mnist_path),
        }
        | ({} if length is None else {"length": length})
    )  # fmt: skip
    check_plot(plot)
    if out is not None:
        check_output_file(out, "out", (".json",))
    run = train(config, log=log)
    if out is not None:
        from gradtrace.records import save

        save(run, out)

    def summary() -> str:
        m = run.metrics
        lines = [
            f"{config.label()}: {run.status} after {run.steps} steps in {run.seconds:.1f} s",
            f"best test loss {m['best_test_loss']:.4g} (trivial baseline {m['baseline']:.4g}), "
            f"best {run.metric} {m['best_metric']:.4g}",
            f"memory horizon {_steps(m['horizon_before'])} -> {_steps(m['horizon_after'])} "
            f"(the task needs {m['dependency']:g}); largest raw gradient norm "
            f"{m['max_grad_norm']:.3g}, clipped on {m['clipped_fraction']:.0%} of steps",
        ]
        if run.diverged_step is not None:
            origin = run.nonfinite.note if run.nonfinite is not None else "origin not found"
            lines.append(f"diverged at step {run.diverged_step}: {origin}")
        return "\n".join(lines)

    finish(run, as_json=as_json, summary=summary, plot=plot)


def _steps(value: float) -> str:
    return f"{value:.0f} steps" if math.isfinite(value) else "-"
