"""Work budgets: a request that would hang or exhaust memory is refused before it allocates.

References: the cost model's own arithmetic (bytes of the tensors a request holds, seconds from
its flops and Python steps) for the unit tests; for the entry points, the requests an audit saw
run past a minute or grow to gigabytes, each of which must now end at once with one sentence
naming the argument (in Python) or the option (on the command line). The CLI cases run in one
child process whose peak resident memory is read back with `resource`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import gradtrace
from gradtrace import budgets
from gradtrace.dynamics import chaos, maps
from gradtrace.dynamics.mandelbrot import escape_times
from gradtrace.errors import GradtraceError


def test_the_cost_of_work_adds_time_and_keeps_the_largest_memory() -> None:
    a = budgets.Work(memory=10.0, flops=budgets.FLOPS, steps=0)
    b = budgets.Work(memory=30.0, flops=0, steps=1 / budgets.STEP_SECONDS)
    total = a + b
    assert (total.memory, total.seconds) == (30.0, pytest.approx(2.0))


def test_a_request_over_the_budget_is_refused_naming_the_argument() -> None:
    with budgets.budget(max_memory="1MB", max_seconds=1.0):
        assert budgets.current().memory == 1e6
        budgets.require(budgets.Work(memory=9e5, flops=1e8), "`n`")  # within both
        with pytest.raises(GradtraceError, match=r"needs about 2 MB of memory.*lower `n`"):
            budgets.require(budgets.Work(memory=2e6), "`n`")
        with pytest.raises(GradtraceError, match=r"about 5 s of work.*`max_seconds`"):
            budgets.require(budgets.Work(flops=5 * budgets.FLOPS), "`n`")
    assert budgets.current().seconds == budgets.DEFAULT_SECONDS  # the block's budget is gone


def test_the_environment_sets_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADTRACE_MAX_MEMORY", "512MiB")
    monkeypatch.setenv("GRADTRACE_MAX_SECONDS", "12")
    assert budgets.current() == budgets.Budget(512 * 2**20, 12.0)
    monkeypatch.setenv("GRADTRACE_MAX_MEMORY", "lots")
    with pytest.raises(GradtraceError, match="`GRADTRACE_MAX_MEMORY` must be a size"):
        budgets.current()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("6GB", 6e9), ("512MiB", 512 * 2**20), ("1.5e3", 1500.0), (2048, 2048.0), ("7 kb", 7e3)],
)
def test_sizes_parse(text: str | float, expected: float) -> None:
    assert budgets.parse_bytes(text) == expected


# Each request an audit saw hang or blow up, as a Python call, and the argument it must name.
PYTHON_CASES: list[tuple[Callable[[], object], str]] = [
    (lambda: gradtrace.depth_profile(layers=100_000), "`layers`"),
    (lambda: gradtrace.curve(hidden_size=2000, steps=100, estimate="exact"), "`hidden_size`"),
    (lambda: gradtrace.curve(hidden_size=20_000, steps=100), "`hidden_size`"),
    (lambda: gradtrace.curve(batch=1_000_000), "`batch`"),
    (lambda: gradtrace.curve(hidden_size=100_000), "`hidden_size`"),
    (lambda: gradtrace.curve(steps=1_000_000_000), "`steps`"),
    (lambda: maps.orbit(maps.get_map("logistic"), 0.2, 1_000_000_000), "`steps`"),
    (lambda: chaos.iterates(maps.get_map("logistic"), (100_000_000,)), "`orders`"),
    (lambda: gradtrace.cliff_report(iterations=1_000_000_000), "`iterations`"),
    (lambda: gradtrace.mandelbrot(max_iter=1_000_000_000), "`max_iter`"),
    (lambda: escape_times(torch.zeros(10, dtype=torch.complex128), 10**12), "`max_iter`"),
    (lambda: chaos.bifurcation("logistic", 2.5, 4.0, transient=10**10), "`transient`"),
]


@pytest.mark.parametrize(("call", "name"), PYTHON_CASES, ids=[n for _, n in PYTHON_CASES])
def test_python_entry_points_refuse_before_allocating(
    call: Callable[[], object], name: str
) -> None:
    with pytest.raises(GradtraceError, match=f"over the budget.*{name}"):
        call()


def test_a_raised_budget_lets_a_request_through() -> None:
    config = gradtrace.analysis.curve.CurveConfig(hidden_size=2000, steps=100, estimate="exact")
    with pytest.raises(GradtraceError):
        budgets.require(config.work(), "`hidden_size`")
    with gradtrace.budget(max_memory="1TB", max_seconds=1e6):
        budgets.require(config.work(), "`hidden_size`")


def test_a_seed_torch_cannot_take_is_refused() -> None:
    with pytest.raises(GradtraceError, match=r"`seed` must be a whole number from 0 to 2\*\*63"):
        gradtrace.curve(seed=10**21)
    with pytest.raises(GradtraceError, match="`seed`"):
        gradtrace.curve(seed=-1)


# The CLI cases of the audit, and the option each message must name.
CLI_CASES = [
    (["mlp", "--layers", "100000"], "`--layers`"),
    (["curve", "--hidden", "2000", "--steps", "100", "--estimate", "exact"], "`--hidden`"),
    (["curve", "--hidden", "20000", "--steps", "100"], "`--hidden`"),
    (["map", "--steps", "1000000000"], "`--steps`"),
    (["map", "--iterates", "100000000"], "`--iterates`"),
    (["cliff", "--iterations", "1000000000"], "`--iterations`"),
    (["mandelbrot", "--max-iter", "1000000000"], "`--max-iter`"),
    (["curve", "--batch", "1000000"], "`--batch`"),
    (["curve", "--hidden", "100000"], "`--hidden`"),
    (["curve", "--steps", "1000000000"], "`--steps`"),
    (["curve", "--seed", "1234567890123456789012"], "`--seed`"),
    (["trace", "--model", "builtins:exit", "--shape", "5,2,3"], "`--model`"),
    (["--max-seconds", "0.001", "curve", "--steps", "5000"], "`--max-seconds`"),
]

CHILD = textwrap.dedent(
    """
    import contextlib, io, json, resource, sys
    from gradtrace.cli.main import run
    results = []
    for argv in json.loads(sys.argv[1]):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                run(argv)
                code = 0
            except SystemExit as done:
                code = done.code
        results.append([code, err.getvalue()])
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"results": results, "peak_mb": peak_kb / 1024}))
    """
)


@pytest.fixture(scope="module")
def cli_results() -> dict[str, object]:
    argvs = [argv for argv, _ in CLI_CASES]
    env = {**os.environ, "GRADTRACE_MAX_MEMORY": "", "GRADTRACE_MAX_SECONDS": ""}
    env = {k: v for k, v in env.items() if v}
    # A hang would show as the timeout: every case is refused before any work starts.
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(argvs)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize("case", range(len(CLI_CASES)), ids=[" ".join(a) for a, _ in CLI_CASES])
def test_cli_refuses_in_one_line_with_exit_2(cli_results: dict[str, object], case: int) -> None:
    results = cli_results["results"]
    assert isinstance(results, list)
    code, err = results[case]
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("gradtrace: error: ")
    assert CLI_CASES[case][1] in err


def test_cli_refusals_stay_small(cli_results: dict[str, object]) -> None:
    peak = cli_results["peak_mb"]
    assert isinstance(peak, float) and peak < 1024  # torch itself is about 250 MB


@pytest.mark.parametrize(
    ("make", "argv", "match"),
    [
        (lambda d: d, ["curve", "--plot", "{}"], "`--plot` must end in"),
        (lambda d: d / "fig.png", ["curve", "--plot", "{}/"], "`--plot` must be a file"),
        (lambda d: d / "no" / "fig.png", ["curve", "--plot", "{}"], "must be in an existing"),
        (lambda d: d / "file.txt", ["demo", "--out", "{}"], "`--out` must be a folder"),
    ],
    ids=["plot-directory-suffix", "plot-directory", "plot-missing-parent", "out-is-a-file"],
)
def test_output_paths_are_checked_before_the_work(
    make: Callable[[Path], Path],
    argv: list[str],
    match: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from gradtrace.cli.main import run

    target = make(tmp_path)
    if target.suffix == ".png" and "no" not in target.parts:
        target.mkdir()  # a directory named like a figure
    if target.suffix == ".txt":
        target.write_text("keep me")
    words = [w.format(target) for w in argv]
    with pytest.raises(SystemExit) as stop:
        run(words)
    assert stop.value.code == 2
    assert match in capsys.readouterr().err
    if target.suffix == ".txt":
        assert target.read_text() == "keep me"
