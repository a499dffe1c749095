"""`gradtrace demo`: the guided tour that `make demo` runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def demo(
    out: Annotated[Path, typer.Option(help="Folder for the figures and JSON.")] = Path("out/demo"),
) -> None:
    """Reproduce the lectures' examples as figures and JSON in one folder.

    Example: gradtrace demo --out out/demo
    """
    from gradtrace.demo import run_demo

    for line in run_demo(out):
        typer.echo(line)
