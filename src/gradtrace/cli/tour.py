"""`gradtrace tour` (and its alias `gradtrace demo`, what `make demo` runs): the five lectures
walked through with gradtrace's numbers, written as one self-contained HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DEMO_HELP = (
    "The same as `gradtrace tour`: what `make demo` runs.\n\nExample: gradtrace demo --out out/demo"
)


def tour(
    out: Annotated[
        Path, typer.Option(help="Folder for tour.html and the records beside it.")
    ] = Path("out/tour"),
    reproduction: Annotated[
        Path | None,
        typer.Option(
            help="A `gradtrace reproduce` report folder for the remedies' table and figures. "
            "Default: out/reproduce if it holds reproduction.json, else two short runs live."
        ),
    ] = None,
    sections: Annotated[
        list[str] | None,
        typer.Option("--section", help="Build only this section (repeatable), by its id."),
    ] = None,
) -> None:
    """Walk through the five lectures with gradtrace's own numbers, in one HTML page.

    Each section says what the lecture claims, what gradtrace measures (the exact product of
    step Jacobians beside the theory) and whether they agree. The page embeds every figure and
    fetches nothing; the records it computed are written beside it as JSON. About half a
    minute on 2 cores.

    Example: gradtrace tour --out out/tour
    """
    from gradtrace.tour import find_reproduction, run_tour

    source = reproduction if reproduction is not None else find_reproduction()
    result = run_tour(out, reproduction=source, sections=sections)
    agree = sum(s.agree for s in result.sections)
    typer.echo(
        f"gradtrace tour: {len(result.sections)} sections, {agree} agree and "
        f"{len(result.sections) - agree} disagree with the lectures ({result.seconds:.0f} s; "
        f"remedies {'from ' + str(source) if source is not None else 'trained live'})"
    )
    for s in result.sections:
        typer.echo(f"  {s.mark:<9} {s.title}")
    typer.echo(f"records: {len(result.records)} JSON files in {result.page.parent.resolve()}")
    typer.echo(f"open {result.page.resolve()}")
