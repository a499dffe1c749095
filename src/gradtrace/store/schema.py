"""The store's tables and views, as SQL, and the one check that a file is a gradtrace store.

A store is an SQLite file marked by `PRAGMA application_id` (APPLICATION_ID, "gtrs") and
`PRAGMA user_version` (VERSION). It holds:

    runs          one row per run, keyed by the hash of its config (see `results.config_key`):
                  key, sweep, status, seconds, finished_at, error, and the config, the metrics
                  and the whole record as JSON text
    flat_columns  the config fields and metric names seen so far, in order of first sight:
                  what `runs_flat` is built from
    runs_flat     (view) the columns of `runs` without the JSON, and each config field and
                  metric as a column of its own
    curves        (view) one row per point of every curve: key, name, i, value

JSON text keeps the project's convention (non-finite floats are "Infinity", "-Infinity",
"NaN"); the views turn those into SQL numbers: +-Infinity into REAL infinities, and NaN into
NULL (SQLite has no NaN; pandas reads NULL in a float column as NaN).
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from gradtrace.errors import GradtraceError

APPLICATION_ID = 0x67747273  # "gtrs": gradtrace results store
VERSION = 1
STATUSES = ("finished", "diverged", "failed")
FIXED_COLUMNS = ("key", "sweep", "status", "seconds", "finished_at", "error")
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")  # a config field or metric that gets a column


def _number(expr: str) -> str:
    """SQL that reads a JSON number of the project's convention as an SQL number."""
    return (
        f"CASE {expr} WHEN 'Infinity' THEN 9e999 WHEN '-Infinity' THEN -9e999 "
        f"WHEN 'NaN' THEN NULL ELSE {expr} END"
    )


TABLES = f"""
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,
    sweep TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ({", ".join(repr(s) for s in STATUSES)})),
    seconds REAL,
    finished_at TEXT NOT NULL,
    error TEXT,
    config TEXT NOT NULL CHECK (json_valid(config)),
    metrics TEXT NOT NULL CHECK (json_valid(metrics)),
    record TEXT NOT NULL CHECK (json_valid(record))
);
CREATE TABLE IF NOT EXISTS flat_columns (
    source TEXT NOT NULL CHECK (source IN ('config', 'metrics')),
    name TEXT NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (source, name)
);
CREATE VIEW IF NOT EXISTS curves AS
SELECT runs.key AS key, c.key AS name, p.key AS i, {_number("p.atom")} AS value
FROM runs, json_each(runs.record, '$.curves') AS c, json_each(c.value) AS p
WHERE c.type = 'array';
"""


def flat_view(columns: list[tuple[str, str]]) -> str:
    """The `runs_flat` view over `columns`, (source, name) pairs in order.

    A config field takes its own name as its column; a metric too, unless a fixed column or a
    config field already has that name, when it becomes "metric_<name>" (and a config field
    named like a fixed column becomes "config_<name>"). Names that are not identifiers (NAME)
    get no column; they stay in the JSON.
    """
    taken = set(FIXED_COLUMNS)
    parts = list(FIXED_COLUMNS)
    for source, name in sorted(columns, key=lambda c: c[0] != "config"):
        if not NAME.match(name):
            continue
        column = name if name not in taken else f"{source.removesuffix('s')}_{name}"
        if column in taken:  # a metric "metric_x" beside a clashing "x": the first keeps it
            continue
        taken.add(column)
        value = f"json_extract({source}, '$.{name}')"
        parts.append(f'{value if source == "config" else _number(value)} AS "{column}"')
    return "CREATE VIEW runs_flat AS SELECT\n    " + ",\n    ".join(parts) + "\nFROM runs"


def inspect(db: sqlite3.Connection, path: Path, name: str, *, deep: bool) -> bool:
    """Whether the database behind `db` is a gradtrace store (True) or empty (False).

    Args:
        db: A connection to the file at `path`.
        path: The file, for the message.
        name: The argument that named the file, for the message.
        deep: Also run `PRAGMA quick_check` (reads every page; a writer does it once).

    Raises:
        GradtraceError: if the file is not SQLite, is corrupt, is another program's database
            or a store of a newer gradtrace; the file is left as it was.
    """
    start = f"`{name}` must be a gradtrace results store, got {str(path)!r}"
    end = "; the file was left as it was"
    try:
        app = db.execute("PRAGMA application_id").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = db.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]
        verdict = db.execute("PRAGMA quick_check").fetchone()[0] if deep else "ok"
    except sqlite3.DatabaseError as err:
        raise GradtraceError(f"{start}, which SQLite cannot read ({err}){end}") from None
    if app == 0 and tables == 0:
        return False
    if app != APPLICATION_ID:
        raise GradtraceError(f"{start}, which is an SQLite database of another program{end}")
    if version > VERSION:
        raise GradtraceError(
            f"{start}, which was written by a newer gradtrace (store format {version}, this "
            f"one reads up to {VERSION}); upgrade gradtrace{end}"
        )
    if verdict != "ok":
        raise GradtraceError(f"{start}, which is corrupt (SQLite's check: {verdict}){end}")
    return True
