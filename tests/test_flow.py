"""Tests for gradtrace.analysis.flow (`assemble`) and `gradtrace.analysis.curve.analyse`.

These build the `GradientFlow` behind `gradtrace curve`. References (float64): autograd step
Jacobians at the lectures' checkpoints (and at given gated-cell states) multiplied out
explicitly (1e-10 in log10), exact curves a^(T-k) for J_t = a Q_t with Q_t orthogonal (rate
log10 a and top Lyapunov exponent ln a, 1e-12), products of the LSTM forget gates recomputed
from the states (1e-10), and the bounds: c(k) <= (gamma sigma_max)^(T-k) (with sqrt(H) for
frobenius) for vanilla RNNs and c(k) <= prod ||J_t||_2 for every cell, to 1e-9 in log10.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor
from torch.autograd.functional import jacobian as autograd_jacobian

from gradtrace.analysis.curve import CurveConfig, analyse, run_curve
from gradtrace.analysis.flow import Steps, assemble
from gradtrace.cells import LSTMWeights, RNNWeights, get_cell, replay
from gradtrace.cells.random_weights import random_weights
from gradtrace.core import theory
from gradtrace.core.activations import ACTIVATIONS, get_activation
from gradtrace.core.engine import METRICS, contribution_curve
from gradtrace.core.spectra import orthogonal, parse_spectrum
from gradtrace.errors import GradtraceError
from gradtrace.records import GradientFlow
from gradtrace.records.codec import decode_tensor

DTYPE = torch.float64
LOG10_ATOL = 1e-10
BOUND_SLACK = 1e-9  # log10: rounding in c(k) and in the bound, far below any real excess

REFERENCE_METRICS: dict[str, Callable[[Tensor], float]] = {
    "spectral": lambda P: float(torch.linalg.svdvals(P)[0]),
    "frobenius": lambda P: float(P.pow(2).sum().sqrt()),
    "maxabs": lambda P: float(P.abs().max()),
}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(seed: int, *shape: int) -> Tensor:
    return torch.randn(*shape, generator=_gen(seed), dtype=DTYPE)


def _explicit_log10(J: Tensor, metric: str, block: int | None = None) -> Tensor:
    """log10 metric(J_T ... J_{k+1}) for k = 0..T-1 from (T, S, S), multiplied out plainly.

    With `block` the metric is taken of the leading (block, block) corner of the product.
    """
    T = J.shape[0]
    out, P = torch.empty(T, dtype=DTYPE), torch.eye(J.shape[-1], dtype=DTYPE)
    n = J.shape[-1] if block is None else block
    for k in range(T - 1, -1, -1):
        P = P @ J[k]  # J_T ... J_{k+1}
        out[k] = math.log10(REFERENCE_METRICS[metric](P[:n, :n]))
    return out


# ---------------------------------------------------------------- checkpoint mode


@pytest.mark.parametrize("metric", METRICS)
def test_checkpoint_mode_uses_row_k_minus_1_of_h_and_x(metric: str) -> None:
    # The lectures' example: sigmoid, H = 5, eigenvalues of W_hh in [0, 4), T = 20.
    T, H, I = 20, 5, 5
    w = random_weights(
        "rnn", H, I, spectrum=parse_spectrum("eig-uniform:0:4"), activation="sigmoid"
    )
    assert isinstance(w, RNNWeights)
    x, h = _randn(1, T, I), _randn(2, T, H)
    report = analyse(w, x, states=h, metric=metric)

    def step(h_prev: Tensor, x_k: Tensor) -> Tensor:
        return torch.sigmoid(w.W_hh @ h_prev + w.W_hx @ x_k + w.b)

    # J_k = dh_k/dh_{k-1} at a_k = W_hh h[k-1] + W_hx x[k-1] + b, by autograd
    J = torch.stack([autograd_jacobian(lambda s, k=k: step(s, x[k]), h[k]) for k in range(T)])
    assert report.log10_norm.shape == (1, T)  # one sequence: (B, T) with B = 1
    torch.testing.assert_close(
        report.log10_norm[0], _explicit_log10(J, metric), atol=LOG10_ATOL, rtol=0
    )
    sigma = float(torch.linalg.svdvals(w.W_hh)[0])
    rho = float(torch.linalg.eigvals(w.W_hh).abs().max())
    th = report.theory
    assert (th.gamma, th.sigma_max, th.spectral_radius) == (0.25, pytest.approx(sigma), rho)
    slack = 0.5 * math.log10(H) if metric == "frobenius" else 0.0
    bound = torch.arange(T, 0, -1, dtype=DTYPE) * math.log10(0.25 * sigma) + slack
    torch.testing.assert_close(th.bound_log10, bound, atol=1e-12, rtol=0)
    assert (report.mode, report.cell, report.activation, report.metric) == (
        "checkpoint",
        "rnn",
        "sigmoid",
        metric,
    )
    assert (report.steps, report.hidden_size) == (T, H)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_checkpoint_mode_works_for_gated_cells_at_the_given_states(cell: str) -> None:
    # Checkpoint mode used to be refused for gated cells; now J_k is the cell's step Jacobian at
    # row k-1 of the given states, checked against autograd on the cell's own step function.
    T, H, I = 12, 4, 3
    w = random_weights(cell, H, I, spectrum="gaussian:1.5", seed=5)
    spec = get_cell(cell)
    S = spec.state_size(w)
    x, states = _randn(1, T, I), 0.5 * _randn(2, T, S)
    report = analyse(w, x, states=states)

    def step(s: Tensor, x_k: Tensor) -> Tensor:
        return spec.step(w, x_k.unsqueeze(0), s.unsqueeze(0))[0]

    J = torch.stack(
        [autograd_jacobian(lambda s, k=k: step(s, x[k]), states[k]) for k in range(T)]
    )  # (T, S, S)
    block = H if cell == "lstm" else None  # an LSTM's curve is the (h, h) block
    assert report.log10_norm.shape == (1, T)
    torch.testing.assert_close(
        report.log10_norm[0], _explicit_log10(J, "spectral", block), atol=LOG10_ATOL, rtol=0
    )
    assert (report.mode, report.cell, report.state_size) == ("checkpoint", cell, S)


# ---------------------------------------------------------------- exact summaries


@pytest.mark.parametrize(
    ("a", "metric", "verdict", "horizon"),
    [
        (0.5, "spectral", "vanishing", 10),  # 0.5^9 >= 1e-3 > 0.5^10
        (0.5, "frobenius", "vanishing", 10),
        (1.0, "spectral", "neutral", 30),
        (1.2, "maxabs", "exploding", 30),
    ],
    ids=["vanishing", "vanishing-frobenius", "neutral", "exploding-maxabs"],
)
def test_scaled_rotations_give_exact_rate_lyapunov_and_horizon(
    a: float, metric: str, verdict: str, horizon: int
) -> None:
    # A linear RNN with W_hh = a Q: J_t = a Q, so c(k) = a^(T-k) * metric(Q^(T-k)).
    T, H = 30, 4
    W = orthogonal(H, a, _gen(0), DTYPE)
    weights = RNNWeights(W, torch.zeros(H, 1, dtype=DTYPE), torch.zeros(H, dtype=DTYPE), "linear")
    J = W.expand(T, H, H)
    report = assemble(Steps(J.unsqueeze(1), weights, "rnn", "trajectory"), metric=metric)
    expected = _explicit_log10(J, metric)
    assert report.log10_norm.shape == (1, T)
    torch.testing.assert_close(report.log10_norm[0], expected, atol=LOG10_ATOL, rtol=0)
    if metric != "maxabs":  # spectral a^n, frobenius a^n sqrt(H): exactly geometric
        assert report.rate_per_step == pytest.approx(math.log10(a), abs=1e-12)
    assert report.lyapunov_max == pytest.approx(math.log(a), abs=1e-12)  # nats per step
    assert report.verdict == verdict
    assert report.horizon == horizon
    assert report.theory.sigma_max == pytest.approx(a, rel=1e-12)
    assert report.theory.spectral_radius == pytest.approx(a, rel=1e-12)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_trajectory_summaries_are_taken_on_the_batch_mean(cell: str) -> None:
    T, B, H, I = 25, 3, 6, 2
    weights = random_weights(cell, H, I, spectrum=parse_spectrum("gaussian:1.5"), seed=3)
    x = _randn(4, T, B, I)
    report = analyse(weights, x)
    assert report.log10_norm.shape == (B, T)
    # each row is the curve of that sequence alone
    single = analyse(weights, x[:, 1:2])
    assert single.log10_norm.shape == (1, T)
    torch.testing.assert_close(single.log10_norm[0], report.log10_norm[1], atol=1e-12, rtol=0)
    mean = report.log10_norm.mean(dim=0)
    assert report.rate_per_step == theory.measured_rate(mean)
    assert report.horizon == theory.memory_horizon(mean)
    assert report.verdict == theory.verdict(report.rate_per_step)
    assert report.verdict == theory.judge(mean, "spectral", report.proj_size).verdict


def test_lstm_report_measures_the_h_block_and_the_cell_path() -> None:
    T, H, I = 30, 5, 3
    w = random_weights("lstm", H, I, seed=2)
    assert isinstance(w, LSTMWeights)
    x, s0 = _randn(5, T, 1, I), 0.5 * _randn(6, 1, 2 * H)
    report = analyse(w, x, s0)
    run = replay(get_cell("lstm"), w, x, s0)
    states, J = run.states, run.jacobians()  # (T+1, 1, 2H), (T, 1, 2H, 2H)
    # the curve is ||d h_T / d h_k||: the (h, h) block of the full (h, c) product
    P, expected = torch.eye(2 * H, dtype=DTYPE), torch.empty(T, dtype=DTYPE)
    for k in range(T - 1, -1, -1):
        P = P @ J[k, 0]
        expected[k] = math.log10(REFERENCE_METRICS["spectral"](P[:H, :H]))
    assert report.log10_norm.shape == (1, T)
    torch.testing.assert_close(report.log10_norm[0], expected, atol=LOG10_ATOL, rtol=0)
    # the cell path dc_T/dc_k at fixed h is prod diag(f_t): its norm is max_j prod_{t>k} f_t[j]
    h_prev = states[:-1, 0, :H]  # (T, H)
    z = x[:, 0] @ w.W_ih.T + h_prev @ w.W_hh.T + w.b  # (T, 4H)
    log_f = torch.log10(torch.sigmoid(z[:, H : 2 * H]))  # (T, H), PyTorch's gate order i f g o
    suffix = torch.flip(torch.cumsum(torch.flip(log_f, [0]), 0), [0])  # (T, H): sum over t > k
    assert report.cell_path_log10 is not None
    assert report.cell_path_log10.shape == (1, T)
    torch.testing.assert_close(
        report.cell_path_log10[0], suffix.amax(dim=1), atol=LOG10_ATOL, rtol=0
    )
    assert report.theory.gamma is None
    assert report.activation is None
    assert "Gated cell" in report.note
    record = report.to_dict()
    assert "cell_path_log10" in record
    assert torch.equal(decode_tensor(record["cell_path_log10"]), report.cell_path_log10)


# ---------------------------------------------------------------- c(k) never exceeds the bound

SPECTRA = ["eig-uniform:0:4", "eig-uniform:4:14", "radius:1.5", "orthogonal:1", "gaussian:3"]


@pytest.mark.parametrize("spectrum", SPECTRA)
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_rnn_curve_never_exceeds_the_spectral_bound(activation: str, spectrum: str) -> None:
    T, B, H, I = 40, 2, 6, 3
    weights = random_weights(
        "rnn", H, I, spectrum=parse_spectrum(spectrum), activation=activation, seed=7
    )
    J = replay(
        get_cell("rnn"), weights, _randn(8, T, B, I), torch.zeros(B, H, dtype=DTYPE)
    ).jacobians()
    gamma = get_activation(activation).gamma
    sigma = float(torch.linalg.svdvals(weights.W_hh)[0])
    n = torch.arange(T, 0, -1, dtype=DTYPE)  # T - k
    for metric in METRICS:
        slack = 0.5 * math.log10(H) if metric == "frobenius" else 0.0  # ||.||_F <= sqrt(H) ||.||_2
        bound = n * math.log10(gamma * sigma) + slack  # log10 (gamma sigma_max)^(T-k)
        theirs = theory.rnn_bound_log10(gamma, sigma, T, metric, H)  # what the report draws
        torch.testing.assert_close(theirs, bound, atol=1e-12, rtol=0)
        log10_c = contribution_curve(J, metric).log10_norm  # (B, T)
        # -inf (dead relu units zeroing the product) is below any bound, as it should be
        assert float((log10_c - bound).max()) <= BOUND_SLACK, metric


def _gated_jacobians(cell: str, spectrum: str | None) -> tuple[Any, Tensor, Tensor]:
    T, B, H, I = 40, 2, 5, 3
    spec = parse_spectrum(spectrum) if spectrum else None
    weights = random_weights(cell, H, I, spectrum=spec, seed=11)
    x = _randn(12, T, B, I)
    s0 = torch.zeros(B, get_cell(cell).state_size(weights), dtype=DTYPE)
    return weights, x, replay(get_cell(cell), weights, x, s0).jacobians()  # J (T, B, S, S)


def _norm_product(J: Tensor) -> Tensor:
    """(B, T): log10 prod_{t>k} ||J_t||_2, summed step by step."""
    step_norms = torch.log10(torch.linalg.svdvals(J)[..., 0])  # (T, B)
    return torch.stack([step_norms[k:].sum(0) for k in range(J.shape[0])]).T


@pytest.mark.parametrize("spectrum", [None, "eig-uniform:0:4", "orthogonal:1.1", "gaussian:3"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gated_curve_never_exceeds_the_norm_product_bound(cell: str, spectrum: str | None) -> None:
    weights, _, J = _gated_jacobians(cell, spectrum)
    block = slice(0, weights.hidden_size) if cell == "lstm" else None  # an LSTM's h rows/cols
    own = _norm_product(J)
    for metric in METRICS:
        slack = 0.5 * math.log10(J.shape[-1]) if metric == "frobenius" else 0.0
        theirs = theory.norm_product_bound_log10(J, metric)
        torch.testing.assert_close(theirs, own + slack, atol=1e-12, rtol=0)
        log10_c = contribution_curve(J, metric, rows=block, cols=block).log10_norm  # (B, T)
        assert float((log10_c - (own + slack)).max()) <= BOUND_SLACK, metric


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gated_report_draws_the_worst_norm_product_over_the_batch(cell: str) -> None:
    weights, x, J = _gated_jacobians(cell, "gaussian:3")
    report = analyse(weights, x)
    torch.testing.assert_close(
        report.theory.bound_log10, _norm_product(J).amax(dim=0), atol=1e-12, rtol=0
    )
    assert report.theory.bound == "prod_t ||J_t||_2"
    assert float((report.log10_norm - report.theory.bound_log10).max()) <= BOUND_SLACK


# ---------------------------------------------------------------- JSON record


def test_to_dict_is_strict_json_with_minus_infinity_for_an_exactly_zero_product() -> None:
    # ReLU RNN whose units are all switched off from step 4 on: J_t = 0 for t >= 4, so
    # dh_T/dh_k = 0 for every k and log10 c(k) = -inf; the record holds the string
    # "-Infinity", never a bare NaN/inf token and never null.
    T, H = 8, 3
    W = 0.5 * torch.eye(H, dtype=DTYPE)
    weights = RNNWeights(W, torch.ones(H, 1, dtype=DTYPE), torch.zeros(H, dtype=DTYPE), "relu")
    x = torch.ones(T, 1, 1, dtype=DTYPE)
    x[3:] = -100.0
    report = analyse(weights, x)
    assert report.log10_norm.shape == (1, T)
    assert bool((report.log10_norm == -math.inf).all())
    record = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert record["log10_norm"]["data"] == ["-Infinity"] * T
    assert record["log10_norm"]["shape"] == [1, T]
    assert report.rate_per_step == -math.inf
    assert record["rate_per_step"] == "-Infinity"
    assert report.lyapunov_max == -math.inf
    assert record["lyapunov_max"] == "-Infinity"
    assert record["verdict"] == "vanishing"
    assert GradientFlow.from_dict(record) == report


def test_a_batch_where_only_some_sequences_reach_an_exact_zero_says_so() -> None:
    # Sequence 0 is driven below zero from step 4 on (every relu unit off: J_t = 0), sequence 1
    # stays on (J_t = 0.5 I): the batch's mean of log10 c(k) is -inf, and the note says that
    # it is 1 of the 2 sequences.
    T, H = 8, 3
    W = 0.5 * torch.eye(H, dtype=DTYPE)
    weights = RNNWeights(W, torch.ones(H, 1, dtype=DTYPE), torch.zeros(H, dtype=DTYPE), "relu")
    x = torch.ones(T, 2, 1, dtype=DTYPE)
    x[3:, 0] = -100.0
    report = analyse(weights, x)
    assert bool((report.log10_norm[0, :4] == -math.inf).all())
    assert bool(torch.isfinite(report.log10_norm[1]).all())
    assert report.verdict == "vanishing"
    assert "1 of its 2 sequences reach one, while in the other 1 c(k) stays nonzero" in report.note
    alive = analyse(weights, x[:, 1:])
    assert "sequences reach one" not in alive.note


def test_to_dict_holds_the_cli_contract() -> None:
    T, B, H = 12, 2, 4
    weights = random_weights("rnn", H, 3, activation="sigmoid", seed=1)
    report: GradientFlow = analyse(weights, _randn(0, T, B, 3), metric="maxabs")
    record = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert record["format"] == "gradtrace.gradient_flow/1"
    assert record["log10_norm"]["shape"] == [B, T]  # B sequences of T steps, k = 0..T-1
    assert (report.steps, report.batch) == (T, B)
    assert record["hidden_size"] == H
    assert record["dtype"] == "float64"
    assert record["metric"] == "maxabs"
    assert record["mode"] == "trajectory"
    assert record["log10_norm"]["data"] == report.log10_norm.reshape(-1).tolist()
    assert decode_tensor(record["log10_norm"]).tolist() == report.log10_norm.tolist()
    assert record["rate_per_step"] == report.rate_per_step
    assert record["horizon"] == report.horizon
    assert record["lyapunov_max"] == report.lyapunov_max
    assert record["verdict"] in theory.VERDICTS
    th = record["theory"]
    assert th["gamma"] == 0.25
    assert th["sigma_max"] == report.theory.sigma_max
    assert th["spectral_radius"] == report.theory.spectral_radius
    assert th["bound_log10"]["data"] == report.theory.bound_log10.tolist()
    assert th["eigen_prediction"] == theory.eigen_prediction(0.25, th["spectral_radius"])
    assert th["blocks"] == {
        "W_hh": {"sigma_max": th["sigma_max"], "spectral_radius": th["spectral_radius"]}
    }
    back = GradientFlow.from_dict(record)
    assert back == report
    assert (back.steps, back.batch) == (T, B)


# ---------------------------------------------------------------- bad input


def _rnn(H: int = 3, I: int = 2) -> RNNWeights:
    return RNNWeights(_randn(0, H, H), _randn(1, H, I), _randn(2, H))


BAD_INPUTS = [
    pytest.param(
        lambda: analyse(_rnn(), _randn(0, 4, 2), states=_randn(1, 4, 3, 1)),
        r"`x` and `states` must have shapes \(T, B, I\) and \(T, B, S\) with the same T and B, "
        r"got \(4, 2\) and \(4, 3, 1\)",
        id="checkpoint-h-3d",
    ),
    pytest.param(
        lambda: analyse(_rnn(), _randn(0, 5, 2), states=_randn(1, 4, 3)),
        r"`x` and `states` must have shapes \(T, B, I\) and \(T, B, S\) with the same T and B, "
        r"got \(5, 1, 2\) and \(4, 1, 3\)",
        id="checkpoint-x-rows",
    ),
    pytest.param(
        lambda: analyse(_rnn(), _randn(0, 0, 2), states=_randn(1, 0, 3)),
        r"`x` must have at least one time step",
        id="checkpoint-T-0",
    ),
    pytest.param(
        lambda: analyse(_rnn(), _randn(0, 4, 2)),
        r"`x` must have shape \(T, B, I\), got \(4, 2\)",
        id="trajectory-x-2d",
    ),
    pytest.param(
        lambda: analyse("mlp", _randn(0, 4, 1, 2)),
        r"`weights` must be RNNWeights, LSTMWeights or GRUWeights, got str",
        id="trajectory-not-weights",
    ),
]


@pytest.mark.parametrize(("call", "match"), BAD_INPUTS)
def test_bad_input_raises_naming_the_argument(call: Callable[[], object], match: str) -> None:
    with pytest.raises(GradtraceError, match=match):
        call()


def test_a_report_reads_as_one_line_in_a_notebook() -> None:
    # The dataclass repr printed every tensor in full; the summary is what a person reads.
    report = run_curve(CurveConfig(hidden_size=4, steps=30, seed=2))
    text = repr(report)
    assert "\n" not in text and len(text) < 200
    assert report.verdict in text and f"horizon {report.horizon}" in text
