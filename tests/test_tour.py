"""Tests for the tour (`gradtrace tour`, its alias `gradtrace demo`, `gradtrace.tour`).

The tour runs once for the module, through the CLI in-process, from an empty working folder (so
no reproduction report is found and the remedies are trained live). Its numbers are read from
the page's JSON block and checked against independent references written here: lecture 000's
computation transcribed from the lecture (numpy's legacy generator, seed 12345, the lecture's
order of draws), torch.autograd step Jacobians in float64, torch.linalg (spectral norms,
eigenvalues, matrix powers), closed forms (0.25^n, w^(T-1), fixed points of x^2 + c and
r x (1 - x), ln 2 for the logistic map at r = 4) and the published area of the Mandelbrot set.
The page itself is loaded in headless Chromium with every request that is not a file: or data:
URL recorded and aborted.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import gradtrace
from gradtrace.analysis.curve import run_curve
from gradtrace.analysis.depth import depth_profile
from gradtrace.cells import random_weights
from gradtrace.cli.main import app, run
from gradtrace.dynamics.cliff import cliff_report
from gradtrace.records import ClaimResult, Record, Reproduction, TrainRun
from gradtrace.tour import SECTIONS, find_reproduction, run_tour
from gradtrace.tour.bounds import BOUND_CONFIGS, STEEPEST_STEPS
from gradtrace.tour.depth import POWER_SEED, power_matrix
from gradtrace.tour.gates import GATED, PATH_H, PATH_I, PATH_T, SATURATE
from gradtrace.tour.landscape import BASIN_STEPS, BASIN_W, MANDELBROT_AREA
from gradtrace.tour.page import Section, render_page

ORDER = [
    "sigmoid", "sigmoid-gradient", "decay", "checkpoint-vanishing", "checkpoint-exploding",
    "bound", "non-normal", "depth", "matrix-power", "univariate", "iterated-maps",
    "fixed-points", "mandelbrot", "attractors", "cliff", "remedies", "gated-cells",
    "lstm-cell-path",
]  # fmt: skip
pytestmark = pytest.mark.slow  # the module's fixture runs the whole tour (about 20 s)
DATA = re.compile(r'<script type="application/json" id="tour-data">(.*?)</script>', re.S)
PNG = b"\x89PNG\r\n\x1a\n"


def invoke(argv: list[str]) -> tuple[int, str, str]:
    """Run the CLI in-process; return (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            run(argv)
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def page_data(html: str) -> dict[str, Any]:
    match = DATA.search(html)
    assert match is not None, "the page has no tour-data block"
    data = json.loads(match.group(1))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def tour(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One run of `gradtrace tour --out OUT` from an empty working folder."""
    home = tmp_path_factory.mktemp("cwd")
    out = tmp_path_factory.mktemp("tour") / "out"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(home)
        code, stdout, stderr = invoke(["tour", "--out", str(out)])
    assert (code, stderr) == (0, ""), stderr
    html = (out / "tour.html").read_text()
    yield {"out": out, "stdout": stdout, "html": html, "data": page_data(html)["sections"]}


def section(tour: dict[str, Any], name: str) -> dict[str, Any]:
    found = tour["data"][name]
    assert isinstance(found, dict)
    return found


# ---------------------------------------------------------------- the page


def test_the_page_makes_no_request_and_renders(tour: dict[str, Any], page: Any) -> None:
    asked: list[str] = []

    def guard(route: Any) -> None:
        url = route.request.url
        if url.startswith(("file:", "data:")):
            route.continue_()
        else:
            asked.append(url)
            route.abort()

    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.route("**/*", guard)
    page.goto((tour["out"] / "tour.html").as_uri())
    page.wait_for_load_state("load")
    assert asked == [] and errors == []  # nothing fetched, nothing refused by the policy
    images = page.evaluate("Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
    assert len(images) == tour["html"].count("<img ") and len(images) >= len(ORDER)
    assert all(images)
    ids = page.evaluate("Array.from(document.querySelectorAll('section')).map(s => s.id)")
    assert ids == ORDER
    links = page.evaluate("Array.from(document.querySelectorAll('nav a')).map(a => a.hash)")
    assert links == [f"#{name}" for name in ORDER]


def test_the_page_links_nothing_outside_itself(tour: dict[str, Any]) -> None:
    html = tour["html"]
    assert re.search(r"(src|href)=\"(?!data:|#)", html) is None
    assert "<link" not in html and "@import" not in html and "url(" not in html
    assert "default-src 'none'" in html  # the policy forbids any fetch but data: images
    srcs = re.findall(r'<img src="data:image/png;base64,([^"]+)"', html)
    assert srcs and all(base64.b64decode(s).startswith(PNG) for s in srcs)


def test_every_section_in_the_lectures_order_with_a_verdict(tour: dict[str, Any]) -> None:
    html = tour["html"]
    assert list(SECTIONS) == ORDER
    assert re.findall(r'<section id="([^"]+)"', html) == ORDER
    assert list(tour["data"]) == ORDER
    for name in ORDER:
        body = html[html.index(f'<section id="{name}"') :]
        body = body[: body.index("</section>")]
        verdict = tour["data"][name]["verdict"]
        assert verdict in ("agree", "disagree")
        assert f'data-verdict="{verdict}"' in body
        assert body.count('<p class="verdict') == 1
        for part in ("The lecture claims", "gradtrace measures", "<h2>"):
            assert part in body


def test_the_cli_prints_the_page_and_writes_records_that_load(tour: dict[str, Any]) -> None:
    lines = tour["stdout"].splitlines()
    page = tour["out"] / "tour.html"
    assert lines[-1] == f"open {page.resolve()}"
    assert lines[0].startswith("gradtrace tour: 18 sections") and "trained live" in lines[0]
    records = sorted(tour["out"].glob("*.json"))
    assert f"records: {len(records)} JSON files" in tour["stdout"]
    assert len(records) >= len(ORDER)
    for path in records:
        assert isinstance(gradtrace.load(path), Record)
    assert not [p for p in tour["out"].iterdir() if p.name.startswith(".")]  # no temp files


# ---------------------------------------------------------------- lecture 004 and the sigmoid


def test_sigmoid_bound_and_tangents(tour: dict[str, Any]) -> None:
    s = section(tour, "sigmoid")
    assert s["max_slope"] == 0.25 and s["argmax"] == 0.0 and s["gamma"] == 0.25
    x = torch.tensor(s["tangent_x"], dtype=torch.float64, requires_grad=True)
    (slope,) = torch.autograd.grad(torch.sigmoid(x).sum(), x)
    np.testing.assert_allclose(slope.numpy(), s["tangent_slope"], rtol=0, atol=1e-15)
    grid = np.linspace(-5, 5, 100)  # lecture 004's data
    sig = 1 / (1 + np.exp(-grid))
    ours = {
        "max sigmoid": sig.max(),
        "min sigmoid": sig.min(),
        "max gradient": (sig * (1 - sig)).max(),
        "min gradient": (sig * (1 - sig)).min(),
    }
    for key, value in ours.items():
        assert s["extremes"][key] == pytest.approx(value, rel=1e-12)
        assert round(value, 3) == s["quoted_extremes"][key]
    assert s["verdict"] == "agree"


def test_the_helper_is_right_on_sigmoid_x_and_wrong_on_x(tour: dict[str, Any]) -> None:
    s = section(tour, "sigmoid-gradient")
    x = torch.linspace(-5, 5, 1001, dtype=torch.float64, requires_grad=True)
    (true,) = torch.autograd.grad(torch.sigmoid(x).sum(), x)
    x = x.detach()
    assert s["error_given_x"] == pytest.approx(float((x * (1 - x) - true).abs().max()), rel=1e-12)
    assert s["error_given_x"] > 29  # x(1 - x) at x = -5 is -30
    assert s["error_given_sigmoid"] < 1e-15
    assert s["helper_at_minus5_given_x"] == -30.0


def test_decay_is_a_quarter_to_the_n(tour: dict[str, Any]) -> None:
    s = section(tour, "decay")
    assert s["best"] == [0.25**n for n in s["n"]]  # exact in binary floating point
    assert s["quoted"] == [0.25, 0.0625, 0.015625, 0.00390625, 0.0009765625, 0.000244140625]
    chain = torch.zeros((), dtype=torch.float64, requires_grad=True)
    y = chain
    for _ in range(20):
        y = torch.sigmoid(y)
    (grad,) = torch.autograd.grad(y, chain)
    assert s["chain"][-1] == pytest.approx(float(grad), rel=1e-12)
    assert all(c <= b for c, b in zip(s["chain"], s["best"], strict=True))


# ---------------------------------------------------------------- lecture 000's checkpoint


def lecture_000() -> dict[str, Any]:
    """Lecture 000's random checkpoint, drawn as the lecture draws it."""
    saved = np.random.get_state()
    try:
        np.random.seed(12345)  # the legacy global generator, as in the lecture
        t = 20
        h, x = np.random.randn(5, t), np.random.randn(5, t)
        b_h, W_hx = np.random.randn(5, 1), np.random.randn(5, 5)
        eig = np.random.rand(5) * 4
        Q = np.random.randn(5, 5)
        W_low = Q @ np.diag(eig) @ np.linalg.inv(Q)
        eig = 4 + np.random.rand(5) * 10
        Q = np.random.randn(5, 5)
        W_high = Q @ np.diag(eig) @ np.linalg.inv(Q)
    finally:
        np.random.set_state(saved)
    return {"t": t, "h": h, "x": x, "b_h": b_h, "W_hx": W_hx,
            "vanishing": W_low, "exploding": W_high}  # fmt: skip


def lecture_plot(cp: dict[str, Any], W_hh: np.ndarray) -> np.ndarray:
    """The lecture's "maximum contribution" at k = 1..t, computed the lecture's way (`*=` on a
    number, np.diag of the broadcast pre-activation, the loop down to column k - 1)."""

    def slope(z: np.ndarray) -> np.ndarray:
        return (1 / (1 + np.exp(-z))) * (1 - 1 / (1 + np.exp(-z)))

    t, h, x, b_h, W_hx = cp["t"], cp["h"], cp["x"], cp["b_h"], cp["W_hx"]
    out = np.zeros(t)
    for k in range(t):
        p: Any = 1
        for i in range(t - 1, k + 1 - 2, -1):
            p *= W_hh.T @ np.diag(slope(W_hh @ h[:, i] + W_hx @ x[:, i] + b_h))
        out[k] = np.max(p)
    return out


def autograd_products(cp: dict[str, Any], W_hh: np.ndarray) -> list[torch.Tensor]:
    """dh_t/dh_k for k = 0..t-1 from torch.autograd step Jacobians at the checkpoint states."""
    W, U = torch.from_numpy(W_hh), torch.from_numpy(cp["W_hx"])
    b = torch.from_numpy(cp["b_h"][:, 0])
    h, x = torch.from_numpy(cp["h"]), torch.from_numpy(cp["x"])
    J = [
        torch.autograd.functional.jacobian(lambda s, i=i: torch.sigmoid(W @ s + U @ x[:, i] + b),
                                           h[:, i])
        for i in range(cp["t"])
    ]  # fmt: skip
    products = []
    for k in range(cp["t"]):
        P = torch.eye(5, dtype=torch.float64)
        for i in range(cp["t"] - 1, k - 1, -1):
            P = P @ J[i]
        products.append(P)
    return products


@pytest.mark.parametrize("example", ["vanishing", "exploding"])
def test_the_lecture_curve_and_the_true_curve(tour: dict[str, Any], example: str) -> None:
    s = section(tour, f"checkpoint-{example}")
    cp = lecture_000()
    W = cp[example]
    np.testing.assert_allclose(s["lecture_curve"], lecture_plot(cp, W), rtol=1e-12, atol=0)
    products = autograd_products(cp, W)
    maxabs = [math.log10(float(P.abs().max())) for P in products]
    spectral = [math.log10(float(torch.linalg.matrix_norm(P, ord=2))) for P in products]
    np.testing.assert_allclose(s["true_log10_maxabs"], maxabs, rtol=0, atol=1e-10)
    np.testing.assert_allclose(s["true_log10_spectral"], spectral, rtol=0, atol=1e-10)
    Wt = torch.from_numpy(W)
    eig = torch.linalg.eigvals(Wt)
    assert float(eig.imag.abs().max()) < 1e-9
    np.testing.assert_allclose(s["eigenvalues"], np.sort(eig.real.numpy()), rtol=1e-10)
    sigma = float(torch.linalg.matrix_norm(Wt, ord=2))
    assert s["sigma_max"] == pytest.approx(sigma, rel=1e-12)
    assert s["spectral_radius"] == pytest.approx(float(eig.abs().max()), rel=1e-10)
    if example == "vanishing":
        assert max(s["eigenvalues"]) < 4 < sigma  # eigenvalues below 4, sigma_max far above
        assert sigma > 6 * max(s["eigenvalues"])
    else:
        assert min(s["eigenvalues"]) > 4
    # The lecture's plot is not the product: it differs from the truth by decades somewhere.
    assert (
        max(
            abs(math.log10(abs(a)) - b)
            for a, b in zip(s["lecture_curve"], maxabs[1:], strict=False)
        )
        > 1
    )
    assert s["lowest_column"] == 0  # the loop never goes below column 0 for k = 1..20
    bound = [(20 - k) * math.log10(0.25 * sigma) for k in range(20)]
    np.testing.assert_allclose(s["bound_log10"], bound, rtol=1e-12)
    assert all(m <= b + 1e-9 for m, b in zip(spectral, s["step_norm_bound_log10"], strict=True))


def test_the_exploding_example_vanishes_and_says_so(tour: dict[str, Any]) -> None:
    s = section(tour, "checkpoint-exploding")
    assert (
        s["verdict"] == "disagree"
        and s["flow_verdict"] == "vanishing"
        and s["rate_per_step"] < -0.1
    )
    assert section(tour, "checkpoint-vanishing")["verdict"] == "agree"


# ---------------------------------------------------------------- lectures 001 and 002


def test_the_bound_holds_with_sigma_max(tour: dict[str, Any]) -> None:
    s = section(tour, "bound")
    for name, config in BOUND_CONFIGS.items():
        weights = random_weights(
            "rnn",
            config.hidden_size,
            config.input_size,
            spectrum=config.spectrum,
            activation=config.activation,
            seed=0,
        )
        sigma = float(torch.linalg.matrix_norm(weights.W_hh, ord=2))
        assert s["sigma_max"][name] == pytest.approx(sigma, rel=1e-12)
        flow = run_curve(config)
        excess = float((flow.log10_norm - flow.theory.bound_log10).max())
        assert s["excess"][name] == pytest.approx(excess, abs=1e-12) and excess <= 0
    assert s["flow_verdict"]["tanh-gain-3"] == "exploding" and s["lyapunov_max"]["tanh-gain-3"] > 0
    assert s["flow_verdict"]["sigmoid-gain-1.5"] == "vanishing"


def test_the_eigenvalue_criterion_is_no_bound_for_a_non_normal_matrix(
    tour: dict[str, Any],
) -> None:
    s = section(tour, "non-normal")
    W = torch.from_numpy(lecture_000()["vanishing"]) / 4  # J_t at sigmoid'(0) = 1/4
    n = range(STEEPEST_STEPS, 0, -1)
    exact = [math.log10(float(torch.linalg.matrix_norm(torch.linalg.matrix_power(W, p), ord=2)))
             for p in n]  # fmt: skip
    np.testing.assert_allclose(s["steepest_log10"], exact, rtol=0, atol=1e-10)
    rho = float(torch.linalg.eigvals(W).abs().max())
    assert rho < 1 and s["one_step_log10"] == pytest.approx(exact[-1], abs=1e-12)
    assert all(e > p * math.log10(rho) for e, p in zip(exact, n, strict=True))
    assert s["transient_verdict"] == "transient growth" and s["transient_peak_log10"] > 1
    assert s["verdict"] == "disagree"


def test_depth_profiles_are_the_library_s(tour: dict[str, Any]) -> None:
    s = section(tour, "depth")
    for name in ("sigmoid-default", "tanh-xavier", "relu-he"):
        activation, init = name.split("-")
        profile = depth_profile(30, 64, activation, init, seed=0)
        assert s[name]["rate_per_layer"] == pytest.approx(profile.rate_per_layer, rel=1e-12)
    assert s["sigmoid-default"]["verdict"] == "vanishing"
    assert s["sigmoid-default"]["rate_per_layer"] < math.log10(0.25)  # the slope alone: -0.602


def test_matrix_powers_by_the_eigendecomposition(tour: dict[str, Any]) -> None:
    s = section(tour, "matrix-power")
    W = power_matrix()
    assert POWER_SEED == 3
    norms = [math.log10(float(torch.linalg.matrix_norm(torch.linalg.matrix_power(W, p), ord=2)))
             for p in range(1, 61)]  # fmt: skip
    np.testing.assert_allclose(s["log10_norm_power"], norms, rtol=0, atol=1e-12)
    np.testing.assert_allclose(s["engine_log10"], norms, rtol=0, atol=1e-10)
    assert s["eig_error"] < 1e-10
    rho = float(torch.linalg.eigvals(W).abs().max())
    assert s["spectral_radius"] == pytest.approx(rho, rel=1e-12)


# ---------------------------------------------------------------- lecture 003


def test_univariate_values_are_w_to_the_t_minus_1(tour: dict[str, Any]) -> None:
    s = section(tour, "univariate")
    assert round(s["1.1"]["closed_form"], 2) == 106.72 == round(1.1**49, 2)
    assert round(s["0.9"]["closed_form"], 5) == 0.00573 == round(0.9**49, 5)
    for w in ("1.1", "0.9"):
        v = s[w]
        assert v["engine"] == pytest.approx(float(w) ** 49, rel=1e-12)
        assert v["autograd"] == pytest.approx(float(w) ** 49, rel=1e-12)
    assert s["1.1"]["quoted"] == round(1.1**50, 1) and s["0.9"]["quoted"] == round(0.9**50, 5)
    assert s["verdict"] == "disagree"


def test_fixed_points_of_the_two_maps(tour: dict[str, Any]) -> None:
    points = section(tour, "fixed-points")["points"]
    c, r = 0.15, 3.5
    expected = [
        ((1 - math.sqrt(1 - 4 * c)) / 2, lambda x: 2 * x),
        ((1 + math.sqrt(1 - 4 * c)) / 2, lambda x: 2 * x),
        (0.0, lambda x: r * (1 - 2 * x)),
        (1 - 1 / r, lambda x: r * (1 - 2 * x)),
    ]
    assert len(points) == len(expected)
    for point, (x, slope) in zip(points, expected, strict=True):
        assert point["x"] == pytest.approx(x, abs=1e-9)
        assert point["slope"] == pytest.approx(slope(x), abs=1e-8)
        assert point["kind"] == ("sink" if abs(slope(x)) < 1 else "source")
        assert point["leaves"] == (point["kind"] == "source")
    assert section(tour, "fixed-points")["verdict"] == "disagree"  # f' = -1.5 is no sink


def test_iterated_maps_and_the_lyapunov_exponent_at_r4(tour: dict[str, Any]) -> None:
    s = section(tour, "iterated-maps")
    assert s["turning_points_r4"] == [2**n - 1 for n in s["orders"]]
    assert s["turning_points"][:3] == [1, 3, 7]
    assert abs(s["lyapunov_r4"] - math.log(2)) < max(5 * s["lyapunov_r4_stderr"], 0.01)
    assert s["period"] == 4 and s["lyapunov"] < 0


def test_mandelbrot_area_and_members(tour: dict[str, Any]) -> None:
    s = section(tour, "mandelbrot")
    assert s["published_area"] == MANDELBROT_AREA == 1.50659177
    assert abs(s["area"] - 1.50659177) / 1.50659177 < 0.03
    for c, inside in s["members"].items():
        z, value = 0j, complex(c.strip("()"))
        for _ in range(1000):
            z = z * z + value
            if abs(z) > 2:
                break
        assert inside == (abs(z) <= 2), c


def test_gradient_vanishes_in_a_basin_and_explodes_at_its_edge(tour: dict[str, Any]) -> None:
    s = section(tour, "attractors")
    W = torch.tensor(BASIN_W, dtype=torch.float64)
    portrait = gradtrace.load(tour["out"] / "attractors.portrait.json")
    for point in portrait.fixed_points.points:  # type: ignore[union-attr]
        assert float((torch.tanh(W @ point.state) - point.state).abs().max()) < 1e-10
    assert sorted(s["kinds"]) == ["saddle", "saddle", "sink", "sink", "source"]
    for i in (0, 40, int(np.argmax(s["log10_dhT_dh0"]))):
        u = s["u"][i]
        h0 = torch.tensor([0.3 + u, -0.3 + u], dtype=torch.float64)

        def forward(h: torch.Tensor) -> torch.Tensor:
            for _ in range(BASIN_STEPS):
                h = torch.tanh(W @ h)
            return h

        J = torch.autograd.functional.jacobian(forward, h0)
        norm = math.log10(float(torch.linalg.matrix_norm(J, ord=2)))
        assert s["log10_dhT_dh0"][i] == pytest.approx(norm, abs=1e-8)
    assert s["inside_max_log10"] < -3 < 0 < s["peak_log10"]


def test_clipping_bounds_every_step_on_the_cliff(tour: dict[str, Any]) -> None:
    s = section(tour, "cliff")
    report = cliff_report()
    assert s["longest_clipped"] == float(report.clipped.step_lengths.max())
    assert s["longest_clipped"] <= s["lr_times_eta"] * (1 + 1e-12)
    assert s["longest_plain"] > 10 * s["lr_times_eta"]


# ---------------------------------------------------------------- remedies and gated cells


def test_live_remedies_are_the_runs_written_beside_the_page(tour: dict[str, Any]) -> None:
    s = section(tour, "remedies")
    assert s["source"] == "live"
    for name in ("tanh", "gru"):
        run_record = gradtrace.load(tour["out"] / f"remedies.{name}.json")
        assert isinstance(run_record, TrainRun)
        ratio = run_record.metrics["best_test_loss"] / run_record.metrics["test_variance"]
        assert s["ratios"][name] == pytest.approx(ratio, rel=1e-12)
        assert run_record.config["task"] == "adding" and run_record.config["model"] == name
    assert (s["verdict"] == "agree") == (s["ratios"]["tanh"] > 0.9 > 0.1 > s["ratios"]["gru"])


def test_gated_cells_are_the_library_s(tour: dict[str, Any]) -> None:
    s = section(tour, "gated-cells")
    for name, config in GATED.items():
        assert s["rate_per_step"][name] == pytest.approx(run_curve(config).rate_per_step, rel=1e-9)
    assert s["open_cell_path_horizon"] == 200 > 4 * s["horizon"]["rnn tanh"]


def test_lstm_cell_path_is_the_identity_by_autograd(tour: dict[str, Any]) -> None:
    s = section(tour, "lstm-cell-path")
    weights = random_weights("lstm", PATH_H, PATH_I, seed=0)
    b = weights.b.clone()
    H = PATH_H
    b[:H] -= SATURATE  # input gate
    b[H : 2 * H] += SATURATE  # forget gate
    b[3 * H :] -= SATURATE  # output gate
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(PATH_T, PATH_I, generator=gen, dtype=torch.float64)
    s_t = torch.randn(2 * H, generator=gen, dtype=torch.float64)

    def step(state: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:  # PyTorch's LSTM cell
        h, c = state[:H], state[H:]
        i, f, g, o = (weights.W_ih @ x_t + weights.W_hh @ h + b).chunk(4)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.cat([torch.sigmoid(o) * torch.tanh(c), c])

    jacobians = []
    for t in range(PATH_T):
        jacobians.append(torch.autograd.functional.jacobian(lambda z, t=t: step(z, x[t]), s_t))
        s_t = step(s_t, x[t])
    P = torch.eye(2 * H, dtype=torch.float64)
    worst = 0.0
    for J in reversed(jacobians):
        P = P @ J
        worst = max(worst, float((P[H:, H:] - torch.eye(H, dtype=torch.float64)).abs().max()))
    assert worst < 1e-12 and s["deviation"] < 1e-12
    assert s["h_from_c"] < 1e-12 and s["deviation_o_default"] < 1e-12
    assert s["default_log10"][0] < -1  # with the gates as drawn the cell path decays


# ---------------------------------------------------------------- options, alias, reproduction


def test_demo_is_the_tour_and_builds_the_sections_asked_for(tmp_path: Path) -> None:
    callbacks = {c.name: c.callback for c in app.registered_commands}
    assert callbacks["demo"] is callbacks["tour"]
    out = tmp_path / "demo"
    code, stdout, stderr = invoke(
        ["demo", "--out", str(out), "--section", "univariate", "--section", "decay"]
    )
    assert (code, stderr) == (0, "")
    assert stdout.splitlines()[-1] == f"open {(out / 'tour.html').resolve()}"
    html = (out / "tour.html").read_text()
    assert re.findall(r'<section id="([^"]+)"', html) == ["decay", "univariate"]  # tour order
    assert page_data(html)["sections"]["univariate"]["1.1"]["closed_form"] == pytest.approx(
        1.1**49, rel=1e-14
    )


def test_a_tour_of_fewer_sections_removes_the_records_it_no_longer_shows(
    tmp_path: Path,
) -> None:
    out = tmp_path / "demo"
    for sections in (["depth", "fixed-points"], ["fixed-points"]):
        argv = ["tour", "--out", str(out)] + [w for s in sections for w in ("--section", s)]
        assert invoke(argv)[0] == 0
    names = sorted(p.name for p in out.iterdir())
    assert not [n for n in names if n.startswith("depth.")]  # stale beside the page before
    assert [n for n in names if n.startswith("fixed-points.")]
    assert "tour.html" in names


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--section", "nope"], "`--section` must be ids from sigmoid"),
        (["--reproduction", "{empty}"], "`--reproduction` must be a folder holding"),
        (["--out", "{file}"], "`--out` must be a folder"),
    ],
    ids=["unknown-section", "empty-reproduction", "out-is-a-file"],
)
def test_bad_options_are_refused_before_any_work(
    tmp_path: Path, argv: list[str], message: str
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("keep me")
    out = tmp_path / "out"
    words = ["tour", "--out", str(out)] + [
        w.format(empty=tmp_path / "empty", file=tmp_path / "file") for w in argv
    ]
    code, stdout, stderr = invoke(words)
    assert code == 2 and stdout == ""
    assert stderr.startswith("gradtrace: error: ") and stderr.count("\n") == 1
    assert message in stderr
    assert not out.exists() and (tmp_path / "file").read_text() == "keep me"


def _reproduction(folder: Path) -> Reproduction:
    """A report folder as `gradtrace reproduce` leaves it: the record and a figure it names."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    fig.savefig(folder / "copy.png")
    plt.close(fig)
    claims = (
        ClaimResult("copy", "the LSTM beats the baseline on the copy task", "Arjovsky 2016",
                    "LSTM < 0.9 baseline", "best loss / baseline: LSTM 0.7", True, ("k1",)),
        ClaimResult("reversal", "reversing speeds learning", "Sutskever 2014",
                    "reversed < half", "forward 0.04, reversed 0.03", False, ("k2",)),
    )  # fmt: skip
    report = Reproduction("quick", claims, 1.0, 60.0, str(folder / "runs.sqlite"),
                          ("elsewhere/copy.png", "elsewhere/table.md"))  # fmt: skip
    gradtrace.save(report, folder / "reproduction.json")
    return report


def test_the_remedies_read_a_reproduction_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "out" / "reproduce"
    folder.mkdir(parents=True)
    report = _reproduction(folder)
    monkeypatch.chdir(tmp_path)
    assert find_reproduction() == Path("out/reproduce")
    result = run_tour(tmp_path / "t", reproduction=find_reproduction(), sections=["remedies"])
    html = result.page.read_text()
    remedies = page_data(html)["sections"]["remedies"]
    assert remedies["source"] == "reproduction"
    assert remedies["claims"] == {c.name: c.passed for c in report.claims}
    assert remedies["verdict"] == "disagree"  # one claim of the two failed
    figure = base64.b64encode((folder / "copy.png").read_bytes()).decode()
    assert figure in html
    for claim in report.claims:
        assert claim.claim in html and claim.measured in html


def test_the_data_block_cannot_end_the_script_early() -> None:
    text = "</script><script>alert(1)</script>"
    stop = Section("x", "x", "lecture", "", "", True, "v", numbers={"text": text})
    html = render_page([stop], intro="", footer="")
    assert page_data(html)["sections"]["x"]["text"] == "</script><script>alert(1)</script>"
    assert html.count("</script>") == 1


def test_the_gated_cells_figure_holds_every_curve_whole() -> None:
    # the figure's fixed limits (-20, 2) cut off the LSTM's default cell path, which decays
    # below -20 over T steps; the limits now come from the lines drawn
    import matplotlib.pyplot as plt

    from gradtrace.plots.figure import lines_limits

    fig, ax = plt.subplots()
    try:
        ax.plot([0, 1, 2], [0.5, -3.0, np.nan])
        ax.plot([0, 1, 2], [-1.0, -35.0, -np.inf])  # NaN and -inf are gaps, not limits
        assert lines_limits(ax) == (-36.0, 1.5)
        assert lines_limits(ax, margin=0.5) == (-35.5, 1.0)
    finally:
        plt.close(fig)
    fig, ax = plt.subplots()
    assert lines_limits(ax) == (-1.0, 1.0)
    plt.close(fig)
