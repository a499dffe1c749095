"""The Mandelbrot set: membership, exact escape times of real orbits, and the set's area.

References: orbits of z^2 + c computed by hand, the published area 1.50659 (Förstemann 2012),
and the escape-time counts themselves for the inside fraction.
"""

from __future__ import annotations

import json

import pytest
import torch

import gradtrace
from gradtrace.dynamics.mandelbrot import escape_times, in_mandelbrot, mandelbrot_image
from gradtrace.errors import GradtraceError
from gradtrace.records import EscapeImage


@pytest.mark.parametrize(
    ("c", "inside"),
    [
        (0, True),  # z = 0 forever
        (-1, True),  # 0, -1, 0, -1, ...
        (-2, True),  # 0, -2, 2, 2, ... : |z| = 2 is not beyond the escape radius
        (1, False),  # 0, 1, 2, 5: escapes
        (0.25, True),  # the cusp: z_n increases to 1/2
        (0.26, False),  # just past the cusp
        (1j, True),  # 0, i, -1 + i, -i, -1 + i, ...: a 2-cycle after one step
    ],
    ids=["c=0", "c=-1", "c=-2", "c=1", "cusp", "past-cusp", "c=i"],
)
def test_membership(c: complex, inside: bool) -> None:
    assert in_mandelbrot(c, max_iter=200) is inside


def test_escape_times_of_real_orbits_by_hand() -> None:
    # c = 1: 1, 2, 5 -> n = 3; c = 2: 2, 6 -> n = 2; c = 3: 3 -> n = 1; c = -2.5 -> n = 1.
    c = torch.tensor([1, 2, 3, -2.5, -1], dtype=torch.complex128)
    assert escape_times(c, max_iter=50).tolist() == [3, 2, 1, 1, 50]


def test_area_close_to_published_value() -> None:
    # Area of the set about 1.50659 (Förstemann 2012, pixel counting). A 150 x 150 grid with
    # 100 steps over-counts boundary pixels (it gives 1.528); 3 % covers that.
    image = mandelbrot_image((-2.0, 0.5), (-1.25, 1.25), (150, 150), max_iter=100)
    area = float(image.inside.double().mean()) * 2.5 * 2.5
    assert area == pytest.approx(1.50659, rel=0.03)


def test_grid_layout_rows_are_imaginary_parts() -> None:
    image = mandelbrot_image((-1.0, 1.0), (-1.0, 1.0), (3, 3), max_iter=30)
    assert image.re.tolist() == [-1.0, 0.0, 1.0] and image.im.tolist() == [-1.0, 0.0, 1.0]
    row = image.counts[1].tolist()  # Im c = 0: c = -1, 0, 1
    assert row == [30, 30, 3]
    assert image.counts[2, 1].item() == 30  # c = i, inside
    # c = -1 - i, -i, 1 - i, -1, 0, 1, -1 + i, i, 1 + i: inside are -i, -1, 0 and i.
    assert image.inside.sum().item() == 4
    assert image.inside_fraction == pytest.approx(4 / 9, abs=1e-15)


def test_image_record_round_trips() -> None:
    image = mandelbrot_image((-1.0, 1.0), (-1.0, 1.0), (3, 3), max_iter=30)
    data = json.loads(json.dumps(image.to_dict()))
    assert data["format"] == "gradtrace.mandelbrot/1"
    assert data["counts"]["dtype"] == "int64" and data["counts"]["shape"] == [3, 3]
    assert data["counts"]["data"][3:6] == [30, 30, 3]
    again = EscapeImage.from_dict(data)
    assert again == image and again.counts.dtype == torch.int64


def test_grid_over_the_work_budget_is_refused_before_allocating() -> None:
    # 10^10 pixels hold about 800 GB while they iterate: refused up front, naming the knobs.
    with (
        gradtrace.budget(max_memory="6GB", max_seconds=300),
        pytest.raises(GradtraceError, match=r"over the budget of .*; lower `max_iter` or the grid"),
    ):
        mandelbrot_image(size=(100_000, 100_000))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"re": (0.5, -2.0)}, "`re` range must have lo < hi"),
        ({"im": (1.0, 1.0)}, "`im` range must have lo < hi"),
        ({"size": (0, 10)}, "`size` must be at least 1x1"),
        ({"max_iter": 0}, "`max_iter` must be at least 1"),
    ],
    ids=["reversed-re", "empty-im", "zero-width", "no-iterations"],
)
def test_bad_input_is_refused(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(GradtraceError, match=match):
        mandelbrot_image(**kwargs)  # type: ignore[arg-type]
