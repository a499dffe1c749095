"""The explorer in a real headless Chromium, served by a real uvicorn server on 127.0.0.1.

Each test moves controls the way a user does (keys on a slider, a choice in a select, typing
in a box), then reads the plotted data out of the page (each Plotly div's `data`) and the
numbers it shows (each number's text and its exact value in `data-value`), and compares them
with the library called directly for the same settings: exact for what the server sends
(1e-12 where a float goes through JSON and back), 4 significant digits for the text. The runs
panel follows a monitor log and a store that are written during the test; a reload restores
the view from its address; a refused update shows in words and the page goes on. Every test
saves a screenshot under its tmp_path.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import gradtrace
from gradtrace.analysis.curve import CurveConfig, run_curve
from gradtrace.analysis.depth import depth_profile
from gradtrace.cells import random_weights
from gradtrace.dynamics.chaos import map_report
from gradtrace.dynamics.cliff import cliff_report
from gradtrace.dynamics.rnn_dynamics import rnn_portrait, small_rnn
from gradtrace.explorer import RunSources, create_app, running
from gradtrace.records import MonitorStep, append
from gradtrace.records.cliff import CliffRNN
from gradtrace.store import ResultsStore
from test_explorer import monitored_run, run_record, small_store

TEXT_DIGITS = 5e-4  # a number shown with 4 significant digits


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("served")
    log = monitored_run(root / "runs" / "rnn", steps=3)
    store = small_store(root / "sweep.sqlite")
    with running(create_app(RunSources(root / "runs", store))) as url:
        yield {"url": url, "log": log, "store": store}


# ---------------------------------------------------------------- reading the page


def updates(page: Any, panel: str) -> int:
    return int(page.evaluate("p => window.explorer.updates[p] || 0", panel))


def settle(page: Any, panel: str, after: int = 0) -> None:
    """Wait until `panel` has answered more than `after` times and nothing is pending."""
    page.wait_for_function(
        "([p, n]) => window.explorer && (window.explorer.updates[p] || 0) > n"
        " && window.explorer.idle(p)",
        arg=[panel, after],
        timeout=20_000,
    )


def traces(page: Any, plot: str, z: bool = False) -> list[dict[str, Any]]:
    """The Plotly traces of a plot div, as the page holds them (null for gaps); a heatmap's
    z only when asked (it can be large)."""
    return page.evaluate(  # type: ignore[no-any-return]
        "([id, z]) => document.getElementById(id).data.map("
        "t => ({name: t.name, x: t.x, y: t.y, z: z ? t.z : null}))",
        [plot, z],
    )


def trace(page: Any, plot: str, name: str) -> dict[str, Any]:
    found = [t for t in traces(page, plot) if t["name"] == name]
    assert len(found) == 1, [t["name"] for t in traces(page, plot)]
    return found[0]


def shown(page: Any, panel: str, key: str) -> tuple[str, Any]:
    """The text of a number the page shows, and its exact value."""
    element = page.locator(f"#num-{panel}-{key}")
    return element.inner_text(), json.loads(element.get_attribute("data-value"))


def check_number(page: Any, panel: str, key: str, expected: float, tol: float = 1e-12) -> None:
    text, exact = shown(page, panel, key)
    assert exact == pytest.approx(expected, rel=tol, abs=tol)
    assert float(text) == pytest.approx(expected, rel=TEXT_DIGITS, abs=1e-12)


def press(page: Any, control: str, key: str, times: int = 1) -> None:
    page.focus(control)
    for _ in range(times):
        page.keyboard.press(key)


def log10s(values: Any) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


# ---------------------------------------------------------------- the tests


def test_activation_rnn_and_depth_panels_show_the_library_numbers(
    page: Any, served: dict[str, Any], tmp_path: Path
) -> None:
    page.goto(served["url"])
    settle(page, "activation")
    before = trace(page, "plot-activation-power", "phi'(x0)^n")["y"]
    assert before == pytest.approx([n * math.log10(0.25) for n in range(21)], abs=1e-12)
    check_number(page, "activation", "dphi_x0", 0.25)
    n = updates(page, "activation")
    press(page, "#control-activation-x", "ArrowRight", 5)  # x0 = 0.25 (step 0.05)
    settle(page, "activation", n)
    x0 = torch.tensor(0.25, dtype=torch.float64, requires_grad=True)
    (slope,) = torch.autograd.grad(torch.sigmoid(x0), x0)
    check_number(page, "activation", "dphi_x0", float(slope))
    after = trace(page, "plot-activation-power", "phi'(x0)^n")["y"]
    assert after != before
    assert after == pytest.approx([m * math.log10(float(slope)) for m in range(21)], abs=1e-12)

    page.click("#tab-button-rnn")
    settle(page, "rnn")
    n = updates(page, "rnn")
    page.select_option("#control-rnn-activation", "sigmoid")
    press(page, "#control-rnn-hidden_size", "ArrowLeft", 22)  # H = 10
    settle(page, "rnn", n)
    config = CurveConfig(activation="sigmoid", hidden_size=10, steps=100, spectrum="radius:1.1",
                         lyapunov=8, device="cpu")  # fmt: skip
    flow = run_curve(config)
    curve = trace(page, "plot-rnn-curve", "c(k) measured")
    assert np.allclose(curve["y"], flow.log10_norm[0], rtol=0, atol=1e-12)
    bound = trace(page, "plot-rnn-curve", "bound (gamma*sigma_max)^(T-k)")["y"]
    assert np.allclose(bound, flow.theory.bound_log10, rtol=0, atol=1e-12)
    assert flow.lyapunov is not None
    lyapunov = trace(page, "plot-rnn-lyapunov", "lambda_i")["y"]
    assert np.allclose(lyapunov, flow.lyapunov.exponents[0], rtol=0, atol=1e-12)
    weights = random_weights("rnn", 10, 8, spectrum="radius:1.1", activation="sigmoid")
    eig = trace(page, "plot-rnn-spectrum", "eigenvalues of W_hh")
    got = np.sort_complex(np.array(eig["x"]) + 1j * np.array(eig["y"]))
    assert np.allclose(got, np.sort_complex(torch.linalg.eigvals(weights.W_hh).numpy()), atol=1e-12)
    circle = trace(page, "plot-rnn-spectrum", "|lambda| = 1/gamma = 4")
    assert np.allclose(np.hypot(circle["x"], circle["y"]), 4.0)
    assert shown(page, "rnn", "verdict")[0] == flow.verdict
    assert shown(page, "rnn", "horizon") == (str(flow.horizon), flow.horizon)
    check_number(page, "rnn", "rate_per_step", flow.rate_per_step)
    check_number(page, "rnn", "sigma_max", flow.theory.sigma_max)
    assert flow.note in page.inner_text("#words-rnn")

    # A refused update: the server's sentence in the page, the last plot kept, then recovery.
    n = updates(page, "rnn")
    page.select_option("#control-rnn-init", "eig-uniform")  # eigenvalues in [0, 1.2)
    settle(page, "rnn", n)
    error = page.locator("#error-rnn")
    assert error.is_hidden()
    good = trace(page, "plot-rnn-curve", "c(k) measured")["y"]
    n = updates(page, "rnn")
    press(page, "#control-rnn-hi", "Home")  # hi = -5, below lo = 0
    settle(page, "rnn", n)
    assert error.is_visible()
    words = error.inner_text()
    assert "hi must be above lo = 0, got -5" in words
    assert "The last good results stay on the page" in words
    assert trace(page, "plot-rnn-curve", "c(k) measured")["y"] == good
    page.screenshot(path=str(tmp_path / "refused.png"), full_page=True)
    n = updates(page, "rnn")
    press(page, "#control-rnn-hi", "End")  # hi = 5: a valid interval again
    settle(page, "rnn", n)
    assert error.is_hidden()
    flow = run_curve(dataclasses.replace(config, spectrum="eig-uniform:0.0:5.0"))
    curve = trace(page, "plot-rnn-curve", "c(k) measured")
    assert np.allclose(curve["y"], flow.log10_norm[0], rtol=0, atol=1e-12)

    page.click("#tab-button-depth")
    settle(page, "depth")
    n = updates(page, "depth")
    page.select_option("#control-depth-activation", "tanh")
    settle(page, "depth", n)
    n = updates(page, "depth")
    page.select_option("#control-depth-init", "xavier")
    settle(page, "depth", n)
    profile = depth_profile(20, 64, "tanh", "xavier", batch=32, seed=0)
    norms = trace(page, "plot-depth-norms", "||dL/dy_l|| measured")["y"]
    assert np.allclose(norms, profile.log10_grad_norm, rtol=0, atol=1e-12)
    assert shown(page, "depth", "verdict")[0] == profile.verdict
    check_number(page, "depth", "rate_per_layer", profile.rate_per_layer)
    page.screenshot(path=str(tmp_path / "depth.png"), full_page=True)


def test_dynamics_panels_show_the_library_numbers(
    page: Any, served: dict[str, Any], tmp_path: Path
) -> None:
    page.goto(served["url"] + "?tab=dynamics")
    for panel in ("map", "bifurcation", "basins", "cliff"):
        settle(page, panel)
    marker = trace(page, "plot-bifurcation", "r = 3.5 (the map above)")
    assert marker["x"] == [3.5, 3.5]
    n, m = updates(page, "map"), updates(page, "bifurcation")
    press(page, "#control-map-r", "End")  # r = 4: chaos, lambda = ln 2
    settle(page, "map", n)
    report = map_report("logistic", 4.0, x0=0.2, steps=40, orders=(1, 2))
    orbit = trace(page, "plot-map-orbit", "x_t")["y"]
    assert np.allclose(orbit, report.orbit, rtol=0, atol=1e-12)
    check_number(page, "map", "lyapunov", report.lyapunov.value)
    assert shown(page, "map", "lyapunov")[1] == pytest.approx(math.log(2), abs=0.05)
    fixed = sorted(json.loads(v) for v in page.locator("#fixed-map li").evaluate_all(
        "items => items.map(i => i.dataset.value)"))  # fmt: skip
    assert fixed == pytest.approx([0.0, 0.75], abs=1e-12)  # 0 and 1 - 1/r
    assert trace(page, "plot-bifurcation", "r = 4 (the map above)")["x"] == [4, 4]
    assert updates(page, "bifurcation") == m  # the marker moved without a new diagram

    n = updates(page, "basins")
    press(page, "#control-basins-w12", "ArrowRight", 10)  # W[1,2] = 0.6
    settle(page, "basins", n)
    portrait = rnn_portrait(small_rnn([[2.0, 0.6], [0.5, 2.0]], [0.1, 0.0]), points=101, steps=100)
    heat = traces(page, "plot-basins", z=True)[0]
    assert heat["z"] == portrait.labels.tolist()

    n = updates(page, "cliff")
    before = shown(page, "cliff", "clipped_longest")[1]
    press(page, "#control-cliff-clip", "ArrowLeft", 10)  # log10 eta from -1 to -1.1
    settle(page, "cliff", n)
    eta = float(page.evaluate("() => window.explorer.values['cliff.clip']"))
    assert eta == pytest.approx(10**-1.1, rel=1e-2)
    report_c = cliff_report(CliffRNN(w=1.5, steps=20, h0=0.5, target=-0.7), lo=-1.5, hi=1.0,
                            points=501, start=0.5, lr=1.0, clip=eta, iterations=40)  # fmt: skip
    longest = float(report_c.clipped.step_lengths.max())
    check_number(page, "cliff", "clipped_longest", longest)
    assert longest <= eta + 1e-12 and longest != before
    path = trace(page, "plot-cliff-loss", "clipped descent")["x"]
    assert np.allclose(path, report_c.clipped.params, rtol=0, atol=1e-12)
    page.screenshot(path=str(tmp_path / "dynamics.png"), full_page=True)


def test_runs_panel_follows_a_log_and_a_store_while_they_are_written(
    page: Any, served: dict[str, Any], tmp_path: Path
) -> None:
    page.goto(served["url"] + "?tab=runs")
    settle(page, "run")
    settle(page, "sweeps")
    steps = [r for r in gradtrace.load(served["log"]) if isinstance(r, MonitorStep)]
    heat = traces(page, "plot-run-heatmap", z=True)[0]
    expected = [[math.log10(v) for v in s.profiles[0].total.tolist()] for s in steps]
    assert np.allclose(heat["z"], expected, rtol=0, atol=1e-12)
    assert heat["y"] == [s.step for s in steps]
    norms = trace(page, "plot-run-norms", "global gradient norm")["y"]
    assert norms == pytest.approx([s.grad_norm for s in steps], rel=1e-15)
    rows = page.locator("#table-sweeps tr").count() - 1
    assert rows == 6

    # The run goes on, and the sweep adds a run: the page follows both within a few polls.
    append(dataclasses.replace(steps[-1], step=steps[-1].step + 1), served["log"])
    with ResultsStore(served["store"]) as store:
        store.put(run_record(9, 0.5), sweep="demo")
    page.wait_for_function(
        "() => document.getElementById('plot-run-heatmap').data[0].y.length === 4"
        " && document.querySelectorAll('#table-sweeps tr').length === 8",
        timeout=20_000,
    )
    n = updates(page, "run")
    page.fill("#control-run-last", "2")  # only the latest two recorded steps
    settle(page, "run", n)
    assert traces(page, "plot-run-heatmap")[0]["y"] == [steps[-1].step, steps[-1].step + 1]
    page.screenshot(path=str(tmp_path / "runs.png"), full_page=True)


def test_a_reload_restores_the_view_from_its_address(
    page: Any, served: dict[str, Any], tmp_path: Path
) -> None:
    # A malformed address: the server's sentence in the page, and the next move recovers.
    page.goto(served["url"] + "?tab=activation&activation.x=abc")
    settle(page, "activation")
    error = page.inner_text("#error-activation")
    assert "x must be a finite number from -6 to 6, got 'abc'" in error
    n = updates(page, "activation")
    press(page, "#control-activation-x", "ArrowLeft", 2)  # from the slider's 0 to -0.1
    settle(page, "activation", n)
    assert page.locator("#error-activation").is_hidden()
    assert shown(page, "activation", "phi_x0")[1] == pytest.approx(1 / (1 + math.exp(0.1)))

    page.click("#tab-button-rnn")
    settle(page, "rnn")
    n = updates(page, "rnn")
    page.select_option("#control-rnn-cell", "gru")
    press(page, "#control-rnn-steps", "ArrowLeft", 40)  # T = 60
    settle(page, "rnn", n)
    curve = trace(page, "plot-rnn-curve", "c(k) measured")["y"]
    page.click("#tab-button-depth")
    settle(page, "depth")
    n = updates(page, "depth")
    press(page, "#control-depth-layers", "ArrowRight", 10)  # L = 30
    settle(page, "depth", n)
    norms = trace(page, "plot-depth-norms", "||dL/dy_l|| measured")["y"]
    address = page.url
    for part in (
        "tab=depth",
        "activation.x=-0.1",
        "rnn.cell=gru",
        "rnn.steps=60",
        "depth.layers=30",
    ):
        assert part in address

    page.reload()
    settle(page, "depth")
    assert page.url == address
    assert page.get_attribute("#tab-button-depth", "aria-selected") == "true"
    assert page.input_value("#control-depth-layers") == "30"
    assert trace(page, "plot-depth-norms", "||dL/dy_l|| measured")["y"] == norms
    page.click("#tab-button-rnn")
    settle(page, "rnn")
    assert page.input_value("#control-rnn-cell") == "gru"
    assert page.input_value("#control-rnn-steps") == "60"
    assert trace(page, "plot-rnn-curve", "c(k) measured")["y"] == curve
    flow = run_curve(CurveConfig(cell="gru", steps=60, spectrum="radius:1.1", lyapunov=8,
                                 device="cpu"))  # fmt: skip
    assert np.allclose(curve, flow.log10_norm[0], rtol=0, atol=1e-12)
    page.click("#tab-button-activation")
    settle(page, "activation")
    assert page.input_value("#control-activation-x") == "-0.1"
    assert shown(page, "activation", "phi_x0")[1] == pytest.approx(1 / (1 + math.exp(0.1)))
    page.screenshot(path=str(tmp_path / "restored.png"), full_page=True)
