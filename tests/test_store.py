"""The results store: one row per run, whole or absent, readable while written, refused whole.

References: the records put in, compared with what comes back (dict equality, and the
stored JSON text byte for byte); `TrainConfig.key()` for the key; SQLite's own file header
for what the store may not touch; pyarrow, pandas and polars reading the same rows back.
"""

from __future__ import annotations

import json
import math
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import sweep_runners
from gradtrace.errors import GradtraceError
from gradtrace.store import ResultsStore, config_key, connect, export_csv, export_parquet
from gradtrace.store.schema import APPLICATION_ID
from gradtrace.sweeps import train_config

TINY = {"task": "adding", "model": "lstm", "length": 10, "hidden_size": 8, "steps": 5}


def record(seed: int = 0, **fields: Any) -> dict[str, Any]:
    """A record as `arithmetic` makes it, for a checked config."""
    return sweep_runners.arithmetic(train_config({**TINY, "seed": seed, **fields}))


def stored(path: Path) -> dict[str, tuple[Any, ...]]:
    """Every row of `runs` as SQLite holds it, by key."""
    db = connect(path)
    rows = {row[0]: row for row in db.execute("SELECT * FROM runs")}
    db.close()
    return rows


def test_a_record_comes_back_as_it_went_in(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    run = record(seed=3, lr=2.0)  # diverged: +inf and NaN among its metrics
    with ResultsStore(path) as store:
        assert store.put(run, sweep="demo")
        key = config_key(run["config"])
        back = store.get(key)
        (row,) = store.rows()
    assert back is not None
    assert back["metrics"] == {
        "final_test_loss": 1 / 40,
        "best_test_loss": 1 / 80,
        "max_grad_norm": "Infinity",  # the project's JSON for non-finite floats
        "steps_to_target": "NaN",
    }
    assert {k: v for k, v in back.items() if k != "metrics"} == {
        k: v for k, v in run.items() if k != "metrics"
    }
    assert (row["key"], row["sweep"], row["status"], row["error"]) == (
        key,
        "demo",
        "diverged",
        None,
    )
    assert row["config"] == run["config"] and row["record"] == back
    assert row["seconds"] == 0.001 and row["finished_at"].endswith("+00:00")


def test_the_key_is_the_train_configs_key() -> None:
    from gradtrace.training import TrainConfig

    config = train_config({**TINY, "seed": 7, "clip": "value"})
    assert config_key(config) == TrainConfig.from_dict(config).key()


def test_a_run_is_never_duplicated_nor_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with ResultsStore(path) as store:
        assert store.put(record(0), sweep="a")
        first = stored(path)
        assert not store.put(record(0), sweep="b")  # same config: ignored
        changed = {**record(0), "status": "failed", "error": "boom"}
        assert not store.put(changed, sweep="b")  # a failure never replaces a finished run
        assert len(store) == 1
    assert stored(path) == first


def test_a_failed_run_gives_way_to_a_later_attempt(tmp_path: Path) -> None:
    run = record(1)
    failed = {"config": run["config"], "status": "failed", "error": "RuntimeError: x"}
    with ResultsStore(tmp_path / "s.sqlite") as store:
        assert store.put(failed, sweep="a")
        assert store.finished_keys() == set()  # a failed run is to be redone
        assert store.put(run, sweep="a")
        assert store.finished_keys() == {config_key(run["config"])}
        assert [r["status"] for r in store.rows()] == ["finished"]


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"status": "running"}, "status of finished, diverged, failed"),
        ({"config": None}, "config as a dict"),
        ({"metrics": [1, 2]}, "metrics as a dict"),
        ({"curves": {"x": {1, 2}}}, "JSON values only"),
    ],
    ids=["status", "config", "metrics", "not-json"],
)
def test_a_malformed_record_is_refused_and_nothing_is_written(
    tmp_path: Path, bad: dict[str, Any], message: str
) -> None:
    with ResultsStore(tmp_path / "s.sqlite") as store:
        with pytest.raises(GradtraceError, match=message):
            store.put({**record(0), **bad}, sweep="a")
        assert len(store) == 0


def _text(path: Path) -> None:
    path.write_text("these are my notes, not a database\n" * 50)


def _foreign(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE recipes (name TEXT)")
    db.commit()
    db.close()


def _truncated(path: Path) -> None:
    with ResultsStore(path) as store:
        for seed in range(40):
            store.put({**record(seed), "padding": "x" * 4000}, sweep="a")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _newer(path: Path) -> None:
    ResultsStore(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()


@pytest.mark.parametrize(
    "make, message",
    [
        (_text, "which SQLite cannot read"),
        (_foreign, "an SQLite database of another program"),
        (_truncated, "corrupt|cannot read"),
        (_newer, "newer gradtrace"),
    ],
    ids=["text", "another-program", "truncated", "newer-version"],
)
@pytest.mark.parametrize("readonly", [False, True], ids=["writer", "reader"])
def test_a_file_that_is_not_a_store_is_refused_and_left_untouched(
    tmp_path: Path, make: Any, message: str, readonly: bool
) -> None:
    path = tmp_path / "f.sqlite"
    make(path)
    data = path.read_bytes()
    with pytest.raises(GradtraceError, match=message) as caught:
        ResultsStore(path, readonly=readonly)
    assert "\n" not in str(caught.value) and "left as it was" in str(caught.value)
    assert path.read_bytes() == data


def test_a_store_in_a_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(GradtraceError, match="must be in an existing folder"):
        ResultsStore(tmp_path / "no" / "s.sqlite")
    with pytest.raises(GradtraceError, match="does not exist"):
        ResultsStore(tmp_path / "s.sqlite", readonly=True)
    assert list(tmp_path.iterdir()) == []


def test_the_file_is_marked_as_a_store_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    ResultsStore(path).close()
    header = path.read_bytes()[:100]  # SQLite's file header: see sqlite.org/fileformat.html
    assert header[:16] == b"SQLite format 3\x00"
    assert (header[18], header[19]) == (2, 2)  # read and write versions 2: WAL
    assert int.from_bytes(header[68:72], "big") == APPLICATION_ID


def test_a_reader_is_not_blocked_by_an_open_write(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with ResultsStore(path) as writer:
        writer.put(record(0), sweep="a")
        writer._db.execute("BEGIN IMMEDIATE")  # a write under way, as in the middle of `put`
        writer._db.execute("DELETE FROM runs")
        started = time.perf_counter()
        with ResultsStore(path, readonly=True) as reader:
            assert len(reader.rows()) == 1  # the last committed state
            with pytest.raises(GradtraceError, match="read-only"):
                reader.put(record(1), sweep="a")
        assert time.perf_counter() - started < 5  # not the 30 s busy timeout
        writer._db.execute("ROLLBACK")


def flat(path: Path) -> Any:
    import pandas as pd

    return pd.read_sql("select * from runs_flat order by seed", connect(path))


def test_a_store_appears_whole_to_a_reader_polling_for_it(tmp_path: Path) -> None:
    import threading

    def first_look(path: Path, seen: list[str]) -> None:
        """Open the store the moment its file exists (or after 30 s, if it never does)."""
        deadline = time.monotonic() + 30
        while not path.exists() and time.monotonic() < deadline:
            pass
        try:
            connect(path).close()
            seen.append("whole")
        except GradtraceError as error:
            seen.append(str(error))

    # Before stores were made in a temporary file and linked into place, a reader that opened
    # the file as soon as it existed found it empty in 197 of 200 such races.
    for i in range(50):
        path, seen = tmp_path / f"race{i}.sqlite", []
        reader = threading.Thread(target=first_look, args=(path, seen))
        reader.start()
        ResultsStore(path).close()
        reader.join()
        assert seen == ["whole"], seen
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file is left behind


def test_runs_flat_has_a_column_per_config_field_and_metric(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with ResultsStore(path) as store:
        store.put(record(0), sweep="a")
        store.put(record(1, lr=2.0), sweep="a")
        clash = record(2)
        store.put({**clash, "metrics": {**clash["metrics"], "seed": 5.0}}, sweep="a")
    frame = flat(path)
    assert list(frame["seed"]) == [0, 1, 2] and list(frame["lr"]) == [0.001, 2.0, 0.001]
    assert list(frame["status"]) == ["finished", "diverged", "finished"]
    assert frame["final_test_loss"].tolist() == [1 / 10, 1 / 20, 1 / 30]
    assert frame["max_grad_norm"].tolist() == [1.0, math.inf, 1.0]  # "Infinity" as a number
    assert frame["steps_to_target"].isna().all()  # "NaN" as NULL
    assert frame["metric_seed"].tolist()[2] == 5.0  # a metric named like a field
    assert set(frame.columns) >= set(TINY) | {"key", "sweep", "finished_at", "error"}


def test_polars_reads_runs_flat_and_curves(tmp_path: Path) -> None:
    pl = pytest.importorskip("polars")
    path = tmp_path / "s.sqlite"
    with ResultsStore(path) as store:
        for seed in range(3):
            store.put(record(seed), sweep="a")
    runs = pl.read_database("select * from runs_flat order by seed", connect(path))
    assert runs["best_test_loss"].to_list() == [1 / 20, 1 / 40, 1 / 60]
    curves = pl.read_database(
        "select * from curves where name = 'test_loss' order by key, i", connect(path)
    )
    want = {config_key(record(s)["config"]): record(s)["curves"]["test_loss"] for s in range(3)}
    got = {k: g["value"].to_list() for (k,), g in curves.group_by("key", maintain_order=True)}
    assert got == want


def test_parquet_export_reads_back_as_the_rows(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "s.sqlite"
    with ResultsStore(path) as store:
        for seed in range(3):
            store.put(record(seed, lr=2.0 if seed == 1 else 0.001), sweep="a")
        rows = store.rows()
    out = export_parquet(path, tmp_path / "runs.parquet")
    table = pq.read_table(out).to_pylist()
    assert [t["key"] for t in table] == [r["key"] for r in rows]
    for row, back in zip(rows, table, strict=True):
        for field in ("sweep", "status", "seconds", "finished_at", "error"):
            assert back[field] == row[field]
        for name, value in row["config"].items():
            assert back[name] == (int(value) if isinstance(value, bool) else value)
        for name, value in row["metrics"].items():
            want = {"Infinity": math.inf, "NaN": None}.get(value, value)
            assert back[name] == want
    frame = flat(path)
    assert list(frame.columns) == pq.read_schema(out).names


def test_csv_export_has_a_header_and_a_line_per_run(tmp_path: Path) -> None:
    import csv

    path = tmp_path / "s.sqlite"
    with ResultsStore(path) as store:
        store.put(record(0), sweep="a")
        store.put(record(1), sweep="a")
    out = export_csv(path, tmp_path / "runs.csv")
    with out.open() as f:
        lines = list(csv.DictReader(f))
    assert [float(line["final_test_loss"]) for line in lines] == [1 / 10, 1 / 20]
    assert [line["model"] for line in lines] == ["lstm", "lstm"]


def test_parquet_without_pyarrow_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.sqlite"
    ResultsStore(path).close()
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    with pytest.raises(GradtraceError, match=r"pip install 'gradtrace\[parquet\]'"):
        export_parquet(path, tmp_path / "runs.parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.sqlite"]


def test_a_records_json_is_stored_strict(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with ResultsStore(path) as store:
        store.put(record(0, lr=2.0), sweep="a")
    (row,) = stored(path).values()
    text = row[-1]
    json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in the stored JSON"))
