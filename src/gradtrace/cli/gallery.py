"""`gradtrace demo`: the lecture gallery that `make demo` runs."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Annotated

import typer


def demo(
    out: Annotated[Path, typer.Option(help="Folder for the figures and JSON.")] = Path("out/demo"),
) -> None:
    """Reproduce the lectures' examples as figures and JSON records in one folder.

    Example: gradtrace demo --out out/demo
    """
    import sys

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from gradtrace.gallery import TOUR_STOPS, run_gallery

    lines = run_gallery(out)
    first = next(lines)  # the generator checks `out` before it yields anything
    # A bar only on a terminal; each line then prints above it. Piped output stays plain lines.
    bar = Progress(
        TextColumn("gallery"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=Console(),
        transient=True,
        disable=not sys.stdout.isatty(),
    )
    with bar:
        task = bar.add_task("gallery", total=TOUR_STOPS)
        for line in itertools.chain([first], lines):
            if bar.disable:
                typer.echo(line)
            else:
                bar.console.print(line, markup=False, highlight=False, soft_wrap=True)
            bar.advance(task)
