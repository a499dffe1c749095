"""The explorer's server: one static page, its scripts, and a JSON endpoint per panel.

    GET /                     the page (static/index.html)
    GET /static/<file>        explorer.js, explorer.css, and Plotly.js from the installed
                              plotly wheel (no CDN: the page works with no network)
    GET /api/schema           every panel's parameters, for the page's controls
    GET /api/<panel>?...      one update: the panel's function of the checked parameters

A malformed parameter gets 400 with {"error": one sentence, "parameter": its name}; an unknown
path 404, a path that tries to leave the static files (`..`, encoded dots or slashes, an
absolute path) 403, both as JSON, and the server goes on. Panel functions are plain `def`s,
so FastAPI runs them in its thread pool; at most one per core computes at a time (the others
wait their turn), and `serve` gives torch one thread, so concurrent requests never
oversubscribe the cores. Requests whose Host is not this machine's are refused (a page
elsewhere cannot read the explorer through DNS rebinding).

The extra `gradtrace[explorer]` brings fastapi, uvicorn and plotly; without them
`require_extra` says so in one sentence.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations (Request)
# at definition time, inside `create_app`, where fastapi is imported.
import importlib
import importlib.resources
import importlib.util
import os
import socket
import sys
import threading
import time
import webbrowser
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradtrace.errors import GradtraceError, check
from gradtrace.explorer.panels_runs import RunSources
from gradtrace.explorer.params import error_body, parse
from gradtrace.explorer.registry import panels, schema

if TYPE_CHECKING:
    from fastapi import FastAPI

STATIC = Path(__file__).parent / "static"
PAGES = {"explorer.js": "text/javascript", "explorer.css": "text/css"}
PLOTLY = "plotly.min.js"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
EXTRA = "pip install 'gradtrace[explorer]'"
_REFUSED = ("..", "%2e", "%2f", "%5c", "\\", "\x00")


def require_extra() -> None:
    """Refuse to start without fastapi, uvicorn and plotly, in one sentence naming the install.

    Raises:
        GradtraceError: naming the missing packages and `pip install 'gradtrace[explorer]'`.
    """
    missing = []
    for name in ("fastapi", "uvicorn", "plotly"):
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a module set to None, or a broken install
            found = False
        missing += [] if found else [name]
    check(
        not missing,
        f"the explorer needs {', '.join(missing)} (the explorer extra), which "
        f"{'is' if len(missing) == 1 else 'are'} not installed: {EXTRA}",
    )


def plotly_js() -> bytes:
    """Plotly.js as the installed plotly wheel ships it (`plotly/package_data`)."""
    source = importlib.resources.files("plotly").joinpath("package_data", PLOTLY)
    check(source.is_file(), f"the plotly package has no {PLOTLY}; reinstall it: {EXTRA}")
    return source.read_bytes()


def refused_path(raw: str) -> bool:
    """Whether a request path tries to leave the static folder (checked before decoding)."""
    lowered = raw.lower()
    return any(bad in lowered for bad in _REFUSED) or "//" in lowered


def create_app(
    sources: RunSources | None = None,
    *,
    hosts: tuple[str, ...] = LOCAL_HOSTS,
    threads: int | None = None,
) -> "FastAPI":
    """The explorer's app, its runs panels reading `sources`.

    Args:
        sources: The folder of monitored runs and the results store, either optional.
        hosts: The Host names a request may carry.
        threads: torch's thread count in each request's worker thread (torch keeps one per
            thread: a worker first used before `torch.set_num_threads` keeps the old count);
            None leaves each worker as it is.

    Raises:
        GradtraceError: without the explorer extra.
    """
    require_extra()
    import torch
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    registry = panels(sources)
    gate = threading.BoundedSemaphore(max(1, os.cpu_count() or 1))
    cache: dict[str, bytes] = {}
    app = FastAPI(title="gradtrace explorer", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(hosts))

    def failure(status: int, message: str, parameter: str | None = None) -> JSONResponse:
        return JSONResponse({"error": message, "parameter": parameter}, status_code=status)

    @app.exception_handler(HTTPException)
    def http_error(request: Request, err: HTTPException) -> JSONResponse:
        words = {404: "there is no such page", 405: "only GET requests are answered"}
        text = words.get(err.status_code, str(err.detail))
        return failure(err.status_code, f"{text}: {request.method} {request.url.path}.")

    @app.get("/")
    def index() -> Response:
        return Response((STATIC / "index.html").read_bytes(), media_type="text/html")

    @app.get("/static/{name:path}")
    def static(name: str, request: Request) -> Response:
        raw = request.scope.get("raw_path", b"").decode("latin-1")
        if refused_path(raw) or refused_path(name) or name.startswith("/"):
            return failure(403, f"the path {raw!r} leaves the explorer's static files.", "path")
        if name == PLOTLY:  # the installed wheel's: it changes only with the package
            if PLOTLY not in cache:
                cache[PLOTLY] = plotly_js()
            body, kind, keep = cache[PLOTLY], "text/javascript", "max-age=86400"
        elif name in PAGES:
            body, kind, keep = (STATIC / name).read_bytes(), PAGES[name], "no-cache"
        else:
            files = ", ".join([*PAGES, PLOTLY])
            return failure(404, f"there is no static file {name!r}; there are {files}.", "path")
        return Response(body, media_type=kind, headers={"Cache-Control": keep})

    @app.get("/api/schema")
    def api_schema() -> JSONResponse:
        return JSONResponse(schema(registry))

    @app.get("/api/{panel}")
    def api(panel: str, request: Request) -> JSONResponse:
        entry = registry.get(panel)
        if entry is None:
            known = ", ".join(registry)
            return failure(404, f"`panel` must be one of {known}, got {panel!r}.", "panel")
        try:
            values = parse(request.query_params.multi_items(), entry.params, panel)
            with gate:
                if threads is not None:
                    torch.set_num_threads(threads)
                result = entry.compute(**values)
            return JSONResponse(result, headers={"Cache-Control": "no-store"})
        except GradtraceError as err:
            return JSONResponse(error_body(err, entry.params), status_code=400)
        except MemoryError:
            return failure(503, f"the {panel} panel ran out of memory; lower its sizes.")
        except Exception as err:  # the last net: the page shows it, the server goes on
            text = str(err).strip().splitlines()
            detail = f"{type(err).__name__}: {text[0] if text else 'no message'}"
            return failure(500, f"the {panel} panel failed ({detail}).")

    return app


def bind(host: str, port: int | None) -> socket.socket:
    """A listening socket on `host`, at `port` or a free port when None.

    Raises:
        GradtraceError: naming `port` if it is out of range or taken, `host` if unknown.
    """
    check(
        port is None or 1 <= port <= 65535,
        f"`port` must be a whole number from 1 to 65535, got {port}",
    )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port or 0))
    except socket.gaierror:
        sock.close()
        raise GradtraceError(f"`host` must be an address of this machine, got {host!r}") from None
    except OSError as err:
        sock.close()
        raise GradtraceError(
            f"`port` {port} on {host} cannot be used ({err.strerror}); choose another, or "
            "leave it out for a free one"
        ) from None
    sock.listen(128)
    return sock


def url_of(sock: socket.socket) -> str:
    """The http URL a listening socket answers at."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def _server(app: "FastAPI") -> Any:
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    return uvicorn.Server(config)


def serve(
    sources: RunSources | None = None,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    open_browser: bool = True,
    threads: int = 1,
    echo: Callable[[str], object] = print,
) -> None:
    """Serve the explorer until interrupted (Ctrl+C), printing its URL.

    Args:
        sources: The runs folder and the store for the runs panels.
        host: The address to bind; 127.0.0.1 keeps the explorer on this machine.
        port: The port; None picks a free one.
        open_browser: Open the page in the default browser.
        threads: torch's thread count for the panels' maths (one per request, as requests
            run side by side).
        echo: Where the URL is written.

    Raises:
        GradtraceError: without the explorer extra, or on a port that cannot be used.
    """
    require_extra()
    import torch

    torch.set_num_threads(threads)
    sock = bind(host, port)
    url = url_of(sock)
    hosts = (*LOCAL_HOSTS, host) if host not in LOCAL_HOSTS else LOCAL_HOSTS
    server = _server(create_app(sources, hosts=hosts, threads=threads))
    echo(f"gradtrace explorer at {url} (Ctrl+C stops it)")
    sys.stdout.flush()
    if open_browser:
        threading.Timer(0.5, webbrowser.open, (url,)).start()
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


@contextmanager
def running(app: "FastAPI", host: str = "127.0.0.1", timeout: float = 10.0) -> Iterator[str]:
    """Serve `app` from a thread of this process on a free port while the block runs.

    Yields:
        The URL, once the server answers.

    Example:
        >>> with running(create_app()) as url:  # doctest: +SKIP
        ...     urllib.request.urlopen(url + "api/activation").read()
    """
    sock = bind(host, None)
    server = _server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        check(
            thread.is_alive() and time.monotonic() < deadline,
            f"the explorer did not start within {timeout:g} s",
        )
        time.sleep(0.01)
    try:
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()
