"""The tour: the five lectures walked through with gradtrace's own numbers, as one HTML page.

`run_tour(out)` writes OUT/tour.html (self-contained: figures as data: URIs, inline style, no
script, nothing fetched) and the records it computed beside it; `gradtrace tour` and its alias
`gradtrace demo` (what `make demo` runs) call it. Each section is built by one module:

    sigmoid      the sigmoid, its derivative and tangent, the helper's argument, 0.25^n
    checkpoint   lecture 000's seed-12345 checkpoint: its curve bug for bug, the true one
    bounds       lecture 001's bound, and the eigenvalue criterion on non-normal matrices
    depth        lecture 002's deep sigmoid net and W^p = V Lambda^p V^-1
    maps         lecture 003's w^(T-1), iterated maps, fixed points
    landscape    the Mandelbrot set, attractors and basins, the cliff with clipping
    remedies     the reproduction's table and figures, or two short training runs
    gates        LSTM and GRU against the vanilla RNN, the LSTM cell path with f = 1, i = 0
    page, embed  the HTML, and figures as data: URIs
"""

from gradtrace.tour.page import Figure, Section
from gradtrace.tour.remedies import find_reproduction, load_reproduction
from gradtrace.tour.run import PAGE, SECTIONS, Tour, check_sections, run_tour

__all__ = [
    "PAGE",
    "SECTIONS",
    "Figure",
    "Section",
    "Tour",
    "check_sections",
    "find_reproduction",
    "load_reproduction",
    "run_tour",
]
