"""`gradtrace map`, `gradtrace mandelbrot` and `gradtrace cliff`: the dynamics lab.

Each command parses its options, calls one function of `gradtrace.dynamics`, and prints a short
summary or one JSON object; `--plot` writes the figure from `gradtrace.plots.dynamics`.
"""

from __future__ import annotations

import math
from typing import Annotated

import typer

from gradtrace.cli.output import Json, Plot, check_plot, finish
from gradtrace.errors import GradtraceError, check


def parse_range(option: str, text: str) -> tuple[float, float]:
    """ "LO:HI" as two finite floats with LO < HI; GradtraceError naming `option` otherwise."""
    try:
        lo, hi = (float(part) for part in text.split(":"))
    except ValueError:
        raise GradtraceError(
            f"`{option}` must be LO:HI with two numbers, got {text!r}, e.g. -2:0.5"
        ) from None
    check(
        math.isfinite(lo) and math.isfinite(hi) and lo < hi,
        f"`{option}` must be a non-empty range LO:HI with LO < HI, got {text!r}",
    )
    return lo, hi


def parse_size(text: str, aspect: float) -> tuple[int, int]:
    """ "W" or "WxH" as pixel counts >= 1; H = W * aspect (square pixels) when only W is given."""
    parts = text.lower().split("x")
    try:
        numbers = [int(part) for part in parts]
    except ValueError:
        numbers = []
    check(
        len(numbers) in (1, 2),
        f"`--size` must be W or WxH with whole numbers, got {text!r}, e.g. 480x384",
    )
    width = numbers[0]
    height = numbers[1] if len(numbers) == 2 else max(1, round(width * aspect))
    check(width >= 1 and height >= 1, f"`--size` must be at least 1x1 pixels, got {text!r}")
    return width, height


def parse_orders(text: str) -> tuple[int, ...]:
    """ "1,2,3,6" as positive whole numbers; GradtraceError naming `--iterates` otherwise."""
    try:
        orders = tuple(int(part) for part in text.split(","))
    except ValueError:
        orders = ()
    check(
        len(orders) > 0 and min(orders) >= 1,
        f"`--iterates` must be whole numbers >= 1 separated by commas, got {text!r}, e.g. 1,2,3,6",
    )
    return orders


def map_command(
    name: Annotated[
        str, typer.Option("--map", help="logistic (r x (1-x)) or quadratic (x^2+c).")
    ] = "logistic",
    param: Annotated[float | None, typer.Option(help="r or c; default 3.5 or 0.15.")] = None,
    x0: Annotated[float, typer.Option(help="Start of the orbit.")] = 0.2,
    steps: Annotated[int, typer.Option(help="Orbit length (cobweb).")] = 40,
    iterates: Annotated[str, typer.Option(help="Compositions f^n to draw.")] = "1,2,3,6",
    bifurcation: Annotated[
        str | None, typer.Option(help="Parameter range LO:HI for a bifurcation diagram.")
    ] = None,
    as_json: Json = False,
    plot: Plot = None,
) -> None:
    """An iterated map: orbit, fixed points and their stability, attractor, Lyapunov exponent.

    Example: gradtrace map --map logistic --param 3.5 --bifurcation 2.5:4 --plot map.png
    """
    orders = parse_orders(iterates)
    span = None if bifurcation is None else parse_range("--bifurcation", bifurcation)
    check_plot(plot)
    from gradtrace.dynamics.chaos import map_report

    report = map_report(name, param, x0=x0, steps=steps, orders=orders, bifurcation_range=span)

    def summary() -> str:
        fixed = ", ".join(
            f"{c.points[0]:.6g} ({c.kind}, f' = {c.multiplier:.4g})" for c in report.fixed_points
        )
        return (
            f"{report.name} map f(x) = {report.formula}, x0 = {x0:g}\n"
            f"fixed points: {fixed or 'none in the window'}\n"
            f"the orbit of x0 {report.fate}\n"
            f"Lyapunov exponent: {report.lyapunov.value:+.5f} per step"
        )

    finish(report, as_json=as_json, summary=summary, plot=plot)


def mandelbrot_command(
    re: Annotated[str, typer.Option("--re", help="Real range LO:HI of c.")] = "-2.2:0.8",
    im: Annotated[str, typer.Option("--im", help="Imaginary range LO:HI of c.")] = "-1.2:1.2",
    size: Annotated[str, typer.Option(help="Pixels W or WxH (square pixels if no H).")] = "480",
    max_iter: Annotated[int, typer.Option(help="Steps before a point counts as inside.")] = 200,
    as_json: Json = False,
    plot: Plot = None,
) -> None:
    """Escape-time image of the Mandelbrot set z <- z^2 + c.

    Example: gradtrace mandelbrot --re -2.2:0.8 --im -1.2:1.2 --size 600x480 --plot m.png
    """
    re_range, im_range = parse_range("--re", re), parse_range("--im", im)
    aspect = (im_range[1] - im_range[0]) / (re_range[1] - re_range[0])
    width, height = parse_size(size, aspect)
    check(max_iter >= 1, f"`max_iter` must be at least 1, got {max_iter}")
    check_plot(plot)
    from gradtrace.dynamics.mandelbrot import mandelbrot_image

    image = mandelbrot_image(re_range, im_range, (width, height), max_iter)

    def summary() -> str:
        inside = float(image.inside.double().mean())
        return (
            f"{width}x{height} grid, Re c in [{re}], Im c in [{im}], {max_iter} steps: "
            f"{100 * inside:.2f}% of the points are inside"
        )

    finish(image, as_json=as_json, summary=summary, plot=plot)


def cliff_command(
    steps: Annotated[int, typer.Option(help="RNN steps T.")] = 20,
    w: Annotated[float, typer.Option(help="Recurrent weight w.")] = 1.5,
    h0: Annotated[float, typer.Option(help="Initial state h_0.")] = 0.5,
    target: Annotated[float, typer.Option(help="Target of h_T in the loss.")] = -0.7,
    bias: Annotated[str, typer.Option(help="Bias range LO:HI of the sweep.")] = "-1.5:1",
    points: Annotated[int, typer.Option(help="Bias values in the sweep.")] = 1001,
    clip: Annotated[float, typer.Option(help="Clipping threshold eta.")] = 0.1,
    lr: Annotated[float, typer.Option(help="Learning rate of the descent.")] = 1.0,
    start: Annotated[float, typer.Option(help="Bias the descents start from.")] = 0.5,
    iterations: Annotated[int, typer.Option(help="Descent iterations.")] = 40,
    as_json: Json = False,
    plot: Plot = None,
) -> None:
    """A gradient cliff of a one-unit tanh RNN, and descent on it with and without clipping.

    Example: gradtrace cliff --steps 20 --w 1.5 --bias -1.5:1 --clip 0.1 --plot cliff.png
    """
    lo, hi = parse_range("--bias", bias)
    check(points >= 2, f"`points` must be at least 2, got {points}")
    check_plot(plot)
    from gradtrace.dynamics.cliff import CliffRNN, cliff_report

    model = CliffRNN(w=w, steps=steps, h0=h0, target=target)
    report = cliff_report(
        model, lo=lo, hi=hi, points=points, start=start, lr=lr, clip=clip, iterations=iterations
    )

    def summary() -> str:
        sweep = report.sweep
        peak = int(sweep.grad.abs().argmax())
        lines = [
            f"h_t = tanh({w:g} h_(t-1) + b), T = {steps}, h_0 = {h0:g}, target {target:g}",
            f"largest |dL/db| = {float(sweep.grad[peak].abs()):.4g} "
            f"at b = {float(sweep.values[peak]):.4g}",
        ]
        for run in (report.plain, report.clipped):
            name = "plain descent" if run.clip is None else f"clipped at {run.clip:g}"
            lines.append(
                f"{name}: longest step {float(run.step_lengths.max()):.4g}, "
                f"final b = {float(run.params[-1]):.4g}, final loss {float(run.losses[-1]):.4g}"
            )
        return "\n".join(lines)

    finish(
        report,
        as_json=as_json,
        summary=summary,
        plot=plot,
    )
