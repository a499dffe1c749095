"""Tests for gradtrace.analysis.curve: options, weights files and the `gradtrace curve` job.

References: the same arrays passed straight to `analyse` in trajectory or checkpoint mode (the job
must give identical numbers, atol 0), and the documented seeded draws (x_t ~ N(0, 1) and
checkpoint states h ~ N(0, 1) from a generator seeded with seed + 1). Bad options and files
raise GradtraceError with one line that names the option.
"""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from gradtrace.analysis.curve import MODES, CurveConfig, analyse, run_curve
from gradtrace.cells import RNNWeights
from gradtrace.cells.random_weights import random_weights
from gradtrace.core.spectra import parse_spectrum
from gradtrace.errors import GradtraceError
from gradtrace.io.arrays import load_arrays
from gradtrace.io.devices import DTYPES

DTYPE = torch.float64
T, H, I = 12, 4, 3


def arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """A vanilla RNN with its inputs and both kinds of states, as numpy float64 arrays."""
    r = np.random.default_rng(seed)
    return {
        "W_hh": 0.6 * r.normal(size=(H, H)),
        "W_hx": r.normal(size=(H, I)),
        "b": r.normal(size=H),
        "x": r.normal(size=(T, I)),
        "h0": 0.5 * r.normal(size=H),
        "h": r.normal(size=(T, H)),
    }


def save(tmp_path: Path, name: str = "w.npz", **changes: Any) -> Path:
    """Write arrays() with `changes` applied (None removes an array) and return the path."""
    data = {k: v for k, v in {**arrays(), **changes}.items() if v is not None}
    path = tmp_path / name
    np.savez(path, **data)
    return path


def weights_of(a: dict[str, np.ndarray], activation: str) -> RNNWeights:
    t = {k: torch.as_tensor(v) for k, v in a.items()}
    return RNNWeights(t["W_hh"], t["W_hx"], t["b"], activation)


# ---------------------------------------------------------------- weights files


@pytest.mark.parametrize("metric", ["spectral", "frobenius", "maxabs"])
def test_trajectory_file_gives_the_numbers_of_analyse(tmp_path: Path, metric: str) -> None:
    a = arrays()
    config = CurveConfig(activation="sigmoid", weights=save(tmp_path), metric=metric, device="cpu")
    report = run_curve(config)
    x = torch.as_tensor(a["x"]).unsqueeze(1)  # (T, 1, I)
    h0 = torch.as_tensor(a["h0"]).unsqueeze(0)  # (1, H)
    expected = analyse(weights_of(a, "sigmoid"), x, h0, metric=metric)
    assert torch.equal(report.log10_norm, expected.log10_norm)
    assert report.to_dict() == expected.to_dict()
    assert (report.steps, report.hidden_size, report.mode) == (T, H, "trajectory")


def test_trajectory_file_without_h0_starts_from_zeros(tmp_path: Path) -> None:
    a = arrays()
    report = run_curve(CurveConfig(weights=save(tmp_path, h0=None), device="cpu"))
    x = torch.as_tensor(a["x"]).unsqueeze(1)
    expected = analyse(weights_of(a, "tanh"), x, torch.zeros(1, H, dtype=DTYPE))
    assert torch.equal(report.log10_norm, expected.log10_norm)


@pytest.mark.parametrize("metric", ["spectral", "maxabs"])
def test_checkpoint_file_gives_the_numbers_of_analyse_with_states(
    tmp_path: Path, metric: str
) -> None:
    a = arrays()
    path = save(tmp_path, h0=None)  # checkpoint mode needs only h
    report = run_curve(
        CurveConfig(activation="sigmoid", mode="checkpoint", weights=path, metric=metric)
    )
    x, h = torch.as_tensor(a["x"]), torch.as_tensor(a["h"])
    expected = analyse(weights_of(a, "sigmoid"), x, states=h, metric=metric)
    assert torch.equal(report.log10_norm, expected.log10_norm)
    assert report.to_dict() == expected.to_dict()
    assert report.mode == "checkpoint"


def test_weights_file_gives_the_sizes_and_refuses_them_given_again(tmp_path: Path) -> None:
    report = run_curve(CurveConfig(weights=save(tmp_path)))
    assert (report.steps, report.hidden_size) == (T, H)
    for given in ({"hidden_size": 99}, {"input_size": 7}, {"steps": 500}, {"seed": 3}):
        name = next(iter(given))
        with pytest.raises(GradtraceError, match=f"`{name}` comes from the `weights` file"):
            run_curve(CurveConfig(weights=save(tmp_path), **given))  # was silently ignored


def test_load_arrays_reads_every_array(tmp_path: Path) -> None:
    loaded = load_arrays(save(tmp_path), "weights")
    assert sorted(loaded) == sorted(arrays())
    for name, value in arrays().items():
        np.testing.assert_array_equal(loaded[name], value)


# ---------------------------------------------------------------- random jobs


def test_random_trajectory_job_is_the_documented_draw() -> None:
    config = CurveConfig(activation="relu", hidden_size=6, input_size=2, steps=30, batch=3, seed=4)
    report = run_curve(config)
    weights = random_weights("rnn", 6, 2, activation="relu", seed=4)
    gen = torch.Generator().manual_seed(5)  # seed + 1
    x = torch.randn(30, 3, 2, generator=gen, dtype=DTYPE)
    expected = analyse(weights, x)
    assert torch.equal(report.log10_norm, expected.log10_norm)
    assert report.log10_norm.shape == (3, 30)
    assert torch.equal(run_curve(config).log10_norm, report.log10_norm)  # same seed, same run
    other = run_curve(dataclasses.replace(config, seed=5))
    assert not torch.equal(other.log10_norm, report.log10_norm)


def test_random_checkpoint_job_is_the_documented_draw() -> None:
    config = CurveConfig(
        activation="sigmoid",
        hidden_size=5,
        input_size=5,
        steps=20,
        seed=12345,
        spectrum="eig-uniform:0:4",
        mode="checkpoint",
    )
    report = run_curve(config)
    spec = parse_spectrum("eig-uniform:0:4")
    weights = random_weights("rnn", 5, 5, spectrum=spec, activation="sigmoid", seed=12345)
    assert isinstance(weights, RNNWeights)
    gen = torch.Generator().manual_seed(12346)
    x = torch.randn(20, 1, 5, generator=gen, dtype=DTYPE)
    h = torch.randn(20, 5, generator=gen, dtype=DTYPE)
    expected = analyse(weights, x[:, 0], states=h)
    assert torch.equal(report.log10_norm, expected.log10_norm)


def test_float32_job_agrees_with_float64() -> None:
    # A contracting tanh RNN over 40 steps: every quantity is a few float32 roundings per
    # step away from float64, ~40 * 1e-7 relative; 1e-4 in log10 leaves a margin of ~50.
    base = CurveConfig(hidden_size=8, steps=40, batch=2, spectrum="orthogonal:0.9")
    r64 = run_curve(base)
    r32 = run_curve(dataclasses.replace(base, dtype="float32"))
    assert r32.log10_norm.dtype == DTYPE  # the log10 values are float64 whatever the dtype
    torch.testing.assert_close(r32.log10_norm, r64.log10_norm, atol=1e-4, rtol=0)
    assert r32.verdict == r64.verdict


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gated_cells_run_with_a_spectrum_per_gate(cell: str) -> None:
    report = run_curve(CurveConfig(cell=cell, hidden_size=5, steps=15, spectrum="radius:0.9"))
    assert report.log10_norm.shape == (1, 15)  # (B, T) also for one sequence
    assert report.theory.spectral_radius == pytest.approx(0.9, abs=1e-10)
    assert len(report.theory.blocks) == (4 if cell == "lstm" else 3)


# ---------------------------------------------------------------- bad options

BAD_CONFIGS = [
    ({"cell": "transformer"}, r"`cell` must be one of rnn, lstm, gru, got 'transformer'"),
    ({"activation": "softsign"}, r"`activation` must be one of .*got 'softsign'"),
    ({"metric": "nuclear"}, r"`metric` must be one of spectral, frobenius, maxabs"),
    ({"dtype": "float16"}, r"`dtype` must be one of float64, float32, got 'float16'"),
    ({"mode": "online"}, r"`mode` must be one of trajectory, checkpoint, got 'online'"),
    ({"steps": 0}, r"`steps` must be a whole number of at least 1, got 0"),
    ({"steps": -3}, r"`steps` must be a whole number of at least 1, got -3"),
    ({"hidden_size": 0}, r"`hidden_size` must be a whole number of at least 1, got 0"),
    ({"input_size": 0}, r"`input_size` must be a whole number of at least 1, got 0"),
    ({"batch": 0}, r"`batch` must be a whole number of at least 1, got 0"),
    ({"cell": "lstm", "mode": "checkpoint"}, r"`mode` checkpoint .*needs `cell` rnn, got 'lstm'"),
    ({"cell": "gru", "weights": Path("w.npz")}, r"`weights` holds a vanilla RNN, got `cell` 'gru'"),
    ({"spectrum": "eig-uniform:4"}, r"`spectrum` must have the form eig-uniform:LO:HI"),
    ({"spectrum": "radius:-1"}, r"`spectrum` needs a value >= 0"),
    ({"mode": "checkpoint", "batch": 2}, r"`batch` must be 1 in checkpoint mode, got 2"),
    (
        {"device": "tpu-ish"},
        r"`device` must be one of auto, cpu, cuda \(or cuda:N\), got 'tpu-ish'",
    ),
]


@pytest.mark.parametrize(
    ("changes", "match"), BAD_CONFIGS, ids=["-".join(map(str, c.values())) for c, _ in BAD_CONFIGS]
)
def test_bad_options_are_refused_by_name(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(GradtraceError, match=match):
        run_curve(dataclasses.replace(CurveConfig(steps=5), **changes))


def test_a_trajectory_that_overflows_is_refused_not_read_as_vanishing() -> None:
    # A ReLU RNN of spectral radius 50 overflows float64 after about 180 steps; past that its
    # states are Inf/NaN and phi'(NaN) = 0 would make every product exactly zero.
    w = random_weights("rnn", 8, 3, activation="relu", spectrum="radius:50", seed=1)
    x = torch.randn(400, 1, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with pytest.raises(GradtraceError, match=r"states overflow to Inf/NaN at step \d+ of 400"):
        analyse(w, x)
    assert bool(torch.isfinite(analyse(w, x[:100]).log10_norm).all())  # before it: measured


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_regression_cuda_without_a_gpu_is_a_gradtrace_error() -> None:
    with pytest.raises(GradtraceError, match=r"`device` 'cuda' needs a CUDA GPU"):
        run_curve(CurveConfig(steps=3, device="cuda"))


def test_validate_is_silent_for_the_defaults() -> None:
    assert CurveConfig().validate() is None
    assert list(DTYPES) == ["float64", "float32"]
    assert MODES == ("trajectory", "checkpoint")


# ---------------------------------------------------------------- bad weights files


def _nan_w_hh() -> np.ndarray:
    W = arrays()["W_hh"].copy()
    W[1, 2] = np.nan
    return W


def _inf_x() -> np.ndarray:
    x = arrays()["x"].copy()
    x[3, 0] = -np.inf
    return x


# (array changes, mode, message)
BAD_FILES = [
    pytest.param({"W_hh": np.ones((4, 3))}, "trajectory", r"`W_hh` must be square", id="W_hh-4x3"),
    pytest.param({"W_hh": np.ones(4)}, "trajectory", r"`W_hh` must have 2 dim", id="W_hh-1d"),
    pytest.param({"W_hx": np.ones((5, 3))}, "trajectory", r"`W_hx` must have H = 4", id="W_hx"),
    pytest.param({"b": np.ones(5)}, "trajectory", r"`b` must have shape \(4,\)", id="b"),
    pytest.param({"x": np.ones((T, 2))}, "trajectory", r"`x` in `weights` must have sh", id="x"),
    pytest.param({"x": np.ones((0, I))}, "trajectory", r"at least one step", id="x-T-0"),
    pytest.param({"h0": np.ones(5)}, "trajectory", r"`h0` in `weights` must have", id="h0"),
    pytest.param({"h": np.ones((T + 1, H))}, "checkpoint", r"`h` in `weights` must", id="h"),
    pytest.param({"W_hh": _nan_w_hh()}, "trajectory", r"`W_hh` must be finite, got 1", id="W-nan"),
    pytest.param(
        {"x": _inf_x()}, "checkpoint", r"`x` in `weights` must be finite, got 1", id="x-inf"
    ),
    pytest.param({"h": np.full((T, H), np.inf)}, "checkpoint", r"`h` .*must be finite", id="h-inf"),
    pytest.param({"h": None}, "checkpoint", r"`mode` checkpoint needs an array 'h'", id="no-h"),
    pytest.param({"x": None}, "trajectory", r"must contain an array 'x'", id="no-x"),
    pytest.param(
        {"b": np.array(["a", "b"])}, "trajectory", r"'b' must be real and numeric", id="b-str"
    ),
    pytest.param(
        {"W_hh": np.ones((H, H)) * (1 + 1j)},
        "trajectory",
        r"'W_hh' must be",
        id="regression-complex-imaginary-part-was-dropped",
    ),
]


@pytest.mark.parametrize(("changes", "mode", "match"), BAD_FILES)
def test_bad_weights_files_are_refused_by_name(
    tmp_path: Path, changes: dict[str, Any], mode: str, match: str
) -> None:
    config = CurveConfig(mode=mode, weights=save(tmp_path, **changes))
    with pytest.raises(GradtraceError, match=match) as err:
        run_curve(config)
    assert "\n" not in str(err.value)


def _write_text(path: Path) -> Path:
    path.write_text("W_hh = [[1, 2], [3, 4]]\n")
    return path


def _write_npy(path: Path) -> Path:
    with path.open("wb") as f:  # a plain .npy array, not an .npz archive
        np.save(f, np.ones((3, 3)))
    return path


def _write_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("notes.txt", "not an array")
    return path


UNREADABLE = [
    pytest.param(lambda p: p / "missing.npz", r"must be an existing \.npz file", id="missing"),
    pytest.param(lambda p: p, r"must be an existing \.npz file", id="a-folder"),
    pytest.param(lambda p: _write_text(p / "x.npz"), r"must be a readable \.npz", id="text"),
    pytest.param(
        lambda p: _write_npy(p / "a.npz"),
        r"must be a readable \.npz",
        id="regression-npy-array-gave-a-typeerror",
    ),
    pytest.param(lambda p: _write_zip(p / "z.npz"), r"must contain an array 'W_hh'", id="zip"),
]


@pytest.mark.parametrize(("make", "match"), UNREADABLE)
def test_missing_or_unreadable_files_are_refused(tmp_path: Path, make: Any, match: str) -> None:
    path = make(tmp_path)
    with pytest.raises(GradtraceError, match=r"^`weights` " + match) as err:
        run_curve(CurveConfig(weights=path))
    assert str(path) in str(err.value) or "W_hh" in str(err.value)
