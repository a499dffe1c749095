"""The results store: one SQLite file holding every run of a sweep, one row per run.

    ResultsStore    open (or create) a store; `put` a run's record, `finished_keys`, `rows`,
                    `get` (`results.py`)
    connect         a read-only sqlite3 connection for pandas, polars or SQL (`results.py`)
    config_key      a run's key: the hash of its config (`results.py`)
    export_parquet  the `runs_flat` view as Parquet (the `parquet` extra), `export_csv` as CSV
                    (`export.py`)

The schema (`schema.py`): a table `runs` (key, sweep, status, seconds, finished_at, error, and
config, metrics and record as JSON text), a view `runs_flat` with each config field and each
metric as its own column, and a view `curves` with one row (key, name, i, value) per point of
every curve of every run. Read them while a sweep writes:

    import pandas as pd, polars as pl
    from gradtrace.store import connect
    runs = pd.read_sql("select * from runs_flat", connect("sweep.sqlite"))
    runs = pl.read_database("select * from runs_flat", connect("sweep.sqlite"))
    loss = pd.read_sql("select * from curves where name = 'test_loss'", connect("sweep.sqlite"))

(`sqlite3.connect("file:sweep.sqlite?mode=ro", uri=True)` works as well as `connect`.)
"""

from gradtrace.store.export import export_csv, export_parquet
from gradtrace.store.results import ResultsStore, config_key, connect
from gradtrace.store.schema import STATUSES

__all__ = ["STATUSES", "ResultsStore", "config_key", "connect", "export_csv", "export_parquet"]
