"""Progress bars for long work: shown on a terminal, silent in pipes, logs and tests.

One helper for every loop that can run long (backward passes of `input_sensitivity`, runs of a
sweep): a rich bar on standard error when it is a terminal and the work has more than a few
items, and nothing otherwise, so piped output and JSON stay clean.

Example:
    >>> with progress(3, "rows") as advance:
    ...     for _ in range(3):
    ...         advance()
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

MIN_ITEMS = 8  # fewer items than this finish before a bar would be worth drawing


@contextmanager
def progress(total: int, label: str, enabled: bool = True) -> Iterator[Callable[[], None]]:
    """A bar over `total` items named `label` (none when not `enabled`); yields the function
    that advances it by one."""
    if not enabled or total < MIN_ITEMS or not sys.stderr.isatty():
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    with bar:
        task = bar.add_task(label, total=total)
        yield lambda: bar.advance(task)
