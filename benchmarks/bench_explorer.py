"""Benchmark of the explorer: a panel update over real HTTP against the panel function called
directly, side by side in one run.

1. The RNN panel at H = 64, T = 200 (tanh, radius:1.1, spectral, 8 Lyapunov exponents): the
   whole update the page asks for (the curve job, the blocks' spectra, the JSON) through a
   real uvicorn server on 127.0.0.1 (target: p95 under 100 ms), beside `rnn_panel` called in
   the same process (the baseline: what the maths costs).
2. The dynamics panels: the iterated map (`map_report`: orbit, fixed points, fate, Lyapunov
   exponent over 5000 steps), the cliff (`cliff_report`, 501 biases, two descents of 40 steps)
   and the basins of a 2-unit RNN (101 x 101 grid).
3. The RNN panel again with 4 clients asking at once (p95 of each request's latency).

Every request has its own seed (or parameter), so nothing is answered from a cache; direct
calls and requests alternate, so a slow spell of a shared machine hits both. Runs with torch's
default thread count and with one thread (what `gradtrace explore` uses: requests run side by
side, one core each). Absolute times vary several-fold on shared machines; read the ratios.

    python benchmarks/bench_explorer.py [--requests 40] [--threads default,1]
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

from common import thread_settings
from gradtrace.explorer import create_app, panels, running
from gradtrace.explorer.params import parse

REGISTRY = panels()


def panel_call(panel: str, query: dict[str, Any]) -> dict[str, Any]:
    """The panel function on checked parameters: what the server computes, without HTTP."""
    entry = REGISTRY[panel]
    return entry.compute(**parse([(k, str(v)) for k, v in query.items()], entry.params, panel))


class Client:
    """One keep-alive HTTP connection to the explorer."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)

    def get(self, panel: str, query: dict[str, Any]) -> bytes:
        self.conn.request("GET", f"/api/{panel}?{urlencode(query)}")
        response = self.conn.getresponse()
        body = response.read()
        assert response.status == 200, body[:300]
        return body

    def close(self) -> None:
        self.conn.close()


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def p95(times: list[float]) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def side_by_side(
    client: Client, panel: str, queries: list[dict[str, Any]]
) -> tuple[list[float], list[float]]:
    """Latencies of each query over HTTP and called directly, alternating; one warm-up each."""
    client.get(panel, queries[0])
    panel_call(panel, queries[0])
    http_times, direct_times = [], []
    for query in queries:
        direct_times.append(timed(lambda q=query: panel_call(panel, q)))
        http_times.append(timed(lambda q=query: client.get(panel, q)))
    return http_times, direct_times


def report(label: str, http_times: list[float], direct_times: list[float], target: str) -> None:
    hm, hp = statistics.median(http_times), p95(http_times)
    dm, dp = statistics.median(direct_times), p95(direct_times)
    print(
        f"    {label:<34} HTTP median {1e3 * hm:6.1f} ms, p95 {1e3 * hp:6.1f} ms | direct "
        f"median {1e3 * dm:6.1f} ms, p95 {1e3 * dp:6.1f} ms | HTTP/direct {hm / dm:4.2f} "
        f"(median), {hp / dp:4.2f} (p95){target}"
    )


RNN = {"hidden_size": 64, "steps": 200, "init": "radius", "scale": 1.1, "lyapunov": 8}


def rnn_queries(n: int) -> list[dict[str, Any]]:
    return [{**RNN, "seed": seed} for seed in range(n)]


def dynamics_queries(n: int) -> dict[str, list[dict[str, Any]]]:
    return {
        "map": [{"map": "logistic", "r": round(2.9 + 1.1 * i / n, 4)} for i in range(n)],
        "cliff": [{"w": round(1.2 + 0.5 * i / n, 4)} for i in range(n)],
        "basins": [{"w12": round(-1 + 2 * i / n, 4)} for i in range(n)],
    }


def concurrent(url: str, clients: int, per_client: int) -> list[float]:
    """Latencies of RNN updates from `clients` connections asking at once."""
    times: list[float] = []
    lock = threading.Lock()

    def work(offset: int) -> None:
        client = Client(url)
        queries = [{**RNN, "seed": 1000 + seed} for seed in range(offset, offset + per_client)]
        mine = [timed(lambda q=q: client.get("rnn", q)) for q in queries]
        client.close()
        with lock:
            times.extend(mine)

    threads = [threading.Thread(target=work, args=(c * per_client,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--threads", default="default,1")
    args = parser.parse_args()
    n = args.requests
    for threads in thread_settings(args.threads, ", float64, server in this process"):
        # torch keeps a thread count per thread: the server's workers are told it too.
        with running(create_app(threads=threads)) as url:
            client = Client(url)
            print("[1] the RNN panel, H = 64, T = 200 (target: HTTP p95 under 100 ms)")
            target = " (target p95 < 100 ms)"
            report("rnn", *side_by_side(client, "rnn", rnn_queries(n)), target)
            print("[2] the dynamics panels")
            for panel, queries in dynamics_queries(max(8, n // 2)).items():
                report(panel, *side_by_side(client, panel, queries), "")
            client.close()
            times = concurrent(url, 4, max(5, n // 4))
            middle = 1e3 * statistics.median(times)
            print(
                f"[3] the RNN panel from 4 clients at once: median {middle:.1f} ms, "
                f"p95 {1e3 * p95(times):.1f} ms over {len(times)} requests"
            )


if __name__ == "__main__":
    main()
