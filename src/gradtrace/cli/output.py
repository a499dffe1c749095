"""What every subcommand shares: the --plot and --json options and how a result goes out.

A command checks its --plot path before any work (`check_plot`), computes one result, and
hands it to `finish`, which draws the figure, then prints either one JSON object or a summary.
JSON is strict: a non-finite number (an exactly zero product's -inf, say) is written as null,
except in trace records, whose lossless codec keeps it as the string "-Infinity" so that
`TraceResult.from_dict` gives back exactly what was traced.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Protocol

import typer

from gradtrace.jsonable import dumps

Plot = Annotated[Path | None, typer.Option("--plot", help="Write a figure (.png, .pdf, .svg).")]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a summary.")]


class Record(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


def check_plot(plot: Path | None) -> None:
    """Refuse a bad --plot path before the work starts, so nothing is computed in vain."""
    if plot is not None:
        from gradtrace.plots import check_figure_path

        check_figure_path(plot)


def finish(
    record: Record,
    *,
    as_json: bool,
    summary: Callable[[], str],
    plot: Path | None = None,
    draw: Callable[[Any, Path], object] | None = None,
) -> None:
    """Draw `record` to `plot` if asked, then print its JSON or its summary."""
    if plot is not None and draw is not None:
        draw(record, plot)
    if as_json:
        typer.echo(dumps(record.to_dict()))
        return
    typer.echo(summary() + (f"\nfigure: {plot}" if plot is not None else ""))
