"""The browser explorer: `gradtrace explore`, one local page whose panels recompute through the
library on every change.

    params.py             one spec per control: the one parser of requests (a 4xx naming the
                          parameter), the page's schema, the explorer's caps on one update
    jsonable.py           numbers as the panels send them (non-finite as "Infinity", "NaN")
    panels_activation.py  phi, phi', the tangent at x0, phi'(x0)^n
    panels_rnn.py         c(k) with its bound, W_hh's spectra, verdict, horizon, Lyapunov
    panels_depth.py       per-layer gradient norms of an MLP
    panels_dynamics.py    cobweb and orbit, bifurcations, a 2-unit RNN's basins, the cliff
    panels_runs.py        monitored runs (monitor.jsonl) and a sweep's store, read live
    registry.py           every panel by name: its parameters and its function
    server.py             the FastAPI app, the static-file guard, `serve` and `running`
    static/               index.html, explorer.js, explorer.css (Plotly.js comes from the
                          installed plotly wheel)

Each panel is a plain function from checked parameters to a JSON-able dict, separate from
HTTP, so that it can be called and tested without a server. The server needs the explorer
extra (`pip install 'gradtrace[explorer]'`: fastapi, uvicorn, plotly); the panels do not.

Example:
    >>> from gradtrace.explorer import create_app, running
    >>> with running(create_app()) as url:  # doctest: +SKIP
    ...     print(url)
"""

from gradtrace.explorer.panels_runs import RunSources
from gradtrace.explorer.registry import Panel, panels
from gradtrace.explorer.server import create_app, require_extra, running, serve

__all__ = ["Panel", "RunSources", "create_app", "panels", "require_extra", "running", "serve"]
