"""`ResultsStore`: one SQLite file, one row per run, safe against a kill at any moment.

The file is in WAL mode with a busy timeout and `synchronous=FULL`: a writer never blocks a
reader, a reader never blocks the writer, and a row is either committed whole or absent (each
`put` is one transaction), so a process killed at any moment, `kill -9` included, leaves a
consistent file whose committed rows survive. A row is keyed by the hash of its run's config
(`config_key`) and never duplicated: a second `put` of a finished or diverged run is ignored
(`INSERT ... ON CONFLICT`); only a failed run's row gives way to a later attempt.

Readers open the file read-only (`connect`, or `ResultsStore(path, readonly=True)`), through an
SQLite URI with mode=ro, so that they cannot write, lock out or damage the writer. A new store
appears whole: its schema is written to a temporary file beside it, which is then linked into
place, so a reader polling for the file never finds it empty or half made (`_create`).
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from gradtrace.errors import GradtraceError, check
from gradtrace.io.files import check_output_file
from gradtrace.records.codec import encode_float
from gradtrace.records.training import config_key
from gradtrace.store.schema import (
    APPLICATION_ID,
    STATUSES,
    TABLES,
    VERSION,
    flat_view,
    inspect,
)

BUSY_SECONDS = 30.0  # how long a connection waits for another's lock before giving up
UPSERT = """
INSERT INTO runs (key, sweep, status, seconds, finished_at, error, config, metrics, record)
VALUES (:key, :sweep, :status, :seconds, :finished_at, :error, :config, :metrics, :record)
ON CONFLICT (key) DO UPDATE SET
    sweep = excluded.sweep, status = excluded.status, seconds = excluded.seconds,
    finished_at = excluded.finished_at, error = excluded.error, config = excluded.config,
    metrics = excluded.metrics, record = excluded.record
WHERE runs.status = 'failed'
"""
COLUMNS = (
    "key",
    "sweep",
    "status",
    "seconds",
    "finished_at",
    "error",
    "config",
    "metrics",
    "record",
)


def connect(path: str | Path, name: str = "path") -> sqlite3.Connection:
    """A read-only connection to the store at `path`, for pandas, polars or plain SQL.

    Example:
        >>> import pandas as pd
        >>> runs = pd.read_sql("select * from runs_flat", connect("sweep.sqlite"))

    Raises:
        GradtraceError: if `path` is missing or is not a gradtrace store.
    """
    path = Path(path)
    check(
        path.is_file(),
        f"`{name}` must be an existing gradtrace results store, got {str(path)!r}, which "
        f"{'is a folder' if path.is_dir() else 'does not exist'}",
    )
    db = sqlite3.connect(
        path.resolve().as_uri() + "?mode=ro", uri=True, timeout=BUSY_SECONDS, isolation_level=None
    )
    try:
        check(
            inspect(db, path, name, deep=False),
            f"`{name}` must be a gradtrace results store, got {str(path)!r}, which is empty",
        )
    except BaseException:
        db.close()
        raise
    return db


class ResultsStore:
    """The results of a sweep's runs, in one SQLite file.

    Args:
        path: The store's file; created when missing (a writer's parent folder must exist).
        readonly: Open the file read-only, as a reader beside a running sweep.
        name: The argument that named `path`, for messages.

    Raises:
        GradtraceError: if `path` cannot be written (a writer), is missing (a reader), or is
            not a gradtrace store or is corrupt, which leaves the file as it was.

    Example:
        >>> with ResultsStore("sweep.sqlite") as store:
        ...     store.put(record, sweep="adding-remedies")
        ...     store.finished_keys()
    """

    def __init__(self, path: str | Path, *, readonly: bool = False, name: str = "path") -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._db = connect(self.path, name) if readonly else _open_writer(self.path, name)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (a writer's last close folds the WAL back into the file)."""
        self._db.close()

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM runs").fetchone()[0])

    def finished_keys(self) -> set[str]:
        """The keys of the runs that are done: finished or diverged (a failed run is redone)."""
        rows = self._db.execute("SELECT key FROM runs WHERE status != 'failed'")
        return {key for (key,) in rows}

    def put(self, record: dict[str, Any], *, sweep: str, key: str | None = None) -> bool:
        """Store one run's record, in one transaction.

        Args:
            record: The run's JSON-ready dict (`TrainRun.to_dict()`): "config", "status"
                (finished, diverged or failed), "metrics", "seconds", "curves", and for a
                failed run "error". Non-finite floats are written "Infinity", "-Infinity",
                "NaN".
            sweep: The sweep's name.
            key: The run's key; by default `config_key(record["config"])`.

        Returns:
            Whether the row was written: False when the run was already stored (a failed
            run's row is replaced).

        Raises:
            GradtraceError: if the store is read-only or `record` lacks a field or is not JSON.
        """
        check(not self.readonly, f"the store {str(self.path)!r} was opened read-only")
        row = _row(record, sweep, key)
        with self._transaction():
            self._add_columns([("config", n) for n in record["config"]])
            self._add_columns([("metrics", n) for n in record.get("metrics", {})])
            written = self._db.execute(UPSERT, row).rowcount
        return written == 1

    def rows(self) -> list[dict[str, Any]]:
        """Every run, in the order they finished: key, sweep, status, seconds, finished_at,
        error, and config, metrics and record parsed from their JSON."""
        query = f"SELECT {', '.join(COLUMNS)} FROM runs ORDER BY finished_at, key"
        out = []
        for values in self._db.execute(query):
            row = dict(zip(COLUMNS, values, strict=True))
            for name in ("config", "metrics", "record"):
                row[name] = json.loads(row[name])
            out.append(row)
        return out

    def get(self, key: str) -> dict[str, Any] | None:
        """The whole record of the run with `key`, as it was put; None if there is none."""
        found = self._db.execute("SELECT record FROM runs WHERE key = ?", (key,)).fetchone()
        return None if found is None else json.loads(found[0])

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")  # the write lock now, not half-way through
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _add_columns(self, wanted: list[tuple[str, str]]) -> None:
        """Give `runs_flat` a column for each (source, name) it lacks (inside a transaction)."""
        known = [(s, n) for s, n in self._db.execute("SELECT source, name FROM flat_columns")]
        new = [c for c in dict.fromkeys(wanted) if c not in set(known)]
        if not new:
            return
        self._db.executemany(
            "INSERT INTO flat_columns (source, name, position) VALUES (?, ?, ?)",
            [(s, n, len(known) + i) for i, (s, n) in enumerate(new)],
        )
        self._db.execute("DROP VIEW IF EXISTS runs_flat")
        self._db.execute(flat_view(known + new))


def _schema(db: sqlite3.Connection) -> None:
    """Write a new store's schema, inside the caller's transaction."""
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    db.execute(f"PRAGMA user_version = {VERSION}")
    for statement in TABLES.split(";"):
        if statement.strip():
            db.execute(statement)
    db.execute(flat_view([]))


def _create(path: Path) -> None:
    """A new, empty store at `path`, made whole in a temporary file beside it and linked into
    place; if another writer made `path` meanwhile, its store is kept and this one dropped."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        db = sqlite3.connect(temporary, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            _schema(db)
            db.execute("COMMIT")
        finally:
            db.close()
        try:
            os.link(temporary, path)  # fails, rather than replaces, if `path` exists
        except FileExistsError:
            pass
        except OSError:  # no hard links on this file system
            if not path.exists():
                os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _open_writer(path: Path, name: str) -> sqlite3.Connection:
    """A read-write connection to the store at `path`, created (with its schema) if missing."""
    check_output_file(path, name)
    if not path.exists():
        _create(path)
    elif path.stat().st_size > 0:
        # Judge an existing file read-only first: refusing it must not change one byte.
        probe = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
        try:
            inspect(probe, path, name, deep=True)
        finally:
            probe.close()
    db = sqlite3.connect(path, timeout=BUSY_SECONDS, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")  # a committed run survives a power cut too
        db.execute("BEGIN IMMEDIATE")
        if not inspect(db, path, name, deep=False):  # an empty file given: the schema in it
            _schema(db)
        db.execute("COMMIT")
    except BaseException:
        db.close()
        raise
    return db


def _row(record: Any, sweep: str, key: str | None) -> dict[str, Any]:
    """The columns of `record`'s row, checked and encoded."""
    check(isinstance(record, dict), f"`record` must be a dict, got {type(record).__name__}")
    check(
        isinstance(record.get("config"), dict),
        f"`record` must hold its run's config as a dict under 'config', got "
        f"{type(record.get('config')).__name__}",
    )
    status = record.get("status")
    check(
        status in STATUSES,
        f"`record` must have a status of {', '.join(STATUSES)}, got {status!r}",
    )
    metrics = record.get("metrics", {})
    check(
        isinstance(metrics, dict),
        f"`record` must hold its metrics as a dict, got {type(metrics).__name__}",
    )
    check(isinstance(sweep, str) and sweep != "", f"`sweep` must be a name, got {sweep!r}")
    seconds = record.get("seconds")
    error = record.get("error")
    return {
        "key": config_key(record["config"]) if key is None else key,
        "sweep": sweep,
        "status": status,
        "seconds": float(seconds) if isinstance(seconds, int | float) else None,
        "finished_at": datetime.now(UTC).isoformat(timespec="microseconds"),
        "error": None if error is None else str(error),
        "config": _json(record["config"]),
        "metrics": _json(metrics),
        "record": _json(record),
    }


def _json(value: Any) -> str:
    """Strict JSON of `value`, non-finite floats written the project's way."""
    try:
        return json.dumps(_strict(value), allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as err:
        raise GradtraceError(
            f"`record` must hold JSON values only (numbers, strings, lists, dicts), got {err}"
        ) from None


def _strict(value: Any) -> Any:
    if isinstance(value, float):
        return encode_float(value)
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    return value
