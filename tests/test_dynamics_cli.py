"""`gradtrace map`, `mandelbrot` and `cliff` on a local typer app: JSON numbers against closed
forms, figures written, help with an example, and bad input as one line with exit status 2.

References: the fixed points (1 -+ sqrt(0.4)) / 2 of x^2 + 0.15, escape times of z^2 + c by
hand, the clipping bound lr * eta on every step, and orbits that land exactly on a source.
The JSON is the record's `to_dict()`: tensors as {"dtype", "shape", "data"}.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import gradtrace.cli.main as cli_main
from gradtrace import budgets
from gradtrace.cli import dynamics
from gradtrace.records import MapReport
from gradtrace.records.codec import decode_tensor

COMMANDS = {
    "map": dynamics.map_command,
    "mandelbrot": dynamics.mandelbrot_command,
    "cliff": dynamics.cliff_command,
}


@pytest.fixture
def app() -> typer.Typer:
    local = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    for name, command in COMMANDS.items():
        local.command(name)(command)
    return local


def invoke_json(app: typer.Typer, args: list[str]) -> dict[str, object]:
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_map_json_fixed_points_closed_form(app: typer.Typer) -> None:
    data = invoke_json(app, ["map", "--map", "quadratic", "--param", "0.15", "--x0", "0.5"])
    lower, upper = (1 - math.sqrt(0.4)) / 2, (1 + math.sqrt(0.4)) / 2
    points = data["fixed_points"]
    assert [p["points"][0] for p in points] == pytest.approx([lower, upper], abs=1e-12)
    assert [p["kind"] for p in points] == ["sink", "source"]
    assert data["attractor"]["points"] == pytest.approx([lower], abs=1e-9)
    assert data["format"] == "gradtrace.map_report/1"
    assert MapReport.from_dict(data).attractor is not None


def test_map_summary_says_the_orbit_lands_on_a_source(app: typer.Typer) -> None:
    # x^2 - 2 from 0: 0, -2, 2, 2, ...; 2 is a fixed point with f'(2) = 4, a source.
    args = ["map", "--map", "quadratic", "--param", "-2", "--x0", "0"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "the orbit of x0 lands exactly on the source fixed point 2 (multiplier 4)" in (
        result.stdout
    )
    assert "settles on" not in result.stdout
    data = invoke_json(app, args)
    assert data["attractor"] is None and "source" in data["fate"]


def test_map_json_bifurcation_and_iterates(app: typer.Typer) -> None:
    data = invoke_json(app, ["map", "--iterates", "1,2", "--bifurcation", "2.9:3.1"])
    assert data["iterates"]["orders"] == [1, 2]
    params = data["bifurcation"]["params"]["data"]
    assert params[0] == 2.9 and params[-1] == 3.1


def test_mandelbrot_json_pixels_by_hand(app: typer.Typer) -> None:
    args = ["mandelbrot", "--re", "-1:1", "--im", "-1:1", "--size", "3x3", "--max-iter", "30"]
    data = invoke_json(app, args)
    counts = decode_tensor(data["counts"])  # (H, W) = (3, 3)
    assert counts[1].tolist() == [30, 30, 3]  # c = -1, 0 inside; c = 1 escapes at n = 3


def test_cliff_json_clipping_bounds_every_step(app: typer.Typer) -> None:
    data = invoke_json(app, ["cliff", "--points", "101", "--clip", "0.05", "--lr", "1"])
    assert max(data["clipped"]["step_lengths"]["data"]) <= 0.05 + 1e-12
    assert max(data["plain"]["step_lengths"]["data"]) > 10  # the overshoot


@pytest.mark.slow  # 1-3 s each: matplotlib renders a multi-panel figure
@pytest.mark.parametrize(
    "args",
    [
        ["map", "--steps", "10", "--iterates", "1,2", "--bifurcation", "2.8:4"],
        ["mandelbrot", "--size", "40", "--max-iter", "20"],
        ["cliff", "--points", "101", "--iterations", "10"],
    ],
    ids=["map", "mandelbrot", "cliff"],
)
def test_plot_is_written(app: typer.Typer, tmp_path: Path, args: list[str]) -> None:
    # Smoke test: the command writes a PNG file; the figures were inspected by eye.
    target = tmp_path / "figure.png"
    result = CliRunner().invoke(app, [*args, "--plot", str(target)])
    assert result.exit_code == 0, result.output
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"figure: {target}" in result.stdout


@pytest.mark.parametrize("name", COMMANDS)
def test_help_has_an_example(app: typer.Typer, name: str) -> None:
    result = CliRunner().invoke(app, [name, "--help"])
    assert result.exit_code == 0
    assert f"Example: gradtrace {name}" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["map", "--bifurcation", "3:2"], "`--bifurcation` must be a non-empty range"),
        (["map", "--bifurcation", "3"], "`--bifurcation` must be LO:HI with two numbers"),
        (["map", "--iterates", "1,x"], "`--iterates` must be whole numbers"),
        (["map", "--map", "quadratic", "--param", "1"], "escaped to infinity"),
        (["mandelbrot", "--size", "0x10"], "`--size` must be at least 1x1"),
        (["mandelbrot", "--size", "ten"], "`--size` must be W or WxH"),
        (["mandelbrot", "--re", "1:1"], "`--re` must be a non-empty range"),
        (["cliff", "--bias", "0:0"], "`--bias` must be a non-empty range"),
        (["cliff", "--points", "1"], "`--points` must be at least 2"),
        (["cliff", "--plot", "cliff.jpg"], "`--plot` must end in"),
    ],
    ids=[
        "reversed-bifurcation",
        "one-number-range",
        "bad-iterates",
        "escaping-map",
        "zero-size",
        "word-size",
        "empty-re",
        "empty-bias",
        "one-point",
        "bad-suffix",
    ],
)
def test_bad_input_exits_2_with_one_line(
    app: typer.Typer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    monkeypatch.setattr(cli_main, "app", app)  # the real entry point, on the local commands
    with pytest.raises(SystemExit) as exit_info:
        cli_main.run(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("gradtrace: error: ") and message in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "size"),
    [
        (["mandelbrot", "--size", "100000x100000"], "800 GB of memory"),  # 80 B a pixel
        (["mandelbrot", "--size", "2000x1600", "--max-iter", "100000"], "1.94e+03 s of work"),
    ],
    ids=["memory", "seconds"],
)
def test_oversized_mandelbrot_is_refused_by_the_work_budget(
    app: typer.Typer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    size: str,
) -> None:
    # No fixed pixel cap: the budget (here 6 GB and 300 s) refuses it before allocating.
    monkeypatch.setenv("GRADTRACE_MAX_MEMORY", "6GB")
    monkeypatch.setenv("GRADTRACE_MAX_SECONDS", "300")
    monkeypatch.setattr(cli_main, "app", app)
    with pytest.raises(SystemExit) as exit_info:
        cli_main.run(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("gradtrace: error: this request needs about ") and size in err
    assert "over the budget of" in err
    assert "lower `--max-iter` or the grid `--size`" in err
    assert err.count("\n") == 1


def test_root_max_memory_lowers_the_budget(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # 5000 x 5000 pixels at 80 B each is 2 GB: over a 1 GB budget set on the command line.
    monkeypatch.setenv("GRADTRACE_MAX_MEMORY", "6GB")
    with pytest.raises(SystemExit) as exit_info:
        cli_main.run(["--max-memory", "1GB", "mandelbrot", "--size", "5000x5000"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "needs about 2 GB of memory, over the budget of 1 GB" in err
    assert "lower `--max-iter` or the grid `--size`" in err
    assert "raise the budget with `--max-memory`" in err
    assert budgets.current().memory == 6e9  # the command's budget ends with the command
