"""The explorer: each panel's numbers against independent references, and the server's API.

References (float64, tolerances stated per test): torch.autograd through the unrolled RNN, MLP
and one-unit cliff RNN; torch.linalg for eigenvalues, singular values and determinants (the
sum of the full Lyapunov spectrum is the mean of log |det J_t|, whatever the start frame); closed
forms (phi'(0)^n = 0.25^n for the sigmoid, c(k) = s^(T-k) for a linear RNN with W = s Q, the
logistic map's fixed points 0 and 1 - 1/r and its 2-cycle, x^2 + c's (1 +- sqrt(1 - 4c))/2, the
sinks (+-x*, +-x*) of tanh(2 h) with x* = tanh(2 x*)); a monitor log read back with
`gradtrace.load`, and a store read with plain sqlite3. The server: malformed requests refused
by name, traversal refused, many concurrent clients answered, the CLI's options and messages.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import math
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

import gradtrace
from gradtrace.analysis.curve import CurveConfig, run_curve
from gradtrace.analysis.depth import init_mlp
from gradtrace.cells import random_weights
from gradtrace.cli.main import run as cli
from gradtrace.errors import GradtraceError
from gradtrace.explorer import RunSources, create_app, panels, require_extra, running
from gradtrace.explorer.panels_activation import activation_panel
from gradtrace.explorer.panels_depth import depth_panel
from gradtrace.explorer.panels_dynamics import (
    basins_panel,
    bifurcation_panel,
    cliff_panel,
    map_panel,
)
from gradtrace.explorer.panels_runs import LogTail, run_panel, sweeps_panel
from gradtrace.explorer.params import defaults, parse
from gradtrace.explorer.server import STATIC, plotly_js
from gradtrace.monitor import Monitor, every
from gradtrace.records import MonitorStep
from gradtrace.store import ResultsStore

DTYPE = torch.float64
REGISTRY = panels()


def value(v: Any) -> float:
    """A JSON number of the house convention as a float."""
    return {"Infinity": math.inf, "-Infinity": -math.inf, "NaN": math.nan}.get(v, v)


def values(vs: Any) -> np.ndarray:
    return np.array(
        [[value(x) for x in row] if isinstance(row, list) else value(row) for row in vs]
    )


def call(panel: str, **changes: Any) -> dict[str, Any]:
    """A panel's function at its defaults, with `changes`, checked as the server checks them."""
    entry = REGISTRY[panel]
    params = parse([(k, str(v)) for k, v in changes.items()], entry.params, panel)
    return entry.compute(**params)


# ---------------------------------------------------------------- activation


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("x0", [-1.5, 0.0, 0.7])
def test_activation_values_and_slopes_match_autograd(name: str, x0: float) -> None:
    out = activation_panel(activation=name, x=x0, n=12)
    grid = torch.tensor(out["grid"], dtype=DTYPE, requires_grad=True)
    phi = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}[name]
    (slope,) = torch.autograd.grad(phi(grid).sum(), grid)
    assert np.allclose(out["phi"], phi(grid).detach(), rtol=0, atol=1e-15)
    assert np.allclose(out["dphi"], slope, rtol=0, atol=1e-15)
    at = torch.tensor(x0, dtype=DTYPE, requires_grad=True)
    (d0,) = torch.autograd.grad(phi(at), at)
    assert out["dphi_x0"] == pytest.approx(float(d0), abs=1e-15)
    # The tangent passes through (x0, phi(x0)) with slope phi'(x0).
    tangent = np.array(out["tangent"])
    assert np.allclose(np.diff(tangent) / np.diff(out["grid"]), float(d0), atol=1e-9)
    i = int(np.argmin(np.abs(np.array(out["grid"]) - x0)))
    assert tangent[i] == pytest.approx(float(phi(at.detach())) + float(d0) * (out["grid"][i] - x0))
    expected = [m * math.log10(float(d0)) if d0 > 0 else (0.0 if m == 0 else -math.inf)
                for m in range(13)]  # fmt: skip
    assert values(out["log10_power"]).tolist() == pytest.approx(expected, abs=1e-12)


def test_sigmoid_at_zero_decays_as_a_quarter_to_the_n() -> None:
    out = activation_panel(activation="sigmoid", x=0.0, n=40)
    assert out["dphi_x0"] == 0.25 and out["gamma"] == 0.25
    assert out["power_n"] == pytest.approx(0.25**40, rel=1e-14)
    assert out["log10_power_n"] == pytest.approx(40 * math.log10(0.25), rel=1e-14)


def test_a_dead_relu_gives_minus_infinity_in_the_house_convention() -> None:
    out = activation_panel(activation="relu", x=-1.0, n=3)
    assert out["log10_power"] == [0.0, "-Infinity", "-Infinity", "-Infinity"]
    assert out["power_n"] == 0.0 and out["log10_power_n"] == "-Infinity"
    json.dumps(out, allow_nan=False)  # strict JSON: no bare NaN or Infinity


# ---------------------------------------------------------------- rnn


def rnn_inputs(seed: int, steps: int, batch: int = 1, size: int = 8) -> torch.Tensor:
    """x_t ~ N(0, 1) from the generator seeded seed + 1, as `run_curve` documents."""
    gen = torch.Generator().manual_seed(seed + 1)
    return torch.randn(steps, batch, size, generator=gen, dtype=DTYPE)


def autograd_rnn(weights: Any, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """log10 ||dh_T/dh_k||_2 for k = 0..T-1 and every step Jacobian J_t, by autograd."""
    phi = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "linear": lambda a: a}[weights.activation]

    def step(h: torch.Tensor, t: int) -> torch.Tensor:
        return phi(weights.W_hh @ h + weights.W_hx @ x[t] + weights.b)

    states = [torch.zeros(weights.W_hh.shape[0], dtype=DTYPE)]
    for t in range(x.shape[0]):
        states.append(step(states[-1], t))
    T = x.shape[0]
    step_jacobians = [
        torch.autograd.functional.jacobian(lambda h, t=t: step(h, t), states[t]) for t in range(T)
    ]
    curve = []
    for k in range(T):

        def tail(h: torch.Tensor, k: int = k) -> torch.Tensor:
            for t in range(k, T):
                h = step(h, t)
            return h

        J = torch.autograd.functional.jacobian(tail, states[k])  # dh_T/dh_k
        curve.append(math.log10(float(torch.linalg.matrix_norm(J, ord=2))))
    return torch.tensor(curve, dtype=DTYPE), step_jacobians


def test_rnn_curve_spectra_and_lyapunov_sum_match_autograd_and_linalg() -> None:
    H, T, seed = 6, 30, 3
    out = call("rnn", hidden_size=H, steps=T, init="radius", scale=1.3, seed=seed, lyapunov=H)
    weights = random_weights("rnn", H, 8, spectrum="radius:1.3", activation="tanh", seed=seed)
    curve, jacobians = autograd_rnn(weights, rnn_inputs(seed, T)[:, 0])
    assert np.allclose(out["log10_c"], curve, rtol=0, atol=1e-10)  # 1e-10 decades
    # The bound (gamma sigma_max)^(T-k) with sigma_max from torch.linalg (gamma = 1 for tanh).
    sigma = float(torch.linalg.matrix_norm(weights.W_hh, ord=2))
    bound = [(T - k) * math.log10(sigma) for k in range(T)]
    assert out["bound_log10"] == pytest.approx(bound, abs=1e-12)
    (block,) = out["blocks"]
    eig = torch.linalg.eigvals(weights.W_hh)
    got = np.array(block["eigenvalues"]["re"]) + 1j * np.array(block["eigenvalues"]["im"])
    assert np.allclose(np.sort_complex(got), np.sort_complex(eig.numpy()), atol=1e-12)
    assert np.allclose(block["singular_values"], torch.linalg.svdvals(weights.W_hh), atol=1e-12)
    assert out["sigma_max"] == pytest.approx(sigma, rel=1e-12)
    assert out["spectral_radius"] == pytest.approx(1.3, rel=1e-12)  # radius:1.3 by construction
    assert out["circle"] == 1.0  # 1/gamma for tanh
    # QR with K = S: the exponents sum to the mean of log |det J_t| (independent of Q_0).
    logdet = sum(float(torch.linalg.slogdet(J).logabsdet) for J in jacobians) / T
    assert sum(out["lyapunov"]) == pytest.approx(logdet, rel=1e-9)
    # The horizon and the rate from their definitions, on the autograd curve.
    c = curve.tolist()
    horizon = next((T - 1 - k for k in range(T - 1, -1, -1) if c[k] < c[-1] - 3), T)
    assert out["horizon"] == horizon
    n = np.arange(T, 0, -1)
    assert out["rate_per_step"] == pytest.approx(np.polyfit(n, c, 1)[0], rel=1e-9)


@pytest.mark.parametrize(
    ("spec", "scale", "verdict"),
    [("orthogonal", 1.05, "exploding"), ("identity", 0.9, "vanishing")],
    ids=["grows-1.05", "decays-0.9"],
)
def test_a_linear_rnn_with_scaled_orthogonal_weights_follows_s_to_the_t_minus_k(
    spec: str, scale: float, verdict: str
) -> None:
    T = 80
    out = call("rnn", activation="linear", init=spec, scale=scale, hidden_size=5, steps=T)
    exact = [(T - k) * math.log10(scale) for k in range(T)]  # ||(s Q)^(T-k)||_2 = s^(T-k)
    assert out["log10_c"] == pytest.approx(exact, abs=1e-10)
    assert out["bound_log10"] == pytest.approx(exact, abs=1e-10)  # a tight bound here
    assert out["verdict"] == verdict
    assert out["rate_per_step"] == pytest.approx(math.log10(scale), abs=1e-10)
    # within 3 decades of c(T-1) = s: (n - 1) |log10 s| <= 3
    assert out["horizon"] == (T if scale > 1 else 1 + int(3 / -math.log10(scale)))
    moduli = np.hypot(out["blocks"][0]["eigenvalues"]["re"], out["blocks"][0]["eigenvalues"]["im"])
    assert np.allclose(moduli, scale, atol=1e-12)


def test_sigmoid_circle_is_four_and_the_panel_is_the_library_curve_job() -> None:
    out = call("rnn", activation="sigmoid", init="eig-uniform", lo=0.0, hi=4.0, steps=20)
    assert out["circle"] == 4.0 and out["gamma"] == 0.25
    flow = run_curve(
        CurveConfig(activation="sigmoid", spectrum="eig-uniform:0.0:4.0", steps=20,
                    lyapunov=8, device="cpu")
    )  # fmt: skip
    assert out["log10_c"] == pytest.approx(flow.log10_norm[0].tolist(), abs=0)
    assert (out["verdict"], out["horizon"], out["note"]) == (flow.verdict, flow.horizon, flow.note)
    assert out["spectrum"] == "eig-uniform:0.0:4.0"
    assert "--spectrum eig-uniform:0.0:4.0" in out["command"]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gated_cells_show_every_gates_block(cell: str) -> None:
    out = call("rnn", cell=cell, hidden_size=5, steps=15, init="orthogonal", scale=0.8, batch=2)
    weights = random_weights(cell, 5, 8, spectrum="orthogonal:0.8", seed=0)
    blocks = weights.recurrent_blocks()
    assert [b["name"] for b in out["blocks"]] == list(blocks)
    for b, W in zip(out["blocks"], blocks.values(), strict=True):
        assert np.allclose(b["singular_values"], torch.linalg.svdvals(W), atol=1e-12)
    assert out["circle"] is None and out["gamma"] is None
    assert len(out["log10_c_each"]) == 2
    mean = np.mean(values(out["log10_c_each"]), axis=0)
    assert np.allclose(out["log10_c"], mean, atol=1e-12)  # the batch mean of log10
    assert (out["log10_cell_path"] is not None) == (cell == "lstm")


# ---------------------------------------------------------------- depth


def test_depth_norms_and_bound_match_autograd_through_the_mlp() -> None:
    L, H, B, seed = 7, 5, 4, 2
    out = depth_panel(layers=L, hidden_size=H, activation="tanh", init="xavier", batch=B, seed=seed)
    mlp = init_mlp(L, H, "tanh", "xavier", seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)  # the documented data draw
    x = torch.randn(B, H, generator=gen, dtype=DTYPE).requires_grad_(True)
    target = torch.randn(B, H, generator=gen, dtype=DTYPE)
    ys = [x]
    for layer in range(L):
        ys.append(torch.tanh(ys[-1] @ mlp.W[layer].T + mlp.b[layer]))
        ys[-1].retain_grad()
    (0.5 / B * (ys[-1] - target).pow(2).sum()).backward()
    norms = [math.log10(float(y.grad.norm())) for y in ys]  # type: ignore[union-attr]
    assert out["log10_grad"] == pytest.approx(norms, abs=1e-10)
    sigma = [float(torch.linalg.matrix_norm(W, ord=2)) for W in mlp.W]
    assert out["sigma_max"] == pytest.approx(sigma, rel=1e-12)
    above = [sum(math.log10(s) for s in sigma[layer:]) for layer in range(L + 1)]
    assert out["bound_log10"] == pytest.approx([norms[-1] + a for a in above], abs=1e-10)


# ---------------------------------------------------------------- dynamics


@pytest.mark.parametrize("r", [2.8, 3.2])
def test_logistic_map_fixed_points_orbit_and_lyapunov_are_the_closed_forms(r: float) -> None:
    out = map_panel(map="logistic", r=r, c=0.0, x0=0.2, steps=30, order=2)
    points = sorted(value(p["points"][0]) for p in out["fixed_points"])
    assert points == pytest.approx([0.0, 1 - 1 / r], abs=1e-12)
    kinds = {round(value(p["points"][0]), 6): p["kind"] for p in out["fixed_points"]}
    assert kinds[0.0] == "source"
    assert kinds[round(1 - 1 / r, 6)] == ("sink" if r < 3 else "source")  # f' = 2 - r
    orbit = [0.2]
    for _ in range(30):
        orbit.append(r * orbit[-1] * (1 - orbit[-1]))
    assert out["orbit"] == pytest.approx(orbit, abs=1e-13)
    if r < 3:  # the orbit settles on the sink: lambda -> log |f'(x*)| = log |2 - r|
        assert out["lyapunov"] == pytest.approx(math.log(abs(2 - r)), abs=2e-3)
    else:  # the 2-cycle x = (r + 1 +- sqrt((r + 1)(r - 3))) / 2r
        cycle = sorted(value(p) for p in out["attractor"]["points"])
        root = math.sqrt((r + 1) * (r - 3))
        assert cycle == pytest.approx([(r + 1 - root) / (2 * r), (r + 1 + root) / (2 * r)])
    f2 = [r * (r * x * (1 - x)) * (1 - r * x * (1 - x)) for x in out["iterate"]["x"]]
    assert out["iterate"]["y"] == pytest.approx(f2, abs=1e-12)


def test_quadratic_map_fixed_points_are_one_plus_minus_root_over_two() -> None:
    out = map_panel(map="quadratic", r=0.0, c=0.15, x0=0.1, steps=10, order=1)
    found = {p["kind"]: value(p["points"][0]) for p in out["fixed_points"]}
    root = math.sqrt(1 - 4 * 0.15)
    assert found == pytest.approx({"sink": (1 - root) / 2, "source": (1 + root) / 2}, abs=1e-12)
    assert out["formula"] == "x^2 + 0.15"


def test_bifurcation_states_are_the_fixed_point_then_the_two_cycle() -> None:
    out = bifurcation_panel(map="logistic", r_lo=2.6, r_hi=3.4, c_lo=-2, c_hi=0.25, points=9)
    for r, row, size in zip(out["params"], out["states"], out["attractor_sizes"], strict=True):
        if r < 2.99:
            assert row == pytest.approx([1 - 1 / r] * len(row), abs=1e-6)
            assert size == 1
        elif r > 3.01:
            root = math.sqrt((r + 1) * (r - 3))
            assert sorted(set(np.round(row, 6))) == pytest.approx(
                [(r + 1 - root) / (2 * r), (r + 1 + root) / (2 * r)], abs=1e-5
            )


def test_basins_of_tanh_2h_are_the_four_quadrants() -> None:
    out = basins_panel(w11=2, w12=0, w21=0, w22=2, b1=0, b2=0, points=21, steps=200)
    x = 1.0
    for _ in range(200):
        x = math.tanh(2 * x)  # x* = tanh(2 x*), 0.9575...
    sinks = sorted(tuple(a) for a in out["attractors"])
    assert np.allclose(sinks, sorted((sx * x, sy * x) for sx in (1, -1) for sy in (1, -1)))
    kinds = [p["kind"] for p in out["fixed_points"]]
    assert sorted(kinds) == sorted(["sink"] * 4 + ["saddle"] * 4 + ["source"])
    axis, labels = out["axis"], out["labels"]
    for i, h2 in enumerate(axis):  # row i is h_2 = axis[i]
        for j, h1 in enumerate(axis):
            if abs(h1) > 0.01 and abs(h2) > 0.01:
                sink = out["attractors"][labels[i][j]]
                assert (np.sign(sink[0]), np.sign(sink[1])) == (np.sign(h1), np.sign(h2))


def test_cliff_gradient_matches_autograd_and_clipped_steps_are_at_most_lr_eta() -> None:
    T, w, h0, target = 12, 1.6, 0.4, -0.6
    out = cliff_panel(steps=T, w=w, h0=h0, target=target, lo=-1.0, hi=1.0, points=41,
                      start=0.5, lr=0.5, clip=0.2, iterations=15)  # fmt: skip
    for i in range(0, 41, 5):
        b = torch.tensor(out["b"][i], dtype=DTYPE, requires_grad=True)
        h = torch.tensor(h0, dtype=DTYPE)
        for _ in range(T):
            h = torch.tanh(w * h + b)
        (grad,) = torch.autograd.grad(0.5 * (h - target) ** 2, b)
        assert out["grad"][i] == pytest.approx(float(grad), rel=1e-10, abs=1e-14)
    steps = np.abs(np.diff(out["clipped"]["params"]))
    assert steps.max() <= 0.5 * 0.2 + 1e-12
    assert out["clipped"]["longest_step"] == pytest.approx(steps.max())
    plain = out["plain"]  # b_{i+1} = b_i - lr dL/db(b_i), each gradient the exact one
    assert np.allclose(np.diff(plain["params"]), -0.5 * np.array(plain["grads"][:-1]), atol=1e-12)


# ---------------------------------------------------------------- runs


def monitored_run(folder: Path, steps: int = 4, seed: int = 0) -> Path:
    """A small real run of gradtrace.Monitor (an nn.RNN, clipped), logged under `folder`."""
    torch.manual_seed(seed)
    model = torch.nn.RNN(2, 4, dtype=DTYPE)
    head = torch.nn.Linear(4, 1, dtype=DTYPE)
    opt = torch.optim.SGD([*model.parameters(), *head.parameters()], lr=0.1)
    monitor = Monitor(model, opt, every=every(1), log=folder, chunk=3)
    for step in range(steps):
        x = torch.randn(9, 2, 2, dtype=DTYPE)
        with monitor.step(step) as s:
            loss = s.loss(head(model(x)[0]).pow(2).mean())
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.05)
            opt.step()
            opt.zero_grad()
    monitor.close()
    return folder / "monitor.jsonl"


def run_record(seed: int, lr: float) -> dict[str, Any]:
    """A sweep run's record as the store takes it; lr >= 1 diverges (+inf and NaN metrics)."""
    diverged = lr >= 1
    return {
        "config": {"seed": seed, "lr": lr, "model": "lstm"},
        "status": "diverged" if diverged else "finished",
        "seconds": 0.5,
        "metrics": {"final_loss": 1 / (seed + 1), "max_grad_norm": math.inf if diverged else 2.0,
                    "steps_to_target": math.nan},
        "curves": {"loss": [1.0, 0.5]},
    }  # fmt: skip


def small_store(path: Path, seeds: range = range(3)) -> Path:
    with ResultsStore(path) as store:
        for seed in seeds:
            for lr in (0.01, 2.0):
                store.put(run_record(seed, lr), sweep="demo")
    return path


@pytest.fixture(scope="module")
def runs_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    monitored_run(root / "exp" / "a")
    monitored_run(root / "b", steps=3, seed=1)
    return root


def test_run_panel_shows_the_log_as_gradtrace_load_reads_it(runs_folder: Path) -> None:
    sources = RunSources(runs_folder)
    assert sources.names() == ["b", "exp/a"]
    out = run_panel(sources, run="exp/a", layer="", last=1000)
    steps = [
        r for r in gradtrace.load(runs_folder / "exp/a/monitor.jsonl") if isinstance(r, MonitorStep)
    ]
    assert out["steps"] == [s.step for s in steps] and out["recorded_steps"] == 4
    assert out["grad_norm"] == [s.grad_norm for s in steps]
    assert out["layers"] == ["rnn layer 0 forward"] and out["layer"] == "rnn layer 0 forward"
    profiles = [s.profiles[0] for s in steps]
    assert out["heatmap"]["boundaries"] == list(profiles[0].boundaries)
    expected = [[math.log10(v) for v in p.total.tolist()] for p in profiles]
    assert np.allclose(values(out["heatmap"]["log10_total"]), expected, rtol=0, atol=1e-15)
    assert out["clip"]["max_norm"] == [0.05] * 4
    assert out["clip"]["acted"] == [s.clip.acted for s in steps if s.clip]
    assert out["header"]["model"] == "RNN"
    assert run_panel(sources, run="exp/a", layer="", last=2)["steps"] == [2, 3]


def test_a_growing_log_is_read_line_by_line_and_a_torn_line_is_left_for_later(
    runs_folder: Path, tmp_path: Path
) -> None:
    lines = (runs_folder / "b" / "monitor.jsonl").read_bytes().splitlines(keepends=True)
    log = tmp_path / "monitor.jsonl"
    log.write_bytes(b"".join(lines[:2]))
    tail = LogTail(log)
    assert len(tail.read()[0]) == 2
    with log.open("ab") as f:
        f.write(lines[2][:40])  # a writer mid-line
    records, torn = tail.read()
    assert (len(records), torn) == (2, True)
    with log.open("ab") as f:
        f.write(lines[2][40:] + lines[3])
    records, torn = tail.read()
    assert (len(records), torn) == (4, False)
    assert [r.step for r in records[1:]] == [0, 1, 2]  # type: ignore[attr-defined]
    log.write_bytes(lines[0])  # replaced by a shorter file: read again from the start
    assert len(tail.read()[0]) == 1
    with log.open("ab") as f:
        f.write(b'{"not a record": 1}\n')
    with pytest.raises(GradtraceError, match=r"line 2 of the `run` log .* is not a record"):
        tail.read()


def test_a_run_outside_the_folder_is_refused_by_name(runs_folder: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    monitored_run(outside, steps=1)
    (runs_folder / "link").symlink_to(outside)
    try:
        sources = RunSources(runs_folder)
        assert "link" not in sources.names()
        for name in ("link", "../elsewhere", "/etc", str(outside)):
            with pytest.raises(GradtraceError, match="`run` must be one of the runs"):
                run_panel(sources, run=name, layer="", last=10)
    finally:
        (runs_folder / "link").unlink()


def test_sweeps_panel_is_the_runs_flat_view_read_live(tmp_path: Path) -> None:
    path = small_store(tmp_path / "s.sqlite")
    sources = RunSources(store=path)
    out = sweeps_panel(sources, limit=100, offset=0, order="final_loss", desc=True)
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    query = "SELECT * FROM runs_flat ORDER BY final_loss DESC, key"
    rows = db.execute(query).fetchall()
    assert out["columns"] == [d[0] for d in db.execute(query).description]
    assert out["total"] == 6 and len(out["rows"]) == 6
    for got, want in zip(out["rows"], rows, strict=True):
        expected = [None if w is None else (value_of(w)) for w in want]
        assert got == expected
    column = out["columns"].index("max_grad_norm")
    assert {row[column] for row in out["rows"]} == {2.0, "Infinity"}
    assert {row[out["columns"].index("steps_to_target")] for row in out["rows"]} == {None}
    with ResultsStore(path) as writer:  # a writer adds a run while the explorer reads
        writer.put(run_record(7, 0.1), sweep="demo")
        assert sweeps_panel(sources, limit=2, offset=0, order="", desc=False)["total"] == 7
    page = sweeps_panel(sources, limit=2, offset=5, order="seed", desc=False)
    assert [r[out["columns"].index("seed")] for r in page["rows"]] == [2, 7]
    with pytest.raises(GradtraceError, match="`order` must be a column of runs_flat"):
        sweeps_panel(sources, limit=2, offset=0, order="x; DROP TABLE runs", desc=False)
    db.close()


def value_of(v: Any) -> Any:
    return ("Infinity" if v > 0 else "-Infinity") if isinstance(v, float) and math.isinf(v) else v


# ---------------------------------------------------------------- the API


@pytest.fixture(scope="module")
def client(runs_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    store = small_store(tmp_path_factory.mktemp("store") / "s.sqlite")
    app = create_app(RunSources(runs_folder, store))
    return TestClient(app, base_url="http://127.0.0.1")


MALFORMED = [
    ("rnn", "hidden_size=abc", "hidden_size"),
    ("rnn", "hidden_size=0", "hidden_size"),
    ("rnn", "hidden_size=100000", "hidden_size"),
    ("rnn", "steps=1e9", "steps"),
    ("rnn", "steps=10&steps=20", "steps"),
    ("rnn", "cell=transformer", "cell"),
    ("rnn", "foo=1", "foo"),
    ("rnn", "init=eig-uniform&lo=2&hi=1", "hi"),
    ("rnn", "cell=lstm&hidden_size=256&steps=2000", "hidden_size"),
    ("rnn", "mode=checkpoint&cell=gru", "mode"),
    ("rnn", "mode=checkpoint&batch=2", "batch"),
    ("rnn", "seed=-1", "seed"),
    ("rnn", "lyapunov=1.5", "lyapunov"),
    ("rnn", "hidden_size=%00", "hidden_size"),
    ("activation", "x=nan", "x"),
    ("activation", "x=inf", "x"),
    ("activation", "x=7", "x"),
    ("activation", "x=" + "1" * 300, "x"),
    ("activation", "activation=swish", "activation"),
    ("activation", "n=99999999999999", "n"),
    ("depth", "layers=1000", "layers"),
    ("depth", "init=orthogonal", "init"),
    ("map", "map=tent", "map"),
    ("map", "r=4.5", "r"),
    ("bifurcation", "r_lo=3&r_hi=2", "r_hi"),
    ("basins", "points=100000", "points"),
    ("cliff", "clip=0", "clip"),
    ("cliff", "lo=1&hi=0", "hi"),
    ("sweeps", "limit=0", "limit"),
    ("sweeps", "order=nope", "order"),
    ("run", "run=../../etc", "run"),
    ("run", "layer=lstm", "layer"),
    ("transformer", "", "panel"),
]


@pytest.mark.parametrize(
    ("panel", "query", "name"), MALFORMED, ids=[f"{p}-{n}" for p, _, n in MALFORMED]
)
def test_a_malformed_request_gets_a_4xx_naming_the_parameter_and_the_server_goes_on(
    client: TestClient, panel: str, query: str, name: str
) -> None:
    response = client.get(f"/api/{panel}?{query}")
    assert 400 <= response.status_code < 500
    body = response.json()
    assert body["parameter"] == name
    message = body["error"]
    assert f"`{name}`" in message and message.endswith(".") and "\n" not in message
    assert any(w in message for w in ("got", "expected", "lower"))  # received, expected, fix
    assert client.get("/api/activation?x=0.5").status_code == 200


def test_answers_are_the_panel_functions_in_strict_json(client: TestClient) -> None:
    response = client.get("/api/activation?activation=relu&x=-1&n=2")
    assert response.status_code == 200
    body = json.loads(response.text, parse_constant=lambda c: pytest.fail(f"bare {c} in JSON"))
    assert body == activation_panel(activation="relu", x=-1.0, n=2)
    assert body["log10_power"] == [0.0, "-Infinity", "-Infinity"]
    rnn = client.get("/api/rnn?hidden_size=4&steps=12&cell=gru").json()
    assert rnn == json.loads(json.dumps(call("rnn", hidden_size=4, steps=12, cell="gru")))


def test_the_schema_is_every_panels_parameters(client: TestClient) -> None:
    schema = client.get("/api/schema").json()
    assert set(schema) == set(REGISTRY)
    for name, panel in REGISTRY.items():
        assert [s["name"] for s in schema[name]] == [p.name for p in panel.params]
        assert [s["default"] for s in schema[name]] == list(defaults(panel.params).values())


def test_the_page_and_plotly_come_from_this_machine(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "/static/plotly.min.js" in page.text
    plotly = client.get("/static/plotly.min.js")
    spec = importlib.util.find_spec("plotly")
    assert spec is not None and spec.origin is not None
    wheel = Path(spec.origin).parent / "package_data" / "plotly.min.js"
    assert plotly.content == wheel.read_bytes() == plotly_js()
    for name in ("index.html", "explorer.js", "explorer.css"):
        text = (STATIC / name).read_text()
        assert "http://" not in text and "https://" not in text  # no CDN, no web font
    assert client.get("/static/explorer.js").headers["content-type"].startswith("text/javascript")


def test_requests_for_another_host_are_refused(client: TestClient) -> None:
    assert client.get("/api/activation", headers={"Host": "evil.example"}).status_code == 400


TRAVERSAL = [
    "/static/../server.py",
    "/static/%2e%2e/server.py",
    "/static/%2E%2E/params.py",
    "/static/..%2fserver.py",
    "/static/%2e%2e%2f%2e%2e%2fcli%2fmain.py",
    "/static/..%5cserver.py",
    "/static//etc/passwd",
    "/static/%2fetc%2fpasswd",
    "/static/./../server.py",
    "/../../etc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/static/explorer.js/../../server.py",
]


def raw_get(url: str, path: str) -> tuple[int, bytes]:
    """GET exactly `path` (no client-side normalisation of dots or escapes)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_host=True)
        conn.putheader("Host", f"{parts.hostname}:{parts.port}")
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_paths_out_of_the_static_folder_are_refused_over_real_http() -> None:
    with running(create_app()) as url:
        for path in TRAVERSAL:
            status, body = raw_get(url, path)
            assert 400 <= status < 500, path
            assert b"def create_app" not in body and b"root:" not in body, path
            assert "error" in json.loads(body), path
        assert raw_get(url, "/static/explorer.css")[0] == 200


def test_400_requests_from_8_concurrent_clients_all_succeed() -> None:
    queries = [  # small updates of five panels, and one refused
        "activation?x=0.25&n=3", "rnn?hidden_size=3&steps=8&lyapunov=2",
        "depth?layers=3&hidden_size=4&batch=2", "cliff?steps=3&points=11&iterations=2",
        "activation?activation=relu&x=-1", "rnn?hidden_size=3&steps=6&cell=lstm&lyapunov=1",
        "depth?layers=1&hidden_size=2&batch=1&activation=relu", "rnn?hidden_size=999",
    ]  # fmt: skip
    results: list[tuple[str, int, bytes]] = []
    lock = threading.Lock()
    with running(create_app()) as url:
        parts = urlsplit(url)

        def client_thread(offset: int) -> None:
            conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
            got = []
            for i in range(50):
                query = queries[(offset + i) % len(queries)]
                conn.request("GET", f"/api/{query}")
                response = conn.getresponse()
                got.append((query, response.status, response.read()))
            conn.close()
            with lock:
                results.extend(got)

        threads = [threading.Thread(target=client_thread, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    assert len(results) == 400
    for query, status, body in results:  # the refused one is refused every time, in words
        assert status == (400 if "999" in query else 200), (query, body[:200])
    first = {q: b for q, s, b in results}
    for query, _, body in results:
        assert body == first[query]  # concurrent answers are identical to each other
    panel, _, text = queries[1].partition("?")
    direct = call(panel, **dict(pair.split("=") for pair in text.split("&")))
    assert json.loads(first[queries[1]]) == json.loads(json.dumps(direct))


# ---------------------------------------------------------------- the command


def invoke(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        cli(argv)
        code = 0
    except SystemExit as done:
        code = int(done.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_explore_help_has_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = invoke(["explore", "--help"], capsys)
    assert code == 0 and "Example: gradtrace explore" in out
    assert "--no-browser" in out and "--runs" in out and "--store" in out


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--port", "0"], "`--port` must be a whole number from 1 to 65535, got 0"),
        (["--port", "70000"], "`--port` must be a whole number from 1 to 65535"),
        (["--port", "abc"], "Invalid value for '--port'"),
        (["--runs", "/no/such/folder"], "`--runs` must be a folder"),
        (["--store", "/no/such.sqlite"], "`--store` must be an existing gradtrace results store"),
        (["--host", "no.such.host.invalid"], "`--host` must be an address of this machine"),
        (["--bogus"], "No such option: --bogus"),
    ],
    ids=["port-0", "port-big", "port-text", "runs-missing", "store-missing", "host", "option"],
)
def test_bad_options_are_one_line_and_exit_2(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = invoke(["explore", "--no-browser", *argv], capsys)
    assert code == 2 and out == ""
    assert err.startswith("gradtrace: error: ") and err.count("\n") == 1
    assert words in err


def test_a_port_in_use_is_refused_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code, _, err = invoke(["explore", "--no-browser", "--port", str(port)], capsys)
    assert code == 2 and f"`--port` {port} on 127.0.0.1 cannot be used" in err


def test_a_file_that_is_not_a_store_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "notes.sqlite"
    bad.write_text("not a database")
    code, _, err = invoke(["explore", "--no-browser", "--store", str(bad)], capsys)
    assert code == 2 and err.startswith("gradtrace: error: ") and "`--store`" in err


def test_without_the_extra_one_sentence_names_the_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if it were not installed
    with pytest.raises(
        GradtraceError, match=r"needs uvicorn .* pip install 'gradtrace\[explorer\]'"
    ):
        require_extra()
    code, _, err = invoke(["explore", "--no-browser"], capsys)
    assert code == 2
    assert err == (
        "gradtrace: error: the explorer needs uvicorn (the explorer extra), which is not "
        "installed: pip install 'gradtrace[explorer]'.\n"
    )


def test_the_command_serves_the_page_and_prints_its_url() -> None:
    """The real `gradtrace explore` process, on a free port, answering over HTTP."""
    argv = [sys.executable, "-m", "gradtrace", "explore", "--no-browser"]
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("gradtrace explorer at http://127.0.0.1:"), line
            url = line.split()[3]
            status, body = raw_get(url, "/api/activation?x=0")
            assert status == 200 and json.loads(body)["dphi_x0"] == 0.25
            assert raw_get(url, "/")[0] == 200
        finally:
            proc.terminate()
            proc.wait(10)
