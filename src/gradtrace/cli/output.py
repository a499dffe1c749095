"""What every subcommand shares: the --plot and --json options and how a result goes out.

A command checks its --plot path before any work (`check_plot`), computes one record, and
hands it to `finish`, which draws the record's figure, then prints either the record as one
strict JSON object (`gradtrace.records`: non-finite numbers as "Infinity", "-Infinity", "NaN")
or a short summary in words.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from gradtrace.records import Record

Plot = Annotated[Path | None, typer.Option("--plot", help="Write a figure (.png, .pdf, .svg).")]
Json = Annotated[bool, typer.Option("--json", help="Print the record as one JSON object.")]


def reflowed(function: Callable[..., Any]) -> str:
    """A command's help from its docstring, each paragraph one line (rich wraps it to the
    terminal; the docstring's own line breaks would cut it at odd places), paragraphs apart."""
    doc = inspect.getdoc(function) or ""
    return "\n\n".join(" ".join(part.split()) for part in doc.split("\n\n"))


def check_plot(plot: Path | None) -> None:
    """Refuse a bad --plot path before the work starts, so nothing is computed in vain."""
    if plot is not None:
        from gradtrace.plots import check_figure_path

        check_figure_path(plot, "plot")


def finish(
    record: Record,
    *,
    as_json: bool,
    summary: Callable[[], str],
    plot: Path | None = None,
    **options: Any,
) -> None:
    """Draw `record` to `plot` if asked, then print its JSON or its summary."""
    if plot is not None:
        from gradtrace.plots import plot as draw

        draw(record, plot, **options)
    if as_json:
        from gradtrace.records import dumps

        typer.echo(dumps(record))
        return
    typer.echo(summary() + (f"\nfigure: {plot}" if plot is not None else ""))
