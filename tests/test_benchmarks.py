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


def test_interleaved_best_times_call_each_side_once_a_round() -> None:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from common import best_times
    finally:
        sys.path.remove(str(BENCHMARKS))
    calls: list[str] = []
    times = best_times([lambda: calls.append("a"), lambda: calls.append("b")], 3)
    assert calls == ["a", "b"] * 4  # a warm-up each, then three rounds in turn
    assert len(times) == 2 and all(t >= 0 for t in times)
