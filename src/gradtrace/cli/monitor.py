"""`gradtrace monitor`: the report of a monitored training run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gradtrace.cli.output import Json

FLAGS = {"monitor": {"run": "RUN", "out": "--out"}}


def monitor_command(
    run: Annotated[
        Path,
        typer.Argument(help="The run's log folder (holding monitor.jsonl) or the .jsonl file."),
    ],
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for the figures and report.md; default RUN/report."),
    ] = None,
    as_json: Json = False,
) -> None:
    """Turn a monitored run into figures and a verdict in words.

    Heatmap of the gradient through time (boundary by training step), the gradient norm with
    clipping marked, the recurrent share and memory horizon over training, the lag shares, the
    step that went non-finite. Reads a run that is still being written.

    Example: gradtrace monitor runs/exp1 --out runs/exp1/report
    """
    from gradtrace.report.monitor import monitor_report

    folder = out if out is not None else (run if run.is_dir() else run.parent) / "report"
    report = monitor_report(run, folder)
    if as_json:
        from gradtrace.records import dumps

        typer.echo(dumps(report))
        return
    lines = [f"{report.steps} recorded steps ({report.first}..{report.last}) of {report.run}"]
    lines += [f"- {v}" for v in report.verdicts]
    lines += [f"wrote {f}" for f in report.figures]
    typer.echo("\n".join(lines))
