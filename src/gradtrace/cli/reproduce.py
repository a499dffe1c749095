"""`gradtrace reproduce`: check the papers' claims about the remedies with runs made here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gradtrace.cli.output import Json


def reproduce_command(
    out: Annotated[Path, typer.Option(help="The report folder (its run store is resumed).")] = Path(
        "out/reproduce"
    ),
    quick: Annotated[bool, typer.Option(help="Only the subset `make test` runs.")] = False,
    full: Annotated[
        bool, typer.Option(help="The papers' longer protocol (for a machine with a GPU).")
    ] = False,
    workers: Annotated[
        int | None, typer.Option(help="Local worker processes; default one per core.")
    ] = None,
    dask: Annotated[
        str | None, typer.Option(help="A Dask scheduler address, or 'local' (127.0.0.1).")
    ] = None,
    as_json: Json = False,
) -> None:
    """Train the remedies on the long-term-dependency tasks and check each published claim.

    Prints a table (claim, paper, measured, pass) and writes it with figures (learning curves,
    contribution curves before and after training, the monitor's through-time profiles) into
    OUT. Exits 1 when a claim fails. The CPU protocol took 3.5 minutes on 2 cores.

    Example: gradtrace reproduce --out out/reproduce
    """
    from gradtrace.errors import GradtraceError
    from gradtrace.reproduce import reproduce

    if quick and full:
        raise GradtraceError("`quick` and `full` exclude each other; choose one protocol")
    protocol = "quick" if quick else ("full" if full else "cpu")
    report = reproduce(out, protocol=protocol, workers=workers, dask=dask)
    if as_json:
        from gradtrace.records import dumps

        typer.echo(dumps(report))
    else:
        typer.echo(report.table())
        done = sum(c.passed for c in report.claims)
        typer.echo(
            f"\n{done} of {len(report.claims)} claims pass ({report.protocol} protocol) in "
            f"{report.seconds:.0f} s; report: {Path(out) / 'table.md'}"
        )
    if not report.passed:
        raise typer.Exit(1)
