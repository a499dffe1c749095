"""`gradtrace sweep run` and `gradtrace sweep export`: grids of training runs and their store.

A group of two commands rather than `gradtrace sweep SPEC` beside `gradtrace sweep export`: a
command that takes a file and also has subcommands would read `export` as a spec's name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from gradtrace.cli.output import reflowed
from gradtrace.errors import check

FLAGS = {
    "sweep": {
        "spec": "SPEC",
        "store": "--store",
        "store_path": "STORE",
        "workers": "--workers",
        "dask": "--dask",
        "parquet": "--parquet",
        "csv": "--csv",
    }
}

app = typer.Typer(
    name="sweep",
    help="Run grids of training runs into a results store, and export the store.\n\n"
    "Example: gradtrace sweep run remedies.toml --workers 4",
    no_args_is_help=True,
)


def run_command(
    spec: Annotated[
        Path, typer.Argument(help="The sweep's spec (TOML): name, \\[base] and \\[grid].")
    ],
    store: Annotated[
        Path | None,
        typer.Option(help="The results store (SQLite); default NAME.sqlite beside the spec."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Worker processes (or LocalCluster workers); default one per core."),
    ] = None,
    dask: Annotated[
        str | None,
        typer.Option(
            help="Run on Dask: 'local' (a LocalCluster) or a scheduler's tcp://host:port."
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as one JSON object.")
    ] = False,
) -> None:
    """Run every run of a sweep's grid that the store does not hold yet.

    SPEC is a TOML file: `name = "..."`, a \\[base] table of the fields every run shares and
    a \\[grid] table of axes (lists of values), whose every combination is one run. Every run is
    checked before any starts. Each run is stored as it finishes; a sweep stopped at any
    moment resumes where it stopped when run again. Exit status 1 if any run failed.

    Example: gradtrace sweep run remedies.toml --workers 4 --store runs/remedies.sqlite
    """
    from gradtrace.sweeps import load_spec, run_sweep
    from gradtrace.sweeps.run import SweepInterrupted

    sweep = load_spec(spec)
    try:
        summary = run_sweep(
            sweep,
            store if store is not None else sweep.default_store(),
            workers=workers,
            dask=dask,
        )
    except SweepInterrupted as stop:
        typer.echo(f"gradtrace: {stop}", err=True)  # then "interrupted", exit status 130
        raise
    if as_json:
        typer.echo(json.dumps(summary.to_dict()))
    else:
        lines = [
            f"sweep {summary.name}: {summary.total} runs, {summary.ran} ran "
            f"({summary.finished} finished, {summary.diverged} diverged, {summary.failed} "
            f"failed), {summary.skipped} skipped (already in the store), "
            f"{summary.seconds:.1f} s",
            *(f"failed: {label}: {message}" for label, message in summary.failures),
            f"store: {summary.store}",
        ]
        typer.echo("\n".join(lines))
    if summary.failed:
        raise typer.Exit(1)


def export_command(
    store_path: Annotated[Path, typer.Argument(metavar="STORE", help="A results store.")],
    parquet: Annotated[
        Path | None, typer.Option(help="Write the runs as Parquet (the parquet extra).")
    ] = None,
    csv: Annotated[Path | None, typer.Option(help="Write the runs as CSV.")] = None,
) -> None:
    """Write a store's runs, one row each with a column per config field and metric, to
    Parquet or CSV (the store's runs_flat view). Safe while a sweep writes the store.

    Example: gradtrace sweep export runs/remedies.sqlite --parquet remedies.parquet
    """
    from gradtrace.io.files import check_output_file
    from gradtrace.store import export_csv, export_parquet
    from gradtrace.store.export import CSV_SUFFIXES, PARQUET_SUFFIXES

    check(
        parquet is not None or csv is not None,
        "give `parquet` or `csv` (or both): the file to write",
    )
    if parquet is not None:
        check_output_file(parquet, "parquet", PARQUET_SUFFIXES)
    if csv is not None:
        check_output_file(csv, "csv", CSV_SUFFIXES)
    written = []
    if parquet is not None:
        written.append(export_parquet(store_path, parquet))
    if csv is not None:
        written.append(export_csv(store_path, csv))
    typer.echo("\n".join(f"wrote {path}" for path in written))


app.command("run", help=reflowed(run_command))(run_command)
app.command("export", help=reflowed(export_command))(export_command)
