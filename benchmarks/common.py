"""What the benchmark scripts share: best-of timing (interleaved for ratios), the thread
settings they run under, and the peak memory of a fresh process."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import torch

PEAK = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
    "stdout=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Best wall time of `repeats` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def best_times(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Best wall time of each of `fns` over `repeats` rounds that call them in turn, after one
    warm-up call each: a slow spell of a shared machine falls on every function of a ratio
    alike, not on whichever ran during it."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, spent in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - start)
    return [min(spent) for spent in times]


def thread_settings(spec: str, what: str = "") -> Iterator[int]:
    """Run the loop body once per setting of "default,1" (torch's own count, one thread),
    printing a header; the thread count is put back afterwards."""
    default = torch.get_num_threads()
    try:
        for setting in spec.split(","):
            threads = default if setting == "default" else int(setting)
            torch.set_num_threads(threads)
            print(f"== torch {torch.__version__}, {threads} thread(s) ({setting}){what}")
            yield threads
    finally:
        torch.set_num_threads(default)


def peak_rss_mb(argv: list[str]) -> float:
    """The maximum resident set of a fresh process running `argv`, in MB."""
    done = subprocess.run(
        [sys.executable, "-c", PEAK, *argv], capture_output=True, text=True, check=True
    )
    return int(done.stdout.strip().splitlines()[-1]) / 1024  # ru_maxrss is in KiB on Linux
