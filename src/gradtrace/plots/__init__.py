"""Static figures (matplotlib, Agg backend): presentation only, nothing is computed here.

This package's `__init__` stays free of matplotlib so that a figure path can be checked
before any work starts, without paying for the import.
"""

from __future__ import annotations

from pathlib import Path

from gradtrace.errors import check

SUFFIXES = (".png", ".pdf", ".svg")


def check_figure_path(path: str | Path) -> Path:
    """Refuse a figure path matplotlib cannot write, before any work is done.

    Raises:
        GradtraceError: if the suffix is not .png, .pdf or .svg.
    """
    path = Path(path)
    check(
        path.suffix.lower() in SUFFIXES,
        f"`--plot` must end in {', '.join(SUFFIXES)}, got {str(path)!r}",
    )
    return path
