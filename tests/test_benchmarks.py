"""The benchmarks' subprocess snippets run: a broken import there only shows at the end of a
long benchmark run, so each snippet is started here with its work left out."""

from __future__ import annotations

import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def test_the_peak_memory_snippet_of_bench_trace_starts() -> None:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import bench_trace
    finally:
        sys.path.remove(str(BENCHMARKS))
    # a fresh process that builds the 2-layer LSTM and imports gradtrace, nothing else
    assert bench_trace.peak_code_mb(bench_trace.BIG_LSTM.format(work="pass")) > 50
