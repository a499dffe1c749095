"""Where a sweep's runs execute: local worker processes, or a Dask cluster.

Both take the runs as (index, config) pairs and yield (index, Outcome) as each run completes,
in the order they complete; the caller (the scheduling process) writes each one. A worker
calls `execute`, which times the runner and turns an exception into a message, so that a run
that raises is an outcome like any other. The config goes to the runner untouched: the same
config gives the same run on either backend.

    local   `concurrent.futures.ProcessPoolExecutor` on spawned processes (a fresh interpreter:
            no forked torch state), one torch thread each; a worker whose parent is gone
            (the sweep was killed) exits instead of running on; Ctrl-C reaches the sweep
            alone, which ends its workers at once (their runs are redone on resume)
    dask    "local": a `distributed.LocalCluster` on 127.0.0.1 (processes, one thread each),
            closed afterwards; "tcp://host:port": an existing scheduler (the `dask` extra)
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

from gradtrace.errors import GradtraceError

Runner = Callable[[dict[str, Any]], dict[str, Any]]
Jobs = list[tuple[int, dict[str, Any]]]
DASK_MISSING = (
    "running a sweep on Dask needs dask.distributed, which is not installed: pip install "
    "'gradtrace[dask]'"
)
CONNECT_SECONDS = 10.0  # how long to try an existing scheduler's address
PARENT_POLL_SECONDS = 1.0


@dataclass(frozen=True)
class Outcome:
    """What a worker returns: the runner's record, or the error it raised; and the time."""

    record: Any
    error: str | None
    seconds: float


def describe(err: BaseException) -> str:
    """An exception in one line: its type and the first line of its message."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else 'no message'}"


def execute(runner: Runner, config: dict[str, Any]) -> Outcome:
    """Run `runner(config)` in a worker: its record, or the message of what it raised."""
    start = time.perf_counter()
    try:
        record = runner(config)
    except Exception as err:  # a failed run is a row of the store, not the end of the sweep
        return Outcome(None, describe(err), time.perf_counter() - start)
    return Outcome(record, None, time.perf_counter() - start)


def execute_one_thread(runner: Runner, config: dict[str, Any]) -> Outcome:
    """`execute` on one torch thread (a Dask worker has no initializer of ours)."""
    _one_thread()
    return execute(runner, config)


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)  # workers share the cores: one thread each, no oversubscription


def _start_worker(parent: int) -> None:
    """A local worker's initializer: one torch thread, Ctrl-C left to the sweep (which stops
    its workers itself), and exit when the sweep is gone."""
    _one_thread()
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)  # the sweep was killed: its runs will be redone on restart

    threading.Thread(target=watch, daemon=True, name="gradtrace-parent-watch").start()


def run_local(jobs: Jobs, runner: Runner, workers: int) -> Iterator[tuple[int, Outcome]]:
    """Run `jobs` on `workers` local processes; yield (index, outcome) as each completes."""
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(os.getpid(),),
    )
    try:
        futures = {pool.submit(execute, runner, config): i for i, config in jobs}
        for future in as_completed(futures):
            yield futures[future], _result(future)
    except BaseException:  # Ctrl-C, or the caller stopped: the runs under way are redone
        _stop(pool)  # on resume, so the workers stop now rather than finish them
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel the runs not started and end the workers of `pool` at once."""
    pool.shutdown(wait=False, cancel_futures=True)
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()


def import_dask() -> Any:
    """The `distributed` module, or the sentence that says how to install it."""
    try:
        import distributed
    except ImportError:
        raise GradtraceError(DASK_MISSING) from None
    return distributed


def run_dask(
    jobs: Jobs, runner: Runner, address: str, workers: int
) -> Iterator[tuple[int, Outcome]]:
    """Run `jobs` on Dask: a LocalCluster of `workers` processes when `address` is "local",
    else the scheduler at `address`; yield (index, outcome) as each completes."""
    distributed = import_dask()
    cluster = None
    if address == "local":
        cluster = distributed.LocalCluster(
            host="127.0.0.1",
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        )
        client = distributed.Client(cluster)
    else:
        try:
            client = distributed.Client(address, timeout=CONNECT_SECONDS)
        except (OSError, TimeoutError) as err:
            raise GradtraceError(
                f"`dask` must be the address of a running Dask scheduler, got {address!r}, "
                f"which did not answer within {CONNECT_SECONDS:g} s ({describe(err)})"
            ) from None
    futures = []
    try:
        index = {}
        for i, config in jobs:
            future = client.submit(execute_one_thread, runner, config, pure=False)
            index[future.key] = i
            futures.append(future)
        for future in distributed.as_completed(futures):
            yield index[future.key], _result(future)
    finally:
        client.cancel(futures)
        client.close()
        if cluster is not None:
            cluster.close()


def _result(future: Any) -> Outcome:
    """A future's outcome; a worker that died or a run that could not be sent is a failure."""
    try:
        outcome = future.result()
    except Exception as err:
        return Outcome(None, describe(err), 0.0)
    return outcome if isinstance(outcome, Outcome) else Outcome(None, repr(outcome), 0.0)
