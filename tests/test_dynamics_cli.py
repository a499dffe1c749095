"""`gradtrace map`, `mandelbrot` and `cliff` on a local typer app: JSON numbers against closed
forms, figures written, help with an example, and bad input as one line with exit status 2."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import gradtrace.cli.main as cli_main
from gradtrace.cli import dynamics

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
    assert [p["stability"] for p in points] == ["sink", "source"]
    assert data["attractor"]["points"] == pytest.approx([lower], abs=1e-9)


def test_map_json_bifurcation_and_iterates(app: typer.Typer) -> None:
    data = invoke_json(app, ["map", "--iterates", "1,2", "--bifurcation", "2.9:3.1"])
    assert data["iterates"]["orders"] == [1, 2]
    assert data["bifurcation"]["params"][0] == 2.9 and data["bifurcation"]["params"][-1] == 3.1


def test_mandelbrot_json_pixels_by_hand(app: typer.Typer) -> None:
    args = ["mandelbrot", "--re", "-1:1", "--im", "-1:1", "--size", "3x3", "--max-iter", "30"]
    data = invoke_json(app, args)
    assert data["counts"][1] == [30, 30, 3]  # c = -1, 0 inside; c = 1 escapes at n = 3


def test_cliff_json_clipping_bounds_every_step(app: typer.Typer) -> None:
    data = invoke_json(app, ["cliff", "--points", "101", "--clip", "0.05", "--lr", "1"])
    assert max(data["clipped"]["step_lengths"]) <= 0.05 + 1e-12
    assert max(data["plain"]["step_lengths"]) > 10  # the overshoot


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
