"""Tests for the `gradtrace` command: the JSON contract, figures, help, and bad input.

The records printed by `curve --json` and `mlp --json` must be exactly those of the library
functions on the same options or arrays (run_curve, analyse, depth_profile), read back from
the JSON with the records' codec. Every bad input must end with exit status 2 and exactly one
stderr line starting "gradtrace: error: ", with no traceback and without touching files already
written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import typer

from gradtrace import records
from gradtrace.analysis.curve import CurveConfig, analyse, run_curve
from gradtrace.analysis.depth import depth_profile
from gradtrace.cells import RNNWeights
from gradtrace.cli.main import app, run
from gradtrace.records.codec import decode_tensor

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ROOT = Path(__file__).resolve().parents[1]
T, H, I = 15, 4, 3
RADIUS_50 = ["--spectrum", "radius:50"]  # a ReLU RNN that overflows float64 in ~180 steps


def invoke(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the CLI in-process; return (exit status, stdout, stderr)."""
    try:
        run(argv)
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def curve_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    code, out, err = invoke(["curve", "--json", *argv], capsys)
    assert (code, err) == (0, "")
    assert len(out.strip().splitlines()) == 1  # one JSON object on one line
    record = json.loads(out)
    assert isinstance(record, dict)
    return record


def arrays(seed: int = 0) -> dict[str, np.ndarray]:
    r = np.random.default_rng(seed)
    return {
        "W_hh": 0.7 * r.normal(size=(H, H)),
        "W_hx": r.normal(size=(H, I)),
        "b": r.normal(size=H),
        "x": r.normal(size=(T, I)),
        "h0": 0.5 * r.normal(size=H),
        "h": r.normal(size=(T, H)),
    }


def save(path: Path, **changes: Any) -> Path:
    data = {k: v for k, v in {**arrays(), **changes}.items() if v is not None}
    np.savez(path, **data)
    return path


def rnn_of(a: dict[str, np.ndarray], activation: str) -> RNNWeights:
    t = {k: torch.as_tensor(v) for k, v in a.items()}
    return RNNWeights(t["W_hh"], t["W_hx"], t["b"], activation)


# ---------------------------------------------------------------- the JSON contract


def test_curve_json_holds_the_contract_and_the_library_numbers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--activation", "sigmoid", "--hidden", "5", "--steps", "20", "--seed", "3"]
    argv += ["--spectrum", "eig-uniform:0:4", "--metric", "maxabs"]
    record = curve_json(argv, capsys)
    assert record["format"] == "gradtrace.gradient_flow/1"
    assert record["hidden_size"] == 5
    assert record["metric"] == "maxabs"
    assert record["log10_norm"]["shape"] == [1, 20]
    assert all(isinstance(v, float) for v in record["log10_norm"]["data"])
    assert record["verdict"] in ("vanishing", "exploding", "neutral", "transient growth")
    for key in ("rate_per_step", "horizon", "lyapunov_max"):
        assert isinstance(record[key], int | float)
    theory = record["theory"]
    assert theory["gamma"] == 0.25
    assert theory["spectral_radius"] < 4  # eigenvalues drawn in [0, 4)
    assert theory["sigma_max"] >= theory["spectral_radius"]
    assert theory["bound_log10"]["shape"] == [20]
    config = CurveConfig(
        activation="sigmoid",
        hidden_size=5,
        steps=20,
        seed=3,
        spectrum="eig-uniform:0:4",
        metric="maxabs",
    )
    assert records.from_dict(record) == run_curve(config)


def test_curve_json_with_a_batch_has_b_rows_of_t(capsys: pytest.CaptureFixture[str]) -> None:
    record = curve_json(["--hidden", "6", "--steps", "9", "--batch", "3"], capsys)
    assert record["log10_norm"]["shape"] == [3, 9]
    assert decode_tensor(record["log10_norm"]).shape == (3, 9)
    assert record["theory"]["bound_log10"]["shape"] == [9]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_curve_json_for_gated_cells(cell: str, capsys: pytest.CaptureFixture[str]) -> None:
    record = curve_json(["--cell", cell, "--hidden", "4", "--steps", "10"], capsys)
    assert record["theory"]["gamma"] is None
    assert record["theory"]["bound"] == "prod_t ||J_t||_2"
    assert (record["cell_path_log10"] is not None) == (cell == "lstm")
    curve = decode_tensor(record["log10_norm"])[0]
    bound = decode_tensor(record["theory"]["bound_log10"])
    assert float((curve - bound).max()) < 1e-9  # c(k) <= prod ||J_t||_2


@pytest.mark.parametrize("mode", ["trajectory", "checkpoint"])
def test_curve_weights_file_gives_the_library_numbers(
    mode: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = save(tmp_path / "w.npz")
    record = curve_json(["--weights", str(path), "--mode", mode, "--activation", "tanh"], capsys)
    a = arrays()
    weights = rnn_of(a, "tanh")
    x = torch.as_tensor(a["x"])
    if mode == "trajectory":
        h0 = torch.as_tensor(a["h0"]).unsqueeze(0)
        flow = analyse(weights, x.unsqueeze(1), h0)
    else:
        flow = analyse(weights, x, states=torch.as_tensor(a["h"]))
    assert records.from_dict(record) == flow
    assert (record["log10_norm"]["shape"], record["hidden_size"], record["mode"]) == (
        [1, T],
        H,
        mode,
    )


def test_mlp_json_gives_the_library_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["mlp", "--json", "--layers", "8", "--width", "12", "--activation", "tanh"]
    code, out, err = invoke([*argv, "--init", "xavier", "--batch", "5", "--seed", "2"], capsys)
    assert (code, err) == (0, "")
    record = json.loads(out)
    profile = depth_profile(8, 12, "tanh", "xavier", batch=5, seed=2)
    assert records.from_dict(record) == profile
    assert record["log10_grad_norm"]["shape"] == [9]  # layers 0..L


def test_curve_summary_without_json_names_the_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = invoke(["curve", "--hidden", "4", "--steps", "10"], capsys)
    flow = run_curve(CurveConfig(hidden_size=4, steps=10))
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == "rnn tanh H=4 T=10 trajectory (spectral)"
    assert f"verdict: {flow.verdict}, {flow.rate_per_step:+.4g} decades/step" in out
    assert f"memory horizon {flow.horizon} steps" in out
    assert flow.note in out


# ---------------------------------------------------------------- figures


@pytest.mark.parametrize(
    "argv",
    [
        ["curve", "--hidden", "4", "--steps", "12", "--batch", "2"],
        ["mlp", "--layers", "5", "--width", "8"],
    ],
    ids=["curve", "mlp"],
)
def test_plot_writes_a_png_and_keeps_the_folder(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    neighbour = tmp_path / "notes.txt"
    neighbour.write_text("keep me")
    target = tmp_path / "f.png"
    code, out, err = invoke([*argv, "--plot", str(target)], capsys)
    assert (code, err) == (0, "")
    data = target.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 1000
    assert neighbour.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png", "notes.txt"]  # no temp file
    assert out.strip().endswith(f"figure: {target}")


def test_plot_in_a_folder_that_does_not_exist_is_refused_before_the_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = invoke(["curve", "--plot", str(tmp_path / "fig" / "f.png")], capsys)
    assert (code, out) == (2, "")
    assert "`--plot` must be in an existing folder" in err
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- help


COMMANDS = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help_with_an_example(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = invoke([command, "--help"], capsys)
    assert (code, err) == (0, "")
    assert "Example" in out
    assert "--help" in out


def test_the_explore_help_names_the_extra_to_install(capsys: pytest.CaptureFixture[str]) -> None:
    # the help's markup ate "[explorer]", leaving pip install 'gradtrace'
    code, out, _ = invoke(["explore", "--help"], capsys)
    assert code == 0 and "pip install 'gradtrace[explorer]'" in " ".join(out.split())


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = invoke([], capsys)
    assert code == 2
    assert err.startswith("gradtrace: error: ")


# ---------------------------------------------------------------- bad input


def _bad_npz(tmp: Path, **changes: Any) -> str:
    return str(save(tmp / "bad.npz", **changes))


def _npy_as_npz(tmp: Path) -> str:
    with (tmp / "a.npz").open("wb") as f:  # one plain .npy array under an .npz name
        np.save(f, np.ones((3, 3)))
    return str(tmp / "a.npz")


def _text_npz(tmp: Path) -> str:
    (tmp / "x.npz").write_text("this is not an archive\n")
    return str(tmp / "x.npz")


def _with_value(name: str, value: float) -> dict[str, np.ndarray]:
    array = arrays()[name].copy()
    array.flat[1] = value
    return {name: array}


# (arguments given the tmp folder, words the message must hold)
BAD_INPUTS = [
    pytest.param(
        lambda p: ["--weights", _bad_npz(p, W_hh=np.ones((4, 3)))],
        "`W_hh` must be square",
        id="W_hh-not-square",
    ),
    pytest.param(
        lambda p: ["--weights", _bad_npz(p, x=np.ones((T, I + 2)))],
        "`x` in `--weights`",
        id="x-vs-W_hx",
    ),
    pytest.param(
        lambda p: ["--weights", _bad_npz(p, b=np.ones(H + 1))],
        "`b` must have shape",
        id="b-vs-W_hh",
    ),
    pytest.param(
        lambda p: ["--mode", "checkpoint", "--weights", _bad_npz(p, h=np.ones((T - 1, H)))],
        "`h` in `--weights` must have shape",
        id="h-vs-x",
    ),
    pytest.param(
        lambda p: ["--weights", _bad_npz(p, **_with_value("W_hh", np.nan))],
        "must be finite",
        id="W_hh-nan",
    ),
    pytest.param(
        lambda p: ["--weights", _bad_npz(p, **_with_value("W_hx", np.inf))],
        "must be finite",
        id="W_hx-inf",
    ),
    pytest.param(
        lambda p: ["--weights", _bad_npz(p, **_with_value("b", -np.inf))],
        "must be finite",
        id="b-minus-inf",
    ),
    pytest.param(
        lambda p: ["--steps", "0"],
        "`--steps` must be a whole number of at least 1, got 0",
        id="T-0",
    ),
    pytest.param(
        lambda p: ["--steps", "-3"], "`--steps` must be a whole number of at least 1", id="T-neg"
    ),
    pytest.param(lambda p: ["--steps", "ten"], "--steps", id="T-not-a-number"),
    pytest.param(lambda p: ["--cell", "transformer"], "`--cell` must be one of", id="cell"),
    pytest.param(lambda p: ["--activation", "gelu"], "`--activation` must be one of", id="act"),
    pytest.param(lambda p: ["--metric", "nuclear"], "`--metric` must be one of", id="metric"),
    pytest.param(lambda p: ["--dtype", "float16"], "`--dtype` must be one of", id="dtype"),
    pytest.param(lambda p: ["--mode", "online"], "`--mode` must be one of", id="mode"),
    pytest.param(lambda p: ["--spectrum", "eig-uniform:4"], "`--spectrum`", id="spec-missing"),
    pytest.param(lambda p: ["--spectrum", "spiral:2"], "`--spectrum`", id="spec-unknown"),
    pytest.param(lambda p: ["--spectrum", "radius:x"], "`--spectrum`", id="spec-not-a-number"),
    pytest.param(lambda p: ["--spectrum", "eig-uniform:4:0"], "LO < HI", id="spec-lo-hi"),
    pytest.param(lambda p: ["--spectrum", "radius:nan"], "`--spectrum`", id="spec-nan"),
    pytest.param(
        lambda p: ["--weights", str(p / "missing.npz")],
        "must be an existing .npz file",
        id="missing-file",
    ),
    pytest.param(
        lambda p: ["--weights", _text_npz(p)], "must be a readable .npz archive", id="text-file"
    ),
    pytest.param(
        lambda p: ["--weights", _text_npz(p)],
        "not a zip archive of arrays",
        id="regression-a-text-file-was-answered-with-numpys-pickle-advice",
    ),
    pytest.param(
        lambda p: ["--hidden", "abc"],
        "Input should be a valid integer, unable to parse string as an integer; got 'abc'",
        id="regression-a-type-error-did-not-echo-the-value",
    ),
    pytest.param(
        lambda p: ["--cell", "lstm", "--activation", "relu"],
        "the lstm cell's are fixed",
        id="regression-activation-of-a-gated-cell-was-ignored",
    ),
    pytest.param(
        lambda p: ["--weights", _bad_npz(p), "--hidden", "99"],
        "`--hidden` comes from the `--weights` file (W_hh is H x H)",
        id="regression-hidden-beside-a-weights-file-was-ignored",
    ),
    pytest.param(
        lambda p: ["--weights", _bad_npz(p), "--steps", "3"],
        "`--steps` comes from the `--weights` file",
        id="regression-steps-beside-a-weights-file-was-ignored",
    ),
    pytest.param(lambda p: ["--steps=1.5"], "; got '1.5'", id="regression-type-error-equals-form"),
    pytest.param(
        lambda p: ["--weights", _npy_as_npz(p)],
        "must be a readable .npz archive",
        id="regression-npy-file-gave-a-typeerror-traceback",
    ),
    pytest.param(
        lambda p: ["--weights", _bad_npz(p, W_hh=np.ones((H, H)) * (1 + 2j))],
        "array 'W_hh' must be real and numeric, got dtype complex128",
        id="regression-complex-weights-lost-their-imaginary-part",
    ),
    pytest.param(
        lambda p: ["--steps", "3", "--device", "cuda"],
        "`--device` 'cuda' needs a CUDA GPU",
        id="regression-cuda-without-a-gpu-gave-a-traceback",
        marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA"),
    ),
    pytest.param(
        lambda p: ["--mode", "checkpoint", "--weights", _bad_npz(p, h=None)],
        "needs an array 'h'",
        id="checkpoint-without-h",
    ),
    pytest.param(lambda p: ["--batch", "0"], "`--batch` must be a whole number", id="batch-0"),
    pytest.param(lambda p: ["--hidden", "0"], "`--hidden` must be a whole number", id="hidden-0"),
    pytest.param(
        lambda p: ["--mode", "checkpoint", "--cell", "gru"], "needs `--cell` rnn", id="ckpt-gru"
    ),
    pytest.param(lambda p: ["--bogus"], "No such option: --bogus", id="unknown-option"),
    pytest.param(lambda p: ["--steps", "3", "--plot", str(p / "f.txt")], "`--plot`", id="suffix"),
    pytest.param(
        lambda p: ["--hidden", "8", "--steps", "400", "--activation", "relu", *RADIUS_50],
        "states overflow to Inf/NaN at step",
        id="forward-overflow",
    ),
]


@pytest.mark.parametrize(("make_args", "words"), BAD_INPUTS)
def test_bad_input_is_one_line_and_exit_2(
    make_args: Any, words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = invoke(["curve", *make_args(tmp_path)], capsys)
    assert code == 2
    assert out == ""
    assert err.startswith("gradtrace: error: ")
    assert err.endswith(".\n")
    assert err.count("\n") == 1  # exactly one line
    assert "Traceback" not in err
    assert words in err


@pytest.mark.parametrize(
    "argv",
    [["mlp", "--layers", "0"], ["mlp", "--init", "lecun"], ["mlp", "--activation", "gelu"]],
    ids=["layers-0", "init", "activation"],
)
def test_bad_mlp_input_is_one_line_and_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = invoke(argv, capsys)
    assert (code, out) == (2, "")
    assert err.startswith("gradtrace: error: ")
    assert err.count("\n") == 1


@pytest.mark.parametrize("existing", [True, False], ids=["existing-plot", "no-plot-yet"])
def test_a_failing_run_leaves_the_plot_target_alone(
    existing: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "curve.png"
    if existing:
        target.write_bytes(PNG_SIGNATURE + b"an earlier figure")
    code, _, err = invoke(["curve", "--steps", "0", "--plot", str(target)], capsys)
    assert code == 2
    assert err.startswith("gradtrace: error: ")
    if existing:
        assert target.read_bytes() == PNG_SIGNATURE + b"an earlier figure"
    else:
        assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == (["curve.png"] if existing else [])


@pytest.mark.parametrize("command", ["curve", "mlp"])
def test_a_refused_plot_suffix_draws_and_writes_nothing(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import matplotlib.pyplot as plt

    plt.close("all")
    code, out, err = invoke([command, "--plot", str(tmp_path / "f.txt")], capsys)
    assert (code, out) == (2, "")
    assert (
        err == f"gradtrace: error: `--plot` must end in .png, .pdf, .svg, got '{tmp_path}/f.txt'.\n"
    )
    assert plt.get_fignums() == []  # refused before any figure was opened
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- the real command


def _env() -> dict[str, str]:
    return {**os.environ, "MPLBACKEND": "Agg"}


def test_python_m_gradtrace_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gradtrace", "--help"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
        check=False,
    )
    assert done.returncode == 0
    for command in ("curve", "mlp", "tour", "demo"):
        assert command in done.stdout


def test_installed_script_prints_the_json(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("gradtrace")
    if not script.exists():
        pytest.skip(f"no installed `gradtrace` script beside {sys.executable}")
    argv = [str(script), "curve", "--json", "--hidden", "4", "--steps", "10", "--seed", "1"]
    done = subprocess.run(argv, capture_output=True, text=True, env=_env(), timeout=60, check=False)
    assert (done.returncode, done.stderr) == (0, "")
    record = json.loads(done.stdout)
    assert records.from_dict(record) == run_curve(CurveConfig(hidden_size=4, steps=10, seed=1))


def test_a_product_that_is_exactly_zero_still_plots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Regression: with W_hh = 0 every log10 c(k) is -inf and the axis limits became NaN.
    figure = tmp_path / "zero.png"
    code, out, err = invoke(["curve", "--spectrum", "identity:0", "--plot", str(figure)], capsys)
    assert (code, err) == (0, "")
    assert "vanishing" in out
    assert figure.read_bytes().startswith(PNG_SIGNATURE)


def test_train_refuses_a_run_over_the_memory_budget_before_it_starts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # the new user's run grew to 4.4 GB before it was killed; now it is priced first
    argv = ["train", "adding", "--steps", "100000000", "--length", "10000", "--hidden", "1024"]
    code, out, err = invoke(["--max-memory", "6GB", *argv], capsys)
    assert (code, out) == (2, "")
    assert "of memory, over the budget of 6 GB; lower `--length`, `--hidden` or `--batch`" in err
