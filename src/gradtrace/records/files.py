"""Records in files: `save` one as JSON, `append` to a JSON Lines log, `load` either back.

A .json file holds one record; a .jsonl file holds one record per line, the form a training
log grows in. A log cut off in the middle of its last line (a killed process) still reads: every
complete line comes back, and the torn one is left out. Writes of whole files are atomic.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from gradtrace.errors import GradtraceError, check
from gradtrace.io.files import as_path, check_output_file, write_text_atomic
from gradtrace.records.base import Record, from_dict

SUFFIXES = (".json", ".jsonl")


def dumps(record: Record, indent: int | None = None) -> str:
    """The record as strict JSON text (no NaN or Infinity tokens)."""
    return json.dumps(record.to_dict(), indent=indent, allow_nan=False)


def save(record: Record, path: str | Path) -> Path:
    """Write `record` to a .json file atomically; returns the path.

    Raises:
        GradtraceError: if `record` is not a record of a kind or the path cannot be written.
    """
    check(
        isinstance(record, Record) and bool(record.KIND),
        f"`record` must be a gradtrace record, got {type(record).__name__}",
    )
    path = check_output_file(path, "path", (".json",))
    return write_text_atomic(path, dumps(record, indent=1) + "\n")


def append(record: Record, path: str | Path) -> None:
    """Add `record` as one line to a JSON Lines file, creating it if needed.

    The line is written with one call and flushed, so a reader sees whole lines (and at worst a
    torn last one after a crash, which `load` leaves out).
    """
    check(
        isinstance(record, Record) and bool(record.KIND),
        f"`record` must be a gradtrace record, got {type(record).__name__}",
    )
    path = as_path(path)
    with path.open("a", encoding="utf-8") as log:
        log.write(dumps(record) + "\n")
        log.flush()


def _parse(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise GradtraceError(f"{where} is not valid JSON ({err.msg} at {err.pos})") from None


def load(path: str | Path) -> Record | list[Record]:
    """Read a record from a .json file, or the list of records in a .jsonl file.

    Raises:
        GradtraceError: if the file is missing, is not JSON, or holds something other than
            gradtrace records.
    """
    path = as_path(path)
    check(path.is_file(), f"`path` must be an existing .json or .jsonl file, got {str(path)!r}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise GradtraceError(
            f"`path` must be a gradtrace record file (JSON text), got {str(path)!r}, which is "
            "not text"
        ) from None
    if path.suffix != ".jsonl":
        data = _parse(text, f"`path` {str(path)!r}")
        check(
            isinstance(data, dict) and "format" in data,
            f"`path` must be a gradtrace record file, got {str(path)!r}, whose JSON is "
            + ("an object without a 'format' tag" if isinstance(data, dict) else "not an object"),
        )
        return from_dict(data)
    lines = text.split("\n")
    complete, torn = lines[:-1], lines[-1]  # the text after the last newline is unfinished
    records = [
        from_dict(_parse(line, f"line {i + 1} of {str(path)!r}"))
        for i, line in enumerate(complete)
        if line.strip()
    ]
    # A last line without its newline may still be whole; if it was cut off mid-line by a
    # killed writer, it is left out and every complete record is kept.
    with contextlib.suppress(json.JSONDecodeError, GradtraceError):
        if torn.strip():
            records.append(from_dict(json.loads(torn)))
    return records
