"""`run_tour`: every section in the lectures' order, one HTML file, the records beside it.

The order follows the lectures: the sigmoid and its bound (lectures 000 and 004), lecture 000's
checkpoint, lecture 001's bound, lecture 002's depth and matrix powers, lecture 003's dynamics
and remedies, the gated cells. The output folder (and a reproduction folder, when given) is
checked before any work; the page is written atomically, then each record as
OUT/<section>.<name>.json, readable with `gradtrace.load`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch

from gradtrace.errors import check
from gradtrace.io.files import check_output_folder, write_text_atomic
from gradtrace.progress import progress
from gradtrace.records.files import save
from gradtrace.records.reproduce import Reproduction
from gradtrace.tour import bounds, checkpoint, depth, gates, landscape, maps, remedies, sigmoid
from gradtrace.tour.page import Section, esc, render_page

PAGE = "tour.html"
Found = tuple[Reproduction, Path] | None
Builder = Callable[[Found], Section]

# id -> builder, in the order of the tour; the ids are the page's anchors.
SECTIONS: dict[str, Builder] = {
    "sigmoid": lambda _: sigmoid.sigmoid_section(),
    "sigmoid-gradient": lambda _: sigmoid.helper_section(),
    "decay": lambda _: sigmoid.decay_section(),
    "checkpoint-vanishing": lambda _: checkpoint.checkpoint_section("vanishing"),
    "checkpoint-exploding": lambda _: checkpoint.checkpoint_section("exploding"),
    "bound": lambda _: bounds.bound_section(),
    "non-normal": lambda _: bounds.non_normal_section(),
    "depth": lambda _: depth.depth_section(),
    "matrix-power": lambda _: depth.power_section(),
    "univariate": lambda _: maps.univariate_section(),
    "iterated-maps": lambda _: maps.maps_section(),
    "fixed-points": lambda _: maps.fixed_points_section(),
    "mandelbrot": lambda _: landscape.mandelbrot_section(),
    "attractors": lambda _: landscape.attractors_section(),
    "cliff": lambda _: landscape.cliff_section(),
    "remedies": remedies.remedies_section,
    "gated-cells": lambda _: gates.gated_section(),
    "lstm-cell-path": lambda _: gates.cell_path_section(),
}


@dataclass(frozen=True)
class Tour:
    """What `run_tour` wrote.

    Attributes:
        page: The HTML file.
        sections: The sections, in order.
        records: The record files written beside the page.
        seconds: Wall-clock time.
        reproduction: The reproduction folder read, or None (the remedies were trained live).
    """

    page: Path
    sections: tuple[Section, ...]
    records: tuple[Path, ...]
    seconds: float
    reproduction: Path | None


def check_sections(sections: Sequence[str] | None) -> list[str]:
    """The section ids to build, in the tour's order; all of them for None.

    Raises:
        GradtraceError: naming an unknown id and listing the known ones.
    """
    if sections is None:
        return list(SECTIONS)
    for name in sections:
        check(name in SECTIONS, f"`sections` must be ids from {', '.join(SECTIONS)}, got {name!r}")
    check(len(sections) > 0, "`sections` must name at least one section, got none")
    return [name for name in SECTIONS if name in sections]


def run_tour(
    out: str | Path,
    *,
    reproduction: str | Path | None = None,
    sections: Sequence[str] | None = None,
    show_progress: bool = True,
) -> Tour:
    """Build the tour and write OUT/tour.html with every figure inside, and its records.

    Args:
        out: The folder (created if missing).
        reproduction: A `gradtrace reproduce` report folder for the remedies' section; None
            trains two short runs instead.
        sections: Section ids to build (default: all, in order); see `SECTIONS`.
        show_progress: A progress bar on a terminal.

    Returns:
        A `Tour`: the page's path, the sections, the record files.

    Raises:
        GradtraceError: if `out` cannot be written, `reproduction` holds no reproduction, or a
            section id is unknown; all checked before any work.
    """
    started = time.perf_counter()
    folder = check_output_folder(out, "out")
    ids = check_sections(sections)
    found: Found = None
    if reproduction is not None:
        found = (remedies.load_reproduction(reproduction), Path(reproduction))
    built: list[Section] = []
    threads = torch.get_num_threads()
    # Thousands of small tensor operations: one thread avoids the start-up and contention of
    # a pool (the live training runs take half as long on a 2-core machine).
    torch.set_num_threads(1)
    try:
        with progress(len(ids), "tour", show_progress) as advance:
            for name in ids:
                built.append(SECTIONS[name](found))
                advance()
    finally:
        torch.set_num_threads(threads)
    folder.mkdir(parents=True, exist_ok=True)
    seconds = time.perf_counter() - started
    page = write_text_atomic(
        folder / PAGE, render_page(built, intro=_INTRO, footer=_footer(seconds, found))
    )
    written = [
        save(record, folder / f"{s.id}.{name}.json")
        for s in built
        for name, record in s.records.items()
    ]
    for stale in _earlier_records(folder, written):  # the page no longer shows them
        stale.unlink()
    return Tour(
        page,
        tuple(built),
        tuple(written),
        time.perf_counter() - started,
        None if found is None else found[1],
    )


def _earlier_records(folder: Path, written: Sequence[Path]) -> list[Path]:
    """Record files an earlier tour wrote into `folder` (SECTION.NAME.json of a known
    section) that this one did not: a tour of fewer sections left them beside its page."""
    kept = {p.resolve() for p in written}
    return [
        path
        for sid in SECTIONS
        for path in folder.glob(f"{sid}.*.json")
        if path.resolve() not in kept
    ]


_INTRO = (
    "<p>Five lecture notes on vanishing and exploding gradients, followed in their order. Each "
    "stop says what the lecture claims, in our words; what gradtrace measures, with the exact "
    "product of step Jacobians beside the theory; and whether the two agree. Every number on "
    "this page was computed when it was written; the records behind the figures are saved "
    "beside it as JSON (<code>gradtrace.load</code> reads them).</p>"
)


def _footer(seconds: float, found: Found) -> str:
    from gradtrace import __version__

    source = "trained live" if found is None else f"read from {esc(str(found[1]))}"
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"<p>Written by gradtrace {esc(__version__)} on {stamp} in {seconds:.0f} s; the "
        f"remedies' runs were {source}. The page loads nothing from anywhere.</p>"
    )
