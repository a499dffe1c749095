"""The Mandelbrot set: the parameters c whose orbit of z_n = z_{n-1}^2 + c from z_0 = 0 stays
bounded.

Once |z_n| > 2 the orbit escapes to infinity (|z_{n+1}| >= |z_n|^2 - |c| > |z_n| when
|z_n| > max(2, |c|), and every point of the set has |c| <= 2), so the escape time
n(c) = min{n : |z_n| > 2} is exact, and a point that has not escaped after `max_iter` steps is
counted as inside. The boundary is where a small change of the parameter switches the orbit
between bounded and escaping: the two-dimensional picture of a gradient cliff.

Precision: complex128; points within about 1/max_iter of the boundary may be misclassified.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gradtrace import budgets
from gradtrace.errors import check
from gradtrace.records.maps import EscapeImage

ESCAPE_RADIUS = 2.0


def escape_times(c: Tensor, max_iter: int = 200) -> Tensor:
    """n(c) = first n with |z_n| > 2 for each entry of complex `c` (`max_iter` if none).

    Escaped points leave the iteration, so nothing overflows. Returns int64 of c's shape.
    """
    check(max_iter >= 1, f"`max_iter` must be at least 1, got {max_iter}")
    c = torch.as_tensor(c, dtype=torch.complex128)
    # Points inside the set iterate all max_iter steps: the worst case is every point inside.
    n = c.numel()
    budgets.require(
        budgets.Work(memory=80.0 * n, flops=12.0 * n * max_iter, steps=8.0 * max_iter), "`max_iter`"
    )
    counts = torch.full((c.numel(),), max_iter, dtype=torch.int64)
    index = torch.arange(c.numel())  # the points still iterating, compacted every step
    c_active = c.flatten()
    z = torch.zeros_like(c_active)
    for n in range(1, max_iter + 1):
        z = z * z + c_active
        escaped = z.abs() > ESCAPE_RADIUS
        counts[index[escaped]] = n
        keep = ~escaped
        index, z, c_active = index[keep], z[keep], c_active[keep]
        if index.numel() == 0:
            break
    return counts.reshape(c.shape)


def in_mandelbrot(c: complex, max_iter: int = 1000) -> bool:
    """Whether the orbit of 0 under z -> z^2 + c stays within |z| <= 2 for `max_iter` steps.

    Example:
        >>> in_mandelbrot(-1), in_mandelbrot(1)
        (True, False)
    """
    return int(escape_times(torch.tensor([complex(c)]), max_iter)[0]) >= max_iter


def mandelbrot_image(
    re: tuple[float, float] = (-2.2, 0.8),
    im: tuple[float, float] = (-1.2, 1.2),
    size: tuple[int, int] = (480, 384),
    max_iter: int = 200,
) -> EscapeImage:
    """Escape-time image over [re_lo, re_hi] x [im_lo, im_hi] with size = (width, height).

    Raises:
        GradtraceError: on an empty range (lo >= hi) or a grid with no points.
    """
    for name, (lo, hi) in (("re", re), ("im", im)):
        check(lo < hi, f"`{name}` range must have lo < hi, got {lo:g}:{hi:g}")
    width, height = size
    check(width >= 1 and height >= 1, f"`size` must be at least 1x1, got {width}x{height}")
    pixels = width * height
    work = budgets.Work(memory=80.0 * pixels, flops=12.0 * pixels * max_iter, steps=8.0 * max_iter)
    budgets.require(work, "`max_iter` or the grid `size`")
    re_axis = torch.linspace(re[0], re[1], width, dtype=torch.float64)
    im_axis = torch.linspace(im[0], im[1], height, dtype=torch.float64)
    c = torch.complex(re_axis.expand(height, width), im_axis.unsqueeze(1).expand(height, width))
    counts = escape_times(c, max_iter)  # (H, W)
    inside = float((counts >= max_iter).double().mean())
    return EscapeImage(re_axis, im_axis, counts, max_iter, inside)
