"""Figures as data: URIs, so that the tour's page carries them inside itself.

Two sources: a matplotlib figure the tour draws itself (a comparison no record kind has), and a
record drawn by its one figure function (`gradtrace.plot`), written to a temporary file and read
back. Both are PNGs at a moderate resolution, to keep the page a few megabytes.
"""

from __future__ import annotations

import base64
import io
import tempfile
from pathlib import Path
from typing import Any

from gradtrace.plots import plot
from gradtrace.plots.figure import plt
from gradtrace.records.base import Record
from gradtrace.tour.page import Figure

DPI = 100


def png_uri(data: bytes) -> str:
    """PNG bytes as a data: URI."""
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def figure(fig: Any, caption: str, alt: str) -> Figure:
    """A matplotlib figure, laid out, rendered to PNG, closed, and embedded."""
    buffer = io.BytesIO()
    try:
        fig.tight_layout()
        fig.savefig(buffer, format="png", dpi=DPI)
    finally:
        plt.close(fig)
    return Figure(png_uri(buffer.getvalue()), caption, alt)


def record_figure(record: Record, caption: str, alt: str, **options: Any) -> Figure:
    """A record drawn by `gradtrace.plot` (its kind's one figure), embedded."""
    with tempfile.TemporaryDirectory(prefix="gradtrace-tour-") as folder:
        path = plot(record, Path(folder) / "figure.png", **options)
        return Figure(png_uri(path.read_bytes()), caption, alt)


def file_figure(path: Path, caption: str, alt: str) -> Figure:
    """A PNG file already written (a reproduction's figure), embedded."""
    return Figure(png_uri(path.read_bytes()), caption, alt)
