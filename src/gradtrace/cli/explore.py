"""`gradtrace explore`: the browser explorer, served on this machine until Ctrl+C."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


# The help is rich markup: "\[" keeps the brackets of the pip command from being eaten.
def explore_command(
    runs: Annotated[
        Path | None,
        typer.Option(help="A folder of monitored runs (folders holding monitor.jsonl), read live."),
    ] = None,
    store: Annotated[
        Path | None,
        typer.Option(help="A sweep's results store (.sqlite), read-only while it is written."),
    ] = None,
    port: Annotated[int | None, typer.Option(help="The port; default a free one.")] = None,
    host: Annotated[
        str, typer.Option(help="The address to bind; 127.0.0.1 keeps it on this machine.")
    ] = "127.0.0.1",
    browser: Annotated[
        bool, typer.Option("--browser/--no-browser", help="Open the page in a browser.")
    ] = True,
) -> None:
    r"""Open the explorer: a local page whose panels recompute through the library on every
    change (activations, an RNN through time, depth, dynamics, recorded runs and sweeps).

    It prints its URL; the whole view lives in the address bar, so a view can be shared and a
    reload restores it. It needs the explorer extra: pip install 'gradtrace\[explorer]'.

    Example: gradtrace explore --runs runs/ --store runs/clipping.sqlite --port 8050
    """
    from gradtrace.explorer import RunSources, require_extra, serve

    require_extra()
    sources = RunSources(runs, store)
    serve(sources, host=host, port=port, open_browser=browser, echo=typer.echo)
