"""Gated cells against the vanilla RNN, and the LSTM's memory cell with f = 1, i = 0.

The LSTM's state is (h, c) with c_t = f_t * c_(t-1) + i_t * g_t. With the forget gate saturated
at f = 1 and the input gate at i = 0, c_t = c_(t-1) and, because saturated gates have zero
slope, c_t no longer depends on h_(t-1) either: the (c, c) block of every step Jacobian is the
identity and the (c, h) block vanishes, so the (c, c) block of the product, dc_T/dc_k, is
exactly I for every k. Gate biases of -+40 saturate the sigmoid in float64 (sigmoid(40)
rounds to 1).
"""

from __future__ import annotations

import torch

from gradtrace.analysis.curve import CurveConfig, analyse, run_curve
from gradtrace.cells import LSTMWeights, get_cell, random_weights, replay
from gradtrace.core.engine import contribution_curve
from gradtrace.core.theory import judge
from gradtrace.plots.figure import finite_values, lines_limits, plt
from gradtrace.records.flow import GradientFlow
from gradtrace.tour.embed import figure
from gradtrace.tour.page import Section, esc, num, para, power, table

H, I, T, B = 32, 8, 200, 4
GATED = {
    "rnn tanh": CurveConfig(
        cell="rnn", activation="tanh", hidden_size=H, input_size=I, steps=T, batch=B, seed=0
    ),
    "irnn": CurveConfig(
        cell="rnn",
        activation="relu",
        spectrum="identity",
        hidden_size=H,
        input_size=I,
        steps=T,
        batch=B,
        seed=0,
    ),
    "gru": CurveConfig(cell="gru", hidden_size=H, input_size=I, steps=T, batch=B, seed=0),
    "lstm": CurveConfig(cell="lstm", hidden_size=H, input_size=I, steps=T, batch=B, seed=0),
}
FORGET_BIAS = 5.0  # added to the default forget-gate bias: f = sigmoid(~5) ~ 0.993
SATURATE = 40.0  # |bias| that saturates a gate in float64
PATH_H, PATH_I, PATH_T = 4, 3, 30


def with_gate_bias(weights: LSTMWeights, **shift: float) -> LSTMWeights:
    """A copy of the LSTM with a constant added to the bias of the named gates (i, f, g, o)."""
    b = weights.b.clone()
    n = weights.hidden_size
    for gate, value in shift.items():
        row = "ifgo".index(gate)
        b[row * n : (row + 1) * n] += value
    return LSTMWeights(weights.W_ih, weights.W_hh, b, weights.W_proj)


def open_forget_gate_flow() -> GradientFlow:
    """The "lstm" config's weights with the forget gate opened, on seeded inputs (seed 1)."""
    lstm = random_weights("lstm", H, I, seed=0)
    assert isinstance(lstm, LSTMWeights)
    x = torch.randn(T, B, I, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return analyse(with_gate_bias(lstm, f=FORGET_BIAS), x)


def _path(flow: GradientFlow) -> tuple[float, int]:
    """Rate (decades per step) and horizon of an LSTM's cell path prod diag(f_t)."""
    assert flow.cell_path_log10 is not None
    j = judge(flow.cell_path_log10.mean(dim=0))
    return j.rate_per_step, j.horizon


def gated_section() -> Section:
    """c(k) of a tanh RNN, an IRNN, a GRU and an LSTM at initialisation; the LSTM's cell path
    with its default gates and with the forget gate opened."""
    flows = {name: run_curve(config) for name, config in GATED.items()}
    opened = open_forget_gate_flow()
    path_rate, path_horizon = _path(flows["lstm"])
    open_rate, open_horizon = _path(opened)
    rows = [
        (esc(name), esc(f.verdict), num(f.rate_per_step, 3), str(f.horizon))
        for name, f in flows.items()
    ]
    rows += [
        ("lstm cell path, default gates", "", num(path_rate, 3), str(path_horizon)),
        (f"lstm cell path, forget bias +{FORGET_BIAS:g}", "", num(open_rate, 3), str(open_horizon)),
        (
            f"lstm h path, forget bias +{FORGET_BIAS:g}",
            esc(opened.verdict),
            num(opened.rate_per_step, 3),
            str(opened.horizon),
        ),
    ]
    rnn = flows["rnn tanh"]
    agree = open_horizon >= 4 * rnn.horizon
    measured = (
        para(
            f"H = {H}, T = {T}, {B} trajectories over Gaussian inputs, PyTorch's default "
            "initialisation (the IRNN: ReLU with W_hh = I, Le, Jaitly, Hinton 2015). c(k) is "
            "||dh_T/dh_k||_2 (for the LSTM the (h, h) block); the cell path is prod diag(f_t), the "
            "memory cell's own route; the horizon is how many steps back c stays within 3 decades."
        )
        + table(("cell", "verdict", "decades/step", "memory horizon (steps)"), rows)
        + para(
            "At initialisation the gates do not help yet: with forget gates near sigmoid(0) = 1/2 "
            f"the cell path decays at {num(path_rate, 3)} decades per step, like the tanh RNN's "
            f"{num(rnn.rate_per_step, 3)}. Opened (bias +{FORGET_BIAS:g}, f near 1) it keeps the "
            f"gradient for {open_horizon} steps. Training opens the gates where a task needs it: "
            "see the reproduction's memory horizons."
        )
    )
    fig, ax = plt.subplots(figsize=(8.0, 4.4))
    k = torch.arange(T)
    for name, f in flows.items():
        ax.plot(k, finite_values(f.log10_norm.mean(dim=0)), lw=1.5, label=f"{name} (h path)")
    ax.plot(
        k,
        finite_values(opened.log10_norm.mean(dim=0)),
        lw=1.5,
        label=f"lstm, forget +{FORGET_BIAS:g} (h path)",
    )
    for label, f in (("default gates", flows["lstm"]), (f"forget +{FORGET_BIAS:g}", opened)):
        assert f.cell_path_log10 is not None
        ax.plot(
            k,
            finite_values(f.cell_path_log10.mean(dim=0)),
            "--",
            lw=1.5,
            label=f"lstm cell path, {label}",
        )
    ax.set(  # every curve whole: a fixed (-20, 2) cut the default cell path off
        xlabel="k (step the gradient flows back to)",
        ylabel="log10 ||dh_T/dh_k||",
        ylim=lines_limits(ax),
    )
    ax.set_title(f"Gated cells against the vanilla RNN at initialisation, T = {T}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return Section(
        id="gated-cells",
        title="LSTM and GRU against the vanilla RNN",
        lecture="lecture 000, section 1.6, and lecture 003, long short-term memory",
        claim=para(
            "Architectures built to remember (GRU, LSTM) avoid the vanilla RNN's vanishing "
            "gradient: the LSTM's memory cell keeps its value, and its gradient, when the "
            "forget gate is open."
        ),
        measured=measured,
        agree=agree,
        verdict=(
            f"with the forget gate open the cell path keeps the gradient {open_horizon} steps, "
            f"against the tanh RNN's {rnn.horizon}; at the default initialisation it does not."
            if agree
            else "even with the forget gate open the cell path forgets as fast as the RNN."
        ),
        figures=(
            figure(
                fig,
                "log10 c(k) of each cell (solid) and the LSTM's cell path (dashed), batch means.",
                "gated cells",
            ),
        ),
        numbers={
            "rate_per_step": {n: f.rate_per_step for n, f in flows.items()},
            "horizon": {n: f.horizon for n, f in flows.items()},
            "cell_path_rate": path_rate,
            "cell_path_horizon": path_horizon,
            "open_cell_path_rate": open_rate,
            "open_cell_path_horizon": open_horizon,
        },
        records={**{n.replace(" ", "-"): f for n, f in flows.items()}, "lstm-forget-open": opened},
    )


SATURATED = {"i": -SATURATE, "f": SATURATE, "o": -SATURATE}


def lstm_path_jacobians(**shift: float) -> tuple[LSTMWeights, torch.Tensor]:
    """The step Jacobians (T, S, S) of the small LSTM of the cell-path stop, its gate biases
    shifted by `shift`, along its trajectory from a seeded start (seed 1), in float64."""
    base = random_weights("lstm", PATH_H, PATH_I, seed=0)
    assert isinstance(base, LSTMWeights)
    weights = with_gate_bias(base, **shift)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(PATH_T, 1, PATH_I, generator=gen, dtype=torch.float64)
    s0 = torch.randn(1, weights.state_size, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        return weights, replay(get_cell("lstm"), weights, x, s0).jacobians()[:, 0]


def suffix_products(J: torch.Tensor) -> torch.Tensor:
    """ds_T/ds_k = J_T ... J_(k+1) for k = 0..T-1, (T, S, S), from J (T, S, S) whose row t
    holds J_(t+1)."""
    product = torch.eye(J.shape[-1], dtype=J.dtype)
    out = []
    for t in range(J.shape[0] - 1, -1, -1):
        product = product @ J[t]
        out.append(product)
    return torch.stack(out[::-1])


def cell_path_section() -> Section:
    """dc_T/dc_k = I when f = 1 and i = 0, shown from the cell's own Jacobians."""
    P = PATH_H
    eye = torch.eye(PATH_H, dtype=torch.float64)
    _, J = lstm_path_jacobians(**SATURATED)
    products = suffix_products(J)  # (T, S, S)
    cc, hc = products[:, P:, P:], products[:, :P, P:]  # dc_T/dc_k, dh_T/dc_k
    deviation = float((cc - eye).abs().max())
    leak = float(hc.abs().max())
    _, J_o = lstm_path_jacobians(i=-SATURATE, f=SATURATE)  # the output gate left as drawn
    deviation_o = float((suffix_products(J_o)[:, P:, P:] - eye).abs().max())
    engine = contribution_curve(J.unsqueeze(1), rows=slice(P, None), cols=slice(P, None))
    engine_max = float(engine.log10_norm.abs().max())  # log10 ||dc_T/dc_k||_2, 0 ideally
    _, J_default = lstm_path_jacobians()
    default = contribution_curve(J_default.unsqueeze(1), rows=slice(P, None), cols=slice(P, None))
    default_path = float(default.log10_norm[0, 0])
    agree = deviation < 1e-12 and deviation_o < 1e-12
    measured = para(
        f"An LSTM with H = {PATH_H}, T = {PATH_T}, its input gate biased by -{SATURATE:g} "
        f"(i = 0), its forget gate by +{SATURATE:g} (f = 1), its output gate by -{SATURATE:g} "
        "(o = 0). From the cell's analytic step Jacobians the (c, c) block of J_T ... J_(k+1) is "
        f"the identity to {num(deviation, 2)} at every k, and dh_T/dc_k is at most "
        f"{num(leak, 2)}; the engine's log10 ||dc_T/dc_k||_2 is within {num(engine_max, 2)} of 0. "
        "With the output gate left as drawn the (c, c) block is still I to "
        f"{num(deviation_o, 2)}: o = 0 only removes the route from c_t into the loss through "
        "h_t. The same LSTM with its gates as drawn (f near 1/2): ||dc_T/dc_0||_2 = "
        f"{power(default_path)} over the {PATH_T} steps."
    ) + table(
        ("k", "max |dc_T/dc_k - I|", "max |dh_T/dc_k|"),
        [
            (str(k), num(float((cc[k] - eye).abs().max()), 2), num(float(hc[k].abs().max()), 2))
            for k in (0, PATH_T // 2, PATH_T - 1)
        ],
    )
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    k = torch.arange(PATH_T)
    ax.plot(k, engine.log10_norm[0], "o-", ms=3, label="i = 0, f = 1, o = 0: ||dc_T/dc_k||_2")
    ax.plot(k, default.log10_norm[0], "s-", ms=3, label="gates as drawn: ||dc_T/dc_k||_2")
    ax.set(xlabel="k (step the gradient flows back to)", ylabel="log10 ||dc_T/dc_k||_2")
    ax.set_title("The memory cell's own path through time", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return Section(
        id="lstm-cell-path",
        title="The LSTM cell path: dc_T/dc_k = I when f = 1, i = 0",
        lecture="lecture 003, long short-term memory (the exercise)",
        claim=para(
            "With the forget gate at 1, the input gate at 0 (and the output gate at 0), the "
            "memory cell copies its value forward and its gradient back unchanged: "
            "dL/dc_t = dL/dc_(t+1)."
        ),
        measured=measured,
        agree=agree,
        verdict=(
            f"dc_T/dc_k is the identity to {num(deviation, 2)} for every k, with or without o = 0."
            if agree
            else f"dc_T/dc_k differs from the identity by {num(deviation, 2)}."
        ),
        figures=(
            figure(
                fig,
                "The (c, c) block of the product, saturated gates against the gates as drawn.",
                "LSTM cell path",
            ),
        ),
        numbers={
            "deviation": deviation,
            "deviation_o_default": deviation_o,
            "h_from_c": leak,
            "engine_log10_max": engine_max,
            "default_log10": default.log10_norm[0],
        },
    )
