"""Grids of training runs on local cores or Dask, resumable, into one results store.

    load_spec       a sweep's TOML spec (name, [base], [grid]), every run checked before any
                    runs (`spec.py`); `parse_spec` from a dict, `configs_spec` from a list
    SweepSpec       the checked sweep: its name, configs, keys and labels (`spec.py`)
    run_sweep       every run the store lacks, in parallel, each stored as it ends (`run.py`)
    run_configs     the same for a list of configs (`run.py`)
    SweepSummary    what a sweep did: skipped, finished, diverged, failed (`run.py`)
    run_local       the local process pool, `run_dask` Dask (`backends.py`)

Example:
    >>> from gradtrace.sweeps import load_spec, run_sweep
    >>> spec = load_spec("adding-remedies.toml")
    >>> summary = run_sweep(spec, spec.default_store(), workers=4)
"""

from gradtrace.sweeps.backends import run_dask, run_local
from gradtrace.sweeps.run import (
    SweepSummary,
    check_arguments,
    run_configs,
    run_sweep,
    train_runner,
)
from gradtrace.sweeps.spec import SweepSpec, configs_spec, load_spec, parse_spec, train_config

__all__ = [
    "SweepSpec",
    "SweepSummary",
    "check_arguments",
    "configs_spec",
    "load_spec",
    "parse_spec",
    "run_configs",
    "run_dask",
    "run_local",
    "run_sweep",
    "train_config",
    "train_runner",
]
