"""The runs panels: monitored training runs and a sweep's results, read live.

    runs_panel     which runs and which store the explorer was given
    run_panel      one run's `monitor.jsonl` (written by `gradtrace.monitor`): the heatmap of
                   log10 ||dL/dh_b|| by boundary b and training step for one layer, the global
                   gradient norm and the loss, what clipping did, where a step went non-finite
    sweeps_panel   a page of the store's `runs_flat` view (`gradtrace.store`), sorted by any
                   of its columns

Both sources may be written while the explorer reads them. A log is read incrementally by a
`LogTail` (the only state here): each request parses the lines appended since the last one,
and a last line without its newline (a writer mid-line, or killed) is left for later. The store
is opened read-only for each request (`gradtrace.store.connect`), so the writer is never
blocked and every committed row is seen.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradtrace.errors import GradtraceError, check
from gradtrace.explorer.jsonable import number
from gradtrace.explorer.params import Param, flag, integer, text
from gradtrace.records.base import Record, from_dict
from gradtrace.records.monitor import MonitorRun, MonitorStep
from gradtrace.store import connect

LOG_NAME = "monitor.jsonl"  # what gradtrace.monitor writes in a run's folder
MAX_DEPTH = 3  # run folders are searched this many levels below --runs
MAX_RUNS = 1000
CHUNK_BYTES = 64 * 2**20  # read per request at most; a longer log is read over several

RUNS_PARAMS: tuple[Param, ...] = ()
RUN_PARAMS: tuple[Param, ...] = (
    text("run", "run"),
    text("layer", "layer"),
    integer("last", 1000, 1, 10_000, "recorded steps shown (the latest)"),
)
SWEEPS_PARAMS: tuple[Param, ...] = (
    integer("limit", 200, 1, 1000, "rows"),
    integer("offset", 0, 0, 10**9, "first row"),
    text("order", "sorted by"),
    flag("desc", False, "descending"),
)


class LogTail:
    """The records of one JSON Lines log that may still be growing, read incrementally."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._reset(None)

    def _reset(self, ident: tuple[int, int] | None) -> None:
        self._ident, self._offset, self._lines = ident, 0, 0
        self._records: list[Record] = []

    def read(self) -> tuple[list[Record], bool]:
        """Every complete record so far, and whether a torn last line was left out.

        Raises:
            GradtraceError: if a complete line is not a gradtrace record.
        """
        with self._lock:
            stat = self.path.stat()
            ident = (stat.st_dev, stat.st_ino)
            if ident != self._ident or stat.st_size < self._offset:  # replaced or truncated
                self._reset(ident)
            with self.path.open("rb") as log:
                log.seek(self._offset)
                data = log.read(CHUNK_BYTES)
            cut = data.rfind(b"\n") + 1
            for line in data[:cut].split(b"\n"):
                self._lines += 1
                if line.strip():
                    self._records.append(self._parse(line))
            self._lines -= 1  # the split's last piece is the (empty) text after the newline
            self._offset += cut
            rest = data[cut:]
            if not rest.strip():
                return list(self._records), False
            try:  # a last line may be whole without its newline (load takes it too)
                return [*self._records, from_dict(json.loads(rest))], False
            except (ValueError, GradtraceError):
                return list(self._records), True

    def _parse(self, line: bytes) -> Record:
        try:
            return from_dict(json.loads(line))
        except ValueError as err:
            raise GradtraceError(
                f"line {self._lines} of the `run` log {str(self.path)!r} is not a record "
                f"({str(err).splitlines()[0]})"
            ) from None


@dataclass
class RunSources:
    """What the runs panels read: a folder of monitored runs and a results store, either
    optional, and one `LogTail` per log seen.

    Raises:
        GradtraceError: if `runs` is not a folder or `store` is not a gradtrace store.
    """

    runs: Path | None = None
    store: Path | None = None
    _tails: dict[Path, LogTail] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.runs is not None:
            check(
                self.runs.is_dir(),
                f"`runs` must be a folder holding runs' {LOG_NAME} logs, got {str(self.runs)!r}",
            )
        if self.store is not None:
            connect(self.store, "store").close()  # refuses a missing file or a non-store

    def names(self) -> list[str]:
        """The runs under `runs`: each folder (itself included, as ".") with a monitor log."""
        if self.runs is None:
            return []
        root = self.runs.resolve()
        found = []
        for depth in range(MAX_DEPTH + 1):
            for log in sorted(root.glob("*/" * depth + LOG_NAME)):
                folder = log.resolve().parent
                if log.is_file() and folder.is_relative_to(root):  # no symlink out of --runs
                    found.append(folder.relative_to(root).as_posix())
        return found[:MAX_RUNS]

    def tail(self, name: str) -> LogTail:
        """The reader of run `name`, one of `names()`.

        Raises:
            GradtraceError: naming `run` if it is not one of the runs.
        """
        names = self.names()
        check(self.runs is not None, "`run` needs a folder of runs: start with --runs DIR")
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        check(name in names, f"`run` must be one of the runs ({shown or 'none yet'}), got {name!r}")
        assert self.runs is not None
        path = self.runs.resolve() / name / LOG_NAME
        with self._lock:
            return self._tails.setdefault(path, LogTail(path))


def runs_panel(sources: RunSources) -> dict[str, Any]:
    """The runs found and the store given: {"folder", "runs", "store"}."""
    return {
        "folder": None if sources.runs is None else str(sources.runs),
        "runs": sources.names(),
        "store": None if sources.store is None else str(sources.store),
    }


def last_run(records: list[Record]) -> tuple[MonitorRun | None, list[MonitorStep]]:
    """The header and the steps of the last run in a log (a monitor restarted on the same
    folder appends a new header), steps in order; as `gradtrace.report.monitor.read_run`."""
    starts = [i for i, r in enumerate(records) if isinstance(r, MonitorRun)]
    tail = records[starts[-1] :] if starts else records
    header = tail[0] if starts and isinstance(tail[0], MonitorRun) else None
    steps = [r for r in tail if isinstance(r, MonitorStep)]
    return header, sorted(steps, key=lambda s: s.step)


def _log10(x: float | None) -> float | None:
    if x is None:
        return None
    return math.log10(x) if x > 0 else (-math.inf if x == 0 else math.nan)


def _header(header: MonitorRun) -> dict[str, Any]:
    return {
        "model": header.model,
        "recurrent": list(header.recurrent),
        "schedule": header.schedule,
        "started": header.started,
        "version": header.version,
    }


def _nonfinite(step: MonitorStep) -> dict[str, Any]:
    origin = step.nonfinite
    assert origin is not None
    return {
        "step": step.step,
        "note": origin.note,
        "module": origin.module,
        "time_index": origin.time_index,
    }


def run_summary(
    header: MonitorRun | None, steps: list[MonitorStep], layer: str = ""
) -> dict[str, Any]:
    """What the run panel shows of a run's steps, for `layer` (a profile label; "" the first).

    Returns:
        A JSON-able dict: "steps", "loss", "grad_norm"; "clip" (steps, norm before, max norm,
        whether it acted, warnings); "layers" and "layer"; "heatmap" ("boundaries", "steps",
        "log10_total": one row per step with a profile of the layer, None where a step has no
        such boundary); "recurrent_share" and "initial" (||dL/dh_0||) per row; "nonfinite"
        (step and the origin in words); "warnings"; "header".

    Raises:
        GradtraceError: naming `layer` if no step has a profile of that label.
    """
    labels = list(dict.fromkeys(p.label for s in steps for p in s.profiles))
    check(
        layer == "" or layer in labels,
        f"`layer` must be one of the run's layers ({', '.join(labels) or 'none'}), got {layer!r}",
    )
    chosen = layer or (labels[0] if labels else "")
    rows = [(s.step, p) for s in steps for p in s.profiles if p.label == chosen]
    boundaries = sorted({b for _, p in rows for b in p.boundaries})
    column = {b: i for i, b in enumerate(boundaries)}
    grid: list[list[Any]] = []
    for _, p in rows:
        row: list[Any] = [None] * len(boundaries)
        for b, value in zip(p.boundaries, p.total.tolist(), strict=True):
            row[column[b]] = number(_log10(value))
        grid.append(row)
    clipped = [s for s in steps if s.clip is not None]
    return {
        "header": None if header is None else _header(header),
        "steps": [s.step for s in steps],
        "loss": [number(s.loss) for s in steps],
        "grad_norm": [number(s.grad_norm) for s in steps],
        "clip": {
            "steps": [s.step for s in clipped],
            "norm_before": [number(s.clip.norm_before) for s in clipped if s.clip],
            "max_norm": [number(s.clip.max_norm) for s in clipped if s.clip],
            "acted": [s.clip.acted for s in clipped if s.clip],
            "clipped_fraction": number(clipped[-1].clip.clipped_fraction)
            if clipped and clipped[-1].clip
            else None,
        },
        "layers": labels,
        "layer": chosen,
        "heatmap": {
            "boundaries": boundaries,
            "steps": [step for step, _ in rows],
            "log10_total": grid,
        },
        "recurrent_share": [number(p.mean_recurrent_share) for _, p in rows],
        "initial": [number(p.initial) for _, p in rows],
        "nonfinite": [_nonfinite(s) for s in steps if s.nonfinite is not None],
        "warnings": sorted({w for s in steps for w in s.warnings}),
    }


def run_panel(sources: RunSources, *, run: str, layer: str, last: int) -> dict[str, Any]:
    """The run `run` (empty: the first listed), its latest `last` steps, for `layer`.

    Raises:
        GradtraceError: naming `run` or `layer` when they are not in the folder or the log.
    """
    names = sources.names()
    name = run or (names[0] if names else "")
    records, torn = sources.tail(name).read()
    header, steps = last_run(records)
    recorded = len(steps)
    return {
        "run": name,
        "records": len(records),
        "recorded_steps": recorded,
        "torn_last_line": torn,
        **run_summary(header, steps[-last:], layer),
    }


def _cell(value: Any) -> Any:
    return number(value) if isinstance(value, float) else value


def sweeps_panel(
    sources: RunSources, *, limit: int, offset: int, order: str, desc: bool
) -> dict[str, Any]:
    """A page of the store's `runs_flat` view: {"columns", "rows", "total", "order"}.

    Raises:
        GradtraceError: naming `order` if it is not a column, or `store` if none was given.
    """
    check(sources.store is not None, "`store` was not given: start with --store FILE")
    assert sources.store is not None
    db = connect(sources.store, "store")
    try:
        columns = [d[0] for d in db.execute("SELECT * FROM runs_flat LIMIT 0").description]
        key = order or "finished_at"
        check(
            key in columns,
            f"`order` must be a column of runs_flat ({', '.join(columns)}), got {order!r}",
        )
        quoted = '"' + key.replace('"', '""') + '"'  # an identifier from the view itself
        query = (
            f"SELECT * FROM runs_flat ORDER BY {quoted} {'DESC' if desc else 'ASC'}, key "
            "LIMIT ? OFFSET ?"
        )
        rows = [[_cell(v) for v in row] for row in db.execute(query, (limit, offset))]
        total = int(db.execute("SELECT count(*) FROM runs").fetchone()[0])
    finally:
        db.close()
    return {"columns": columns, "rows": rows, "total": total, "order": key, "offset": offset}
