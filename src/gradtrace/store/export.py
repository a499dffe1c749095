"""A store's `runs_flat` view as one Parquet or CSV file, for tools that do not speak SQLite.

Both read the store read-only (a sweep may go on writing) and write the file atomically (a
reader never sees half of it). Parquet needs pyarrow, the `parquet` extra.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from gradtrace.errors import GradtraceError
from gradtrace.io.files import check_output_file, write_atomic
from gradtrace.store.results import connect

PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv",)


def flat_table(store_path: str | Path) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The column names and the rows of the store's `runs_flat` view, in the order the runs
    finished."""
    db = connect(store_path, "store_path")
    try:
        cursor = db.execute("SELECT * FROM runs_flat ORDER BY finished_at, key")
        rows = cursor.fetchall()
        names = [d[0] for d in cursor.description]
    finally:
        db.close()
    return names, rows


def export_parquet(store_path: str | Path, out_path: str | Path) -> Path:
    """Write the store's `runs_flat` view (one row per run, a column per config field and
    metric) to the Parquet file `out_path`.

    A column whose values mix kinds that Parquet cannot hold in one type is written as text.

    Example:
        >>> export_parquet("sweep.sqlite", "sweep.parquet")

    Returns:
        `out_path` as a Path.

    Raises:
        GradtraceError: if pyarrow is missing, `store_path` is not a store or `out_path`
            cannot be written.
    """
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise GradtraceError(
            "writing Parquet needs pyarrow, which is not installed: pip install "
            "'gradtrace[parquet]'"
        ) from None
    out = check_output_file(out_path, "out_path", PARQUET_SUFFIXES)
    names, rows = flat_table(store_path)

    def column(values: list[Any]) -> Any:
        try:
            return pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return pa.array([None if v is None else str(v) for v in values], pa.string())

    table = pa.table({n: column([r[i] for r in rows]) for i, n in enumerate(names)})
    return write_atomic(out, lambda tmp: pq.write_table(table, tmp))


def export_csv(store_path: str | Path, out_path: str | Path) -> Path:
    """Write the store's `runs_flat` view to the CSV file `out_path` (a header row, then one
    row per run; NULL as an empty field).

    Returns:
        `out_path` as a Path.

    Raises:
        GradtraceError: if `store_path` is not a store or `out_path` cannot be written.
    """
    out = check_output_file(out_path, "out_path", CSV_SUFFIXES)
    names, rows = flat_table(store_path)

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(names)
            writer.writerows(rows)

    return write_atomic(out, write)
