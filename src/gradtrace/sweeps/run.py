"""`run_sweep`: every run of a spec not yet in the store, in parallel, each stored as it ends.

The scheduling process (the caller's) is the store's only writer: each run is written, in one
transaction, as soon as its future completes. Runs already in the store (finished or diverged,
by key) are skipped, so a sweep stopped at any moment, `kill -9` included, resumes where it
stopped: what was committed stays byte for byte, and a run that was under way is redone. A run
whose runner raises is stored as "failed" with the message, and is tried again by the next
sweep; a diverged run is a row like a finished one.
"""

from __future__ import annotations

import os
import pickle
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gradtrace.errors import GradtraceError, check
from gradtrace.progress import progress as progress_bar
from gradtrace.store import ResultsStore
from gradtrace.sweeps.backends import Jobs, Outcome, Runner, import_dask, run_dask, run_local
from gradtrace.sweeps.spec import SweepSpec, Validate, configs_spec

ADDRESS = re.compile(r"[a-z][a-z0-9+.-]*://\S+\Z")  # tcp://host:port, tls://..., ucx://...
SHOWN_FAILURES = 5


@dataclass(frozen=True)
class SweepSummary:
    """What a sweep did.

    Attributes:
        name: The sweep's name.
        store: The store's file.
        total: Runs in the spec.
        skipped: Runs already in the store, not run again.
        finished: Runs that ran to the end this time.
        diverged: Runs whose loss or gradient stopped being finite this time.
        failed: Runs whose runner raised this time (stored with the message, redone next time).
        seconds: Wall-clock time of the sweep.
        failures: (run's axis values, message) of the first `SHOWN_FAILURES` failed runs, in
            the spec's order.
    """

    name: str
    store: str
    total: int
    skipped: int
    finished: int
    diverged: int
    failed: int
    seconds: float
    failures: tuple[tuple[str, str], ...] = ()

    @property
    def ran(self) -> int:
        """Runs made this time, whatever their status."""
        return self.finished + self.diverged + self.failed

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-ready."""
        return {**asdict(self), "failures": [list(f) for f in self.failures]}


def train_runner(config: dict[str, Any]) -> dict[str, Any]:
    """The default runner: `gradtrace.training.run_config`, imported in the worker."""
    from gradtrace.training import run_config

    return run_config(config)


def run_sweep(
    spec: SweepSpec,
    store: ResultsStore | str | Path,
    *,
    workers: int | None = None,
    dask: str | None = None,
    runner: Runner | None = None,
    progress: bool = True,
) -> SweepSummary:
    """Run every run of `spec` that `store` does not hold yet.

    Args:
        spec: The sweep (`load_spec`).
        store: A `ResultsStore`, or the path of one (created when missing).
        workers: Local worker processes, or the LocalCluster's workers for dask="local";
            default one per core (never more than there are runs).
        dask: None for local processes; "local" for a Dask LocalCluster on 127.0.0.1;
            "tcp://host:port" for an existing Dask scheduler (the `dask` extra).
        runner: A module-level function config dict -> record dict, run in the workers
            (so it must be importable there); default `gradtrace.training.run_config`.
        progress: A progress bar on a terminal.

    Returns:
        The `SweepSummary`.

    Raises:
        GradtraceError: on a bad argument, a missing Dask, or a `store` that is not a
            results store, before any run starts.

    Example:
        >>> summary = run_sweep(load_spec("remedies.toml"), "remedies.sqlite", workers=4)
    """
    started = time.perf_counter()
    runner = runner or train_runner
    check_arguments(workers, dask, runner)
    db = store if isinstance(store, ResultsStore) else ResultsStore(store, name="store")
    try:
        done = db.finished_keys()
        jobs: Jobs = [(i, c) for i, c in enumerate(spec.configs) if spec.keys[i] not in done]
        counts = {"finished": 0, "diverged": 0, "failed": 0}
        failed: list[tuple[int, str]] = []  # (run index, message), in the order they end
        with progress_bar(len(jobs), f"sweep {spec.name}", progress) as advance:
            try:
                for i, outcome in _outcomes(jobs, runner, workers, dask):
                    status, error = _store(db, spec, i, outcome)
                    counts[status] += 1
                    if error is not None:
                        failed.append((i, error))
                    advance()
            except KeyboardInterrupt:
                stored = len(spec.configs) - len(jobs) + sum(counts.values())
                raise SweepInterrupted(
                    f"sweep {spec.name} stopped with {stored} of {len(spec.configs)} runs in "
                    f"{db.path}; run it again to resume"
                ) from None
        # in the spec's order, whichever worker finished first
        failures = [(spec.labels[i], error) for i, error in sorted(failed)[:SHOWN_FAILURES]]
        return SweepSummary(
            name=spec.name,
            store=str(db.path),
            total=len(spec.configs),
            skipped=len(spec.configs) - len(jobs),
            seconds=time.perf_counter() - started,
            failures=tuple(failures),
            **counts,
        )
    finally:
        if db is not store:
            db.close()


def run_configs(
    configs: list[dict[str, Any]],
    store: ResultsStore | str | Path,
    *,
    name: str = "sweep",
    workers: int | None = None,
    dask: str | None = None,
    runner: Runner | None = None,
    progress: bool = True,
    validate: Validate | None = None,
) -> SweepSummary:
    """`run_sweep` over a list of configs instead of a spec's grid.

    Every config is checked (and filled in) first, before the store is opened; a config given
    twice is run once.

    Raises:
        GradtraceError: on a bad config (naming its place and field), or as for `run_sweep`.
    """
    spec = configs_spec(configs, name=name, validate=validate)
    return run_sweep(spec, store, workers=workers, dask=dask, runner=runner, progress=progress)


def check_arguments(workers: int | None, dask: str | None, runner: Runner) -> None:
    """Refuse bad `workers`, `dask` or `runner` before anything is created or run."""
    check(
        workers is None
        or (isinstance(workers, int) and not isinstance(workers, bool) and workers >= 1),
        f"`workers` must be a whole number >= 1 or None (one per core), got {workers!r}",
    )
    check(
        dask is None or (isinstance(dask, str) and (dask == "local" or bool(ADDRESS.match(dask)))),
        f"`dask` must be 'local' or a scheduler's address such as 'tcp://127.0.0.1:8786', "
        f"got {dask!r}",
    )
    check(
        workers is None or dask is None or dask == "local",
        f"`workers` sets local processes or a LocalCluster's workers, got workers={workers} "
        f"with the existing scheduler {dask!r}; leave `workers` out",
    )
    if dask is not None:
        import_dask()
    try:
        pickle.dumps(runner)
    except Exception:
        raise GradtraceError(
            f"`runner` must be a module-level function that worker processes can import, got "
            f"{getattr(runner, '__qualname__', runner)!r}"
        ) from None


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep, with what the store holds: every run that finished before it."""


def _outcomes(
    jobs: Jobs, runner: Runner, workers: int | None, dask: str | None
) -> Iterator[tuple[int, Outcome]]:
    if not jobs:
        return iter(())
    count = min(workers or os.cpu_count() or 1, len(jobs))
    if dask is None:
        return run_local(jobs, runner, count)
    return run_dask(jobs, runner, dask, count)


def _store(db: ResultsStore, spec: SweepSpec, i: int, outcome: Outcome) -> tuple[str, str | None]:
    """Write run `i`'s outcome; return its status and, for a failure, the message."""
    config, key = spec.configs[i], spec.keys[i]
    error = outcome.error
    if error is None:
        record = outcome.record
        status = record.get("status") if isinstance(record, dict) else None
        if status in ("finished", "diverged"):
            try:
                db.put(record, sweep=spec.name, key=key)
                return str(status), None
            except GradtraceError as err:
                error = f"the runner's record cannot be stored: {err}"
        else:
            error = f"the runner returned no record with a status finished or diverged: {status!r}"
    failed = {
        "config": config,
        "status": "failed",
        "error": error,
        "seconds": outcome.seconds,
        "metrics": {},
        "curves": {},
    }
    db.put(failed, sweep=spec.name, key=key)
    return "failed", error
